"""ONNX Runtime latency of Nano-B networks pruned at several plans, against RetinaFace-mnet0.25.

Answers two questions about the latency target (Nano-B end to end at most 0.6x
RetinaFace-mnet0.25, 640x640, one thread):

- how much rounding kept widths to multiples of 8 (``prune.channel_multiple``) saves at the
  stage's own plan;
- the floor: the network at the highest rate the search may give every layer group
  (``prune.max_rate``), which is as fast as pruning can make this architecture.

Every network is the distilled student (``--student``) with an FPGM plan removed, exported by
:func:`featherface.export.onnx_export.raw_graph` and run by one ONNX Runtime session at one
thread on the same noise input; the reference is this package's RetinaFace-mnet0.25 with its face
classifier silenced (:func:`featherface.export.bench_models.export_local_reference`). Network
only: the pre- and post-processing are the same code for every network. Runs are interleaved
(A B C ... A B C ...) after a warm-up.

    .venv/bin/python benchmarks/pruned_latency.py [--student stages/distill/model.pt]
        [--plan stages/prune/plan.json] [--runs 30] [--warmup 5] [--size 640]

Prints one JSON object: per network its true parameter count, median and p90 in ms, and the
ratio of its median to the reference's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
from torch import nn

from featherface.export.bench_models import export_local_reference
from featherface.export.onnx_export import raw_graph
from featherface.models.checkpoint import load_checkpoint
from featherface.models.complexity import params_total
from featherface.prune.groups import LAYER_GROUPS, pruned_copy
from featherface.prune.search import Rates

REFERENCE = "retinaface-mnet025"


def session(path: Path) -> onnxruntime.InferenceSession:
    """One ONNX Runtime CPU session at one thread."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def networks(student: nn.Module, rates: Rates, max_rate: float) -> dict[str, tuple[Rates, int]]:
    """``{name: (rates, channel_multiple)}`` of every pruned network timed."""
    top = dict.fromkeys(LAYER_GROUPS, max_rate)
    return {
        "plan, channel_multiple 1": (rates, 1),
        "plan, channel_multiple 8": (rates, 8),
        f"every group at {max_rate}, channel_multiple 1": (top, 1),
        f"every group at {max_rate}, channel_multiple 8": (top, 8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, default=Path("stages/distill/model.pt"))
    parser.add_argument("--plan", type=Path, default=Path("stages/prune/plan.json"))
    parser.add_argument("--max-rate", type=float, default=0.9)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", type=int, default=640)
    args = parser.parse_args()

    student = load_checkpoint(args.student)
    rates = json.loads(args.plan.read_text(encoding="utf-8"))["rates"]
    sessions: dict[str, onnxruntime.InferenceSession] = {}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        for number, (name, (plan_rates, multiple)) in enumerate(
            networks(student, rates, args.max_rate).items()
        ):
            pruned = pruned_copy(student, plan_rates, multiple).eval()
            counts[name] = params_total(pruned)
            path = Path(folder) / f"pruned_{number}.onnx"
            path.write_bytes(raw_graph(pruned).SerializeToString())
            sessions[name] = session(path)
        sessions[REFERENCE] = session(export_local_reference(Path(folder)))
        image = np.random.default_rng(0).normal(0, 50, (1, 3, args.size, args.size))
        feed = {"images": image.astype(np.float32)}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for round_number in range(args.warmup + args.runs):
            for name, runner in sessions.items():
                start = time.perf_counter()
                runner.run(None, feed)
                if round_number >= args.warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
    reference_ms = float(np.median(times[REFERENCE]))
    result = {
        "settings": {
            "size": args.size,
            "threads": 1,
            "runs": args.runs,
            "warmup": args.warmup,
            "student": str(args.student),
            "plan_rates": rates,
        },
        "networks": {
            name: {
                "params_total": counts.get(name),
                "median_ms": round(float(np.median(values)), 2),
                "p90_ms": round(float(np.percentile(values, 90)), 2),
                "ratio_to_reference": round(float(np.median(values)) / reference_ms, 3),
            }
            for name, values in times.items()
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
