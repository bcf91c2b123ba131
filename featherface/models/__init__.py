"""Detector networks: backbone, attention, feature pyramids, context modules, heads, and the
three registered detectors (``featherface-v1``, ``featherface-nano-b``, ``retinaface-mnet025``).

Importing this package registers every model; build one with :func:`build_model`.
"""

from featherface.models.registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model"]
