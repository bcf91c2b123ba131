"""Losses, distillation losses, the trainer and its callbacks."""
