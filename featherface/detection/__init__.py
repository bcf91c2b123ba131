"""Pure tensor maths between networks and faces: priors, the box/landmark codec, matching and
post-processing. Never imports ``featherface.engine``, MLflow or DVC.
"""

from featherface.detection.codec import (
    corners_from_priors,
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
)
from featherface.detection.matching import MatchResult, match, match_batch, target_tensors
from featherface.detection.postprocess import Detections, postprocess, select
from featherface.detection.priors import PriorConfig, feature_map_sizes, num_priors, prior_boxes

__all__ = [
    "Detections",
    "MatchResult",
    "PriorConfig",
    "corners_from_priors",
    "decode_boxes",
    "decode_landmarks",
    "encode_boxes",
    "encode_landmarks",
    "feature_map_sizes",
    "match",
    "match_batch",
    "num_priors",
    "postprocess",
    "prior_boxes",
    "select",
    "target_tensors",
]
