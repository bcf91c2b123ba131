"""The ``data`` and ``model`` sections: where the images come from, how the synthetic set is
drawn, and what every training stage builds on."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from featherface.errors import ParamsError
from featherface.params.checks import at_least


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides the synthetic images; equal configs give byte-identical files.

    Image sides are drawn uniformly (integers) in ``[min_image_size, max_image_size]``, width and
    height independently. Each image plans ``min_faces..max_faces`` faces whose box heights are
    log-uniform in ``[min_face_height, max_face_height]`` px (at most 0.8 of the shorter side);
    a face that finds no free spot shrinks and is dropped below ``min_face_height``, so a crowded
    image may hold fewer. Up to ``distractors_max`` face-like skin ellipses without features are
    hard negatives. ``glasses_prob``, ``occlusion_prob`` and ``blur_prob`` are per-face
    probabilities of glasses, an occluder and a face blur (a whole-image blur has probability
    ``blur_prob / 2``); in-plane rotations lie in ``[-rotation_max_deg, rotation_max_deg]``.
    ``workers`` is the number of processes and never changes the output.
    """

    seed: int = 0
    num_train: int = 800
    num_val: int = 200
    min_image_size: int = 320
    max_image_size: int = 1024
    min_faces: int = 1
    max_faces: int = 30
    min_face_height: float = 8.0
    max_face_height: float = 300.0
    distractors_max: int = 6
    glasses_prob: float = 0.2
    occlusion_prob: float = 0.25
    blur_prob: float = 0.3
    rotation_max_deg: float = 30.0
    jpeg_quality: int = 90
    workers: int = 2

    def __post_init__(self) -> None:
        """Reject values that cannot produce a valid image (raises :class:`ParamsError`)."""
        for item in fields(self):
            value = getattr(self, item.name)
            expected = int if item.type == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, expected):
                raise ParamsError(f"synthetic.{item.name} must be {item.type}, got {value!r}")
        _check_synthetic(self.seed >= 0, "seed must be >= 0")
        _check_synthetic(
            self.num_train >= 0 and self.num_val >= 0, "num_train and num_val must be >= 0"
        )
        _check_synthetic(
            16 <= self.min_image_size <= self.max_image_size,
            "need 16 <= min_image_size <= max_image_size",
        )
        _check_synthetic(1 <= self.min_faces <= self.max_faces, "need 1 <= min_faces <= max_faces")
        _check_synthetic(
            2.0 <= self.min_face_height <= self.max_face_height,
            "need 2 <= min_face_height <= max_face_height",
        )
        _check_synthetic(
            self.min_face_height <= 0.8 * self.min_image_size,
            "min_face_height must be at most 0.8 * min_image_size",
        )
        _check_synthetic(self.distractors_max >= 0, "distractors_max must be >= 0")
        for name in ("glasses_prob", "occlusion_prob", "blur_prob"):
            _check_synthetic(0.0 <= getattr(self, name) <= 1.0, f"{name} must lie in [0, 1]")
        _check_synthetic(
            0.0 <= self.rotation_max_deg <= 90.0, "rotation_max_deg must lie in [0, 90]"
        )
        _check_synthetic(1 <= self.jpeg_quality <= 95, "jpeg_quality must lie in [1, 95]")
        _check_synthetic(self.workers >= 1, "workers must be >= 1")

    def num_images(self, split: str) -> int:
        """The number of images of ``split`` ("train" or "val")."""
        if split == "train":
            return self.num_train
        if split == "val":
            return self.num_val
        raise ParamsError(f"unknown split {split!r}; expected 'train' or 'val'")


def _check_synthetic(condition: bool, problem: str) -> None:
    if not condition:
        raise ParamsError(f"synthetic: {problem}")


@dataclass(frozen=True)
class DataParams:
    """``data``: where the images come from and how strictly they are checked
    (``box_tolerance_px`` and ``landmark_tolerance`` are 0 or more)."""

    source: Literal["synthetic", "widerface"] = "synthetic"
    widerface_root: str = "data/widerface"
    on_bad_rows: Literal["fail", "drop"] = "fail"
    box_tolerance_px: float = 2.0
    landmark_tolerance: float = 0.5
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        at_least(self, 0, "box_tolerance_px", "landmark_tolerance")


@dataclass(frozen=True)
class ModelParams:
    """``model``: what every training stage builds on."""

    backbone_weights: str | None = None
