"""Evaluation: the official WIDER FACE AP protocol and its prediction-file layout."""

from featherface.evaluate.predictions import (
    Predictions,
    prediction_array,
    prediction_path,
    read_prediction_dir,
    read_prediction_file,
    write_prediction_file,
)
from featherface.evaluate.wider_ap import (
    GroundTruthImage,
    WiderGroundTruth,
    WiderResult,
    evaluate,
    voc_ap,
)

__all__ = [
    "GroundTruthImage",
    "Predictions",
    "WiderGroundTruth",
    "WiderResult",
    "evaluate",
    "prediction_array",
    "prediction_path",
    "read_prediction_dir",
    "read_prediction_file",
    "voc_ap",
    "write_prediction_file",
]
