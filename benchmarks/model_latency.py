"""CPU forward latency of the registered detectors, one interleaved run.

FeatherFace V1 runs twice: with ``deform_implementation="torchvision"`` (the original code's
computation, ``torchvision.ops.deform_conv2d``) and with the default ``"sampling"`` path. Runs are
interleaved (A B C D A B C D ...) so that drift of a shared machine hits every model alike.

Usage: python benchmarks/model_latency.py [--size 640] [--runs 30] [--warmup 5] [--threads 1]
Prints one JSON object: per model the median and p90 in ms, plus speed ratios.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from featherface.models import build_model

MODELS: dict[str, tuple[str, dict[str, str]]] = {
    "featherface-v1 (torchvision deform_conv2d, as the original)": (
        "featherface-v1",
        {"deform_implementation": "torchvision"},
    ),
    "featherface-v1": ("featherface-v1", {"deform_implementation": "sampling"}),
    "featherface-nano-b": ("featherface-nano-b", {}),
    "retinaface-mnet025": ("retinaface-mnet025", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {
        label: build_model(name, **options).eval() for label, (name, options) in MODELS.items()
    }
    image = torch.randn(1, 3, args.size, args.size)
    timings: dict[str, list[float]] = {label: [] for label in models}
    with torch.inference_mode():
        for run in range(args.warmup + args.runs):
            for label, model in models.items():
                start = time.perf_counter()
                model(image)
                if run >= args.warmup:
                    timings[label].append((time.perf_counter() - start) * 1000)
    result = {
        label: {
            "median_ms": round(float(np.median(t)), 2),
            "p90_ms": round(float(np.percentile(t, 90)), 2),
        }
        for label, t in timings.items()
    }
    medians = {label: entry["median_ms"] for label, entry in result.items()}
    original = medians["featherface-v1 (torchvision deform_conv2d, as the original)"]
    summary = {
        "size": args.size,
        "threads": args.threads,
        "runs": args.runs,
        "models": result,
        "v1_speedup_over_original": round(original / medians["featherface-v1"], 2),
        "nano_b_over_retinaface": round(
            medians["featherface-nano-b"] / medians["retinaface-mnet025"], 2
        ),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
