"""Time the WIDER FACE evaluation: reading prediction files, then the AP protocol.

Usage: python benchmarks/wider_ap.py [--pred DIR ...] [--gt DIR] [--repeats 3] [--missing-as-empty]
Without --pred, times the two reference prediction sets (``eval/*.tar.gz`` of
``$FEATHERFACE_REFERENCE`` or ``../shared/reference``), extracted to a temporary folder; --gt
defaults to that folder's ``widerface/ground_truth``. Prints one JSON object: the seconds to read
the ground truth and, per set, the median over the repeats of the seconds to read the files
(``read_s``), to evaluate them in memory (``evaluate_s``) and of both (``total_s``), and the AP.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from featherface.evaluate import WiderGroundTruth, evaluate, read_prediction_dir

REFERENCE = Path(
    os.environ.get(
        "FEATHERFACE_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"
    )
)
REFERENCE_SETS = ("predictions_A_good", "predictions_C_edge")


def extract_reference_sets(destination: Path) -> list[Path]:
    """The reference prediction folders, extracted (tarfile "data" filter) under destination."""
    folders = []
    for name in REFERENCE_SETS:
        target = destination / name
        with tarfile.open(REFERENCE / "eval" / f"{name}.tar.gz") as archive:
            archive.extractall(target, filter="data")
        folders += [path for path in target.iterdir() if path.is_dir()]
    return folders


def time_set(folder: Path, truth: WiderGroundTruth, repeats: int, missing_as_empty: bool) -> dict:
    """Median read, evaluate and total seconds over ``repeats`` runs, with the AP."""
    reads, evaluations = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        predictions = read_prediction_dir(folder, truth.expected(), missing_as_empty)
        middle = time.perf_counter()
        result = evaluate(predictions, truth, missing_as_empty=missing_as_empty)
        reads.append(middle - start)
        evaluations.append(time.perf_counter() - middle)
    totals = [read + evaluation for read, evaluation in zip(reads, evaluations, strict=True)]
    return {
        "pred": str(folder),
        "images": sum(len(images) for images in predictions.values()),
        "detections": sum(
            len(boxes) for images in predictions.values() for boxes in images.values()
        ),
        "read_s": round(statistics.median(reads), 3),
        "evaluate_s": round(statistics.median(evaluations), 3),
        "total_s": round(statistics.median(totals), 3),
        "ap": result.ap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pred", type=Path, action="append", help="prediction folder (repeatable)")
    parser.add_argument("--gt", type=Path, default=REFERENCE / "widerface" / "ground_truth")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--missing-as-empty", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    truth = WiderGroundTruth.from_mat(args.gt)
    report = {
        "gt": str(args.gt),
        "gt_read_s": round(time.perf_counter() - start, 3),
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory() as scratch:
        folders = args.pred or extract_reference_sets(Path(scratch))
        report["sets"] = [
            time_set(folder, truth, args.repeats, args.missing_as_empty) for folder in folders
        ]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
