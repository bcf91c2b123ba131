"""Training throughput of the registered detectors with the real data pipeline.

Runs the ``Trainer``'s own step (forward, MultiBox loss, backward, clipping, AdamW) on batches of
the prepared training split through ``FaceDataset`` + ``TrainAugmentation`` + the DataLoader, and
splits each step's wall time into the wait for the next batch (``data_ms``) and the step itself
(``step_ms``). Device: CUDA when available (then AMP and a synchronise before each clock read),
else CPU.

Usage: python benchmarks/train_throughput.py [--prepare stages/prepare] [--size 640]
       [--batch 16] [--steps 8] [--warmup 2] [--workers 2] [--contiguous]
       [--arch featherface-v1 ...]
Needs ``stages/prepare`` (``dvc repro prepare``). Prints one JSON object: per model images/s,
median data and step milliseconds, and the data-wait share of the step time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from featherface.data.augment import TrainAugmentation
from featherface.data.dataset import FaceDataset, make_loader
from featherface.data.prepare import load_prepared
from featherface.engine.losses import DetectionLoss, MultiBoxLoss
from featherface.engine.optim import OptimizerConfig
from featherface.engine.trainer import Trainer
from featherface.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(arch: str, args: argparse.Namespace, out_dir: Path) -> dict[str, float]:
    """Median data wait and step time of ``args.steps`` steps after ``args.warmup``."""
    data = load_prepared(args.prepare)
    dataset = FaceDataset(data, "train", TrainAugmentation(args.size), seed=0)
    loader = make_loader(dataset, args.batch, True, args.workers, 0, True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trainer = Trainer(
        build_model(arch), DetectionLoss(MultiBoxLoss()), loader, out_dir,
        optimizer=OptimizerConfig(lr=1e-3), device=device, amp=True, grad_clip_norm=10.0,
        channels_last=args.channels_last,
    )  # fmt: skip
    trainer.set_train_mode(True)
    data_ms: list[float] = []
    step_ms: list[float] = []
    batches = iter(loader)
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        fetched = time.perf_counter()
        trainer.train_step(batch)
        _sync(trainer.device)
        done = time.perf_counter()
        if step >= args.warmup:
            data_ms.append((fetched - start) * 1000)
            step_ms.append((done - fetched) * 1000)
    data_median, step_median = float(np.median(data_ms)), float(np.median(step_ms))
    total = np.array(data_ms) + np.array(step_ms)
    return {
        "images_per_s": round(args.batch * len(total) / (total.sum() / 1000), 2),
        "data_ms": round(data_median, 1),
        "step_ms": round(step_median, 1),
        "data_share_of_step": round(data_median / step_median, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, default=Path("stages/prepare"))
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--contiguous", dest="channels_last", action="store_false",
        help="train in NCHW instead of the default channels-last layout",
    )  # fmt: skip
    parser.add_argument(
        "--arch", nargs="+", default=["featherface-v1", "featherface-nano-b", "retinaface-mnet025"]
    )
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result: dict[str, object] = {
        "device": device,
        "threads": torch.get_num_threads(),
        "size": args.size,
        "batch": args.batch,
        "workers": args.workers,
        "channels_last": args.channels_last,
    }
    with tempfile.TemporaryDirectory() as out_dir:  # the trainer's folder; nothing is written
        for arch in args.arch:
            result[arch] = measure(arch, args, Path(out_dir))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
