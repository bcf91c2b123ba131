"""Time the synthetic generator: images per second for the default configuration.

Usage: python benchmarks/synthetic_generation.py [--images 1000] [--workers 2]
Prints one JSON object: images, faces, workers, seconds, images_per_s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from featherface.data.synthetic import SyntheticConfig, generate_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = replace(SyntheticConfig(), num_train=args.images, workers=args.workers)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        images, faces = generate_split(Path(folder), "train", config)
        seconds = time.perf_counter() - start
    result = {
        "images": len(images),
        "faces": len(faces),
        "workers": args.workers,
        "seconds": round(seconds, 2),
        "images_per_s": round(len(images) / seconds, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
