"""FeatherFace: a reproducible factory for tiny face detectors.

Reproduces FeatherFace V1 (Kim, Jung, Kim, Electronics 2025) and distils and prunes it into the
Nano-B student, driven by DVC stages and tracked in MLflow.
"""

__version__ = "0.1.0"
