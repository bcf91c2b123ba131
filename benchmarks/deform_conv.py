"""CPU speed of the two ModulatedDeformConv2d implementations at FeatherFace V1's SSH shapes.

One thread, batch 1, a 640x640 image: SSH levels of 80x80 (stride 8), 40x40 and 20x20. Each SSH
(64 -> 64 channels) has five deformable 3x3 layers (stride 1, padding 1): 64->32, 64->16 and three
16->16. Offsets and modulators are non-zero (random offset/modulator weights). Each case times the
whole layer (offset and modulator convolutions included) and the deformable convolution alone
(``torchvision.ops.deform_conv2d`` vs :func:`modulated_deform_conv2d` on the same offsets and
modulators), alternating the two implementations call by call (A B A B ...) after a warm-up.

Prints JSON: median milliseconds per call and the ratio torchvision / sampling for every layer
shape at every level, and both sums over the 15 deformable layers of the three SSH modules.

    .venv/bin/python benchmarks/deform_conv.py [--runs 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

from featherface.models.deform import ModulatedDeformConv2d, modulated_deform_conv2d

LEVELS: tuple[int, ...] = (80, 40, 20)  # SSH feature sizes at a 640x640 input
# (in_channels, out_channels, layers of this shape per SSH module)
LAYERS: tuple[tuple[int, int, int], ...] = ((64, 32, 1), (64, 16, 1), (16, 16, 3))


def interleaved_medians(
    calls: dict[str, Callable[[], object]], runs: int, warmup: int
) -> dict[str, float]:
    """Median milliseconds per call of each callable, timed in alternation after ``warmup``."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def layers(in_channels: int, out_channels: int, seed: int) -> dict[str, ModulatedDeformConv2d]:
    """Both implementations with the same non-zero weights (offsets of a few pixels)."""
    torch.manual_seed(seed)
    reference = ModulatedDeformConv2d(in_channels, out_channels, implementation="torchvision")
    torch.nn.init.normal_(reference.offset_conv.weight, std=0.05)
    torch.nn.init.normal_(reference.modulator_conv.weight, std=0.05)
    sampling = ModulatedDeformConv2d(in_channels, out_channels, implementation="sampling")
    sampling.load_state_dict(reference.state_dict())
    return {"torchvision": reference.eval(), "sampling": sampling.eval()}


def bench_case(in_channels: int, out_channels: int, size: int, runs: int, warmup: int) -> dict:
    """Layer and op timings for one SSH shape."""
    x = torch.randn(1, in_channels, size, size)
    modules = layers(in_channels, out_channels, seed=0)
    layer_ms = interleaved_medians(
        {name: (lambda m=module: m(x)) for name, module in modules.items()}, runs, warmup
    )
    reference = modules["torchvision"]
    offset = reference.offset_conv(x)
    mask = 2.0 * torch.sigmoid(reference.modulator_conv(x))
    weight = reference.regular_conv.weight
    op_ms = interleaved_medians(
        {
            "torchvision": lambda: torchvision.ops.deform_conv2d(
                x, offset, weight, padding=1, mask=mask
            ),
            "sampling": lambda: modulated_deform_conv2d(x, offset, mask, weight, padding=1),
        },
        runs,
        warmup,
    )
    return {
        "layer_ms": {name: round(ms, 3) for name, ms in layer_ms.items()},
        "layer_speedup": round(layer_ms["torchvision"] / layer_ms["sampling"], 2),
        "op_ms": {name: round(ms, 3) for name, ms in op_ms.items()},
        "op_speedup": round(op_ms["torchvision"] / op_ms["sampling"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed calls per implementation")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per implementation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, dict] = {}
    totals = {kind: {"torchvision": 0.0, "sampling": 0.0} for kind in ("layer_ms", "op_ms")}
    with torch.inference_mode():
        for size in LEVELS:
            for cin, cout, count in LAYERS:
                case = bench_case(cin, cout, size, args.runs, args.warmup)
                results[f"{cin}->{cout} @ {size}x{size}"] = case
                for kind, total in totals.items():
                    for name in total:
                        total[name] += count * case[kind][name]
    report = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "cases": results,
        "ssh_total": {
            kind: {name: round(ms, 3) for name, ms in total.items()}
            for kind, total in totals.items()
        },
        "ssh_total_speedup": {
            kind: round(total["torchvision"] / total["sampling"], 2)
            for kind, total in totals.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
