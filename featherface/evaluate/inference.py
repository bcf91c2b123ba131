"""Whole-image inference for evaluation: faces in original-image pixels, and prediction files.

An image is run through one or more *passes*; a pass resizes the image by a factor ``s`` (to
``round(H * s) x round(W * s)``, bilinear, ``align_corners=False``, on the float network input,
as ``cv2.resize`` does in the reference test script) and optionally mirrors it left-right:

- ``"original"``: one pass, ``s = 1``: the whole image at its own size (the reference protocol);
- ``"resize"``: one pass, ``s = size / max(H, W)`` (the longer side becomes ``size``);
- ``"multiscale"``: one pass per ``s`` in ``scales``, each also mirrored when ``flip``.

Each pass's priors are built for its input size (:func:`prior_boxes` caches them by size). Of
its face scores (softmax of the logits), those ``> score_threshold`` are sorted and the best
``top_k`` kept; they are decoded to coordinates normalised by the pass input and multiplied by
the original ``(W, H)``, which undoes the resize exactly. A mirrored pass maps ``x -> W - x`` and
swaps the left and right eyes and mouth corners (landmarks 0 <-> 1 and 3 <-> 4). The candidates
of all passes are then merged by :func:`featherface.detection.select`: sort by score (stable,
passes in order), NMS at ``nms_iou`` (+1 pixel IoU), ``keep_k``. With one pass this is exactly
the reference test script's post-processing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.nn import functional as F

from featherface.data.transforms import to_network_input
from featherface.detection import Detections, decode_boxes, decode_landmarks, prior_boxes, select
from featherface.errors import FeatherFaceError
from featherface.evaluate.predictions import prediction_path, write_prediction_file
from featherface.evaluate.runtime import Runner
from featherface.params import EvaluateParams, PostprocessSettings
from featherface.utils.atomic import staged_dir

Mode = Literal["original", "resize", "multiscale"]
MODES: tuple[str, ...] = ("original", "resize", "multiscale")
# Landmark order after mirroring: right eye, left eye, nose, right mouth corner, left mouth corner.
MIRRORED_LANDMARKS: tuple[int, ...] = (1, 0, 2, 4, 3)


class _Pass(NamedTuple):
    """One network run over an image: resize factor ``scale`` and whether it is mirrored."""

    scale: float
    flip: bool


class _Job(NamedTuple):
    image: int
    index: int
    run: _Pass


def read_rgb(path: str | Path) -> np.ndarray:
    """``uint8[H, W, 3]`` RGB pixels of an image file, read with Pillow (EXIF orientation applied,
    as ``cv2.imread`` does). An unreadable file raises a one-line :class:`FeatherFaceError`
    ``"<path>: cannot read image: <reason>"``."""
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise FeatherFaceError(f"{path}: cannot read image: {reason}") from None


def _passes(
    mode: str, size: int, scales: Sequence[float], flip: bool, image_size: tuple[int, int]
) -> list[_Pass]:
    """The passes of ``mode`` for a ``(height, width)`` image."""
    if mode == "original":
        return [_Pass(1.0, False)]
    if mode == "resize":
        if size <= 0:
            raise FeatherFaceError(f"resize mode needs a positive size, got {size}")
        return [_Pass(size / max(image_size), False)]
    if mode == "multiscale":
        if not scales or any(s <= 0 for s in scales):
            raise FeatherFaceError(f"multiscale mode needs positive scales, got {list(scales)}")
        flips = (False, True) if flip else (False,)
        return [_Pass(float(s), f) for s in scales for f in flips]
    raise FeatherFaceError(f"unknown inference mode {mode!r}; known: {list(MODES)}")


def _input_size(image_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(round(H * s), round(W * s))``, at least one pixel each; ``(H, W)`` at ``s = 1``."""
    height, width = image_size
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def _network_input(rgb: np.ndarray, run: _Pass) -> Tensor:
    """``uint8[H, W, 3]`` RGB -> ``float32[3, h, w]`` network input of one pass."""
    image = to_network_input(rgb)
    if run.flip:
        image = image.flip(-1)
    size = _input_size(rgb.shape[:2], run.scale)
    if size != tuple(rgb.shape[:2]):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    return image


def _unmirror(boxes: Tensor, landmarks: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Map ``Tensor[N, 4]`` boxes and ``Tensor[N, 10]`` landmarks of a mirrored image back:
    ``x -> W - x``, box corners ``(W - x2, y1, W - x1, y2)``, landmarks reordered by
    :data:`MIRRORED_LANDMARKS`."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    boxes = torch.stack([width - x2, y1, width - x1, y2], dim=-1)
    points = landmarks.unflatten(-1, (5, 2))[:, list(MIRRORED_LANDMARKS)]
    points = torch.stack([width - points[..., 0], points[..., 1]], dim=-1)
    return boxes, points.flatten(-2)


def _candidates(
    outputs: tuple[Tensor, Tensor, Tensor],
    image_size: tuple[int, int],
    input_size: tuple[int, int],
    flip: bool,
    limits: PostprocessSettings,
) -> Detections:
    """The ``top_k`` best faces of one pass with score ``> score_threshold``, by descending
    score, in original pixels.

    outputs: ``(loc Tensor[A, 4], conf Tensor[A, 2] logits, landm Tensor[A, 10])`` for an
    ``input_size`` input; image_size: the original ``(H, W)``.
    """
    loc, conf, landm = outputs
    scores = torch.softmax(conf.float(), dim=-1)[:, 1]
    keep = torch.nonzero(scores > limits.score_threshold).squeeze(1)
    keep = keep[torch.sort(scores[keep], descending=True, stable=True).indices[: limits.top_k]]
    priors = prior_boxes(input_size)[keep]
    height, width = image_size
    scale = torch.tensor([width, height], dtype=torch.float32)
    boxes = decode_boxes(loc[keep].float(), priors) * scale.repeat(2)
    landmarks = decode_landmarks(landm[keep].float(), priors) * scale.repeat(5)
    if flip:
        boxes, landmarks = _unmirror(boxes, landmarks, width)
    return Detections(boxes=boxes, scores=scores[keep], landmarks=landmarks)


def _run_jobs(
    runner: Runner, images: Sequence[np.ndarray], jobs: list[_Job], limits: PostprocessSettings
) -> list[Detections]:
    """Run jobs that share one input size as one batch; one candidate set per job."""
    inputs = [_network_input(images[job.image], job.run) for job in jobs]
    batch = inputs[0][None] if len(inputs) == 1 else torch.stack(inputs)  # no copy for one
    loc, conf, landm = runner.predict(batch)
    input_size = (int(batch.shape[2]), int(batch.shape[3]))
    return [
        _candidates(
            (loc[k], conf[k], landm[k]),
            images[job.image].shape[:2],
            input_size,
            job.run.flip,
            limits,
        )
        for k, job in enumerate(jobs)
    ]


def _merge(parts: Sequence[Detections], limits: PostprocessSettings) -> Detections:
    """Concatenate candidate sets (in pass order), sort, NMS, ``keep_k``."""
    boxes = torch.cat([part.boxes for part in parts])
    scores = torch.cat([part.scores for part in parts])
    landmarks = torch.cat([part.landmarks for part in parts])
    everything = len(scores)
    return select(
        boxes, scores, landmarks, -float("inf"), everything, limits.nms_iou, limits.keep_k
    )


def _group_jobs(
    images: Sequence[np.ndarray], mode: str, size: int, scales: Sequence[float], flip: bool
) -> tuple[dict[tuple[int, int], list[_Job]], list[int]]:
    """Jobs grouped by network input ``(h, w)``, and the number of passes of each image."""
    groups: dict[tuple[int, int], list[_Job]] = {}
    counts = []
    for number, rgb in enumerate(images):
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FeatherFaceError(f"image {number}: expected uint8[H, W, 3], got {rgb.shape}")
        runs = _passes(mode, size, scales, flip, rgb.shape[:2])
        counts.append(len(runs))
        for index, run in enumerate(runs):
            key = _input_size(rgb.shape[:2], run.scale)
            groups.setdefault(key, []).append(_Job(number, index, run))
    return groups, counts


def detect_images(
    runner: Runner,
    images: Sequence[np.ndarray],
    mode: Mode = "original",
    size: int = 640,
    postprocess: PostprocessSettings = PostprocessSettings(),
    scales: Sequence[float] = (0.5, 1.0, 1.5),
    flip: bool = True,
    batch_size: int = 8,
) -> list[Detections]:
    """Faces of each ``uint8[H, W, 3]`` RGB image, in its own pixels (see the module doc).

    ``postprocess``: per pass ``score > score_threshold`` then the ``top_k`` best; after
    merging the passes, NMS at ``nms_iou`` and the ``keep_k`` best. Any
    :class:`~featherface.params.PostprocessSettings` will do (``EvaluateParams`` is one); only
    its four post-processing values are read.

    Passes whose network inputs have the same shape (images of one size, or the plain and
    mirrored passes of one scale) run together in batches of up to ``batch_size``; the others
    run one by one. Only one batch of network inputs is held at a time; the images themselves
    are the caller's, so pass long lists in chunks. Results do not depend on the batching.
    """
    if batch_size < 1:
        raise FeatherFaceError(f"batch_size must be at least 1, got {batch_size}")
    groups, counts = _group_jobs(images, mode, size, scales, flip)
    found: dict[tuple[int, int], Detections] = {}
    for jobs in groups.values():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            for job, part in zip(chunk, _run_jobs(runner, images, chunk, postprocess), strict=True):
                found[job.image, job.index] = part
    return [
        _merge([found[image, index] for index in range(count)], postprocess)
        for image, count in enumerate(counts)
    ]


def detect_image(
    runner: Runner,
    rgb: np.ndarray,
    mode: Mode = "original",
    size: int = 640,
    postprocess: PostprocessSettings = PostprocessSettings(),
    scales: Sequence[float] = (0.5, 1.0, 1.5),
    flip: bool = True,
) -> Detections:
    """Faces of one ``uint8[H, W, 3]`` RGB image in its pixels; see :func:`detect_images`."""
    return detect_images(runner, [rgb], mode, size, postprocess, scales, flip)[0]


def write_predictions(
    detections_by_image: Mapping[tuple[str, str], Detections], out_dir: str | Path
) -> None:
    """Write ``<out_dir>/<event>/<name>.txt`` for every ``(event, name)`` key in the official
    layout, by :func:`write_prediction_file`: lines ``int(x1) int(y1) int(x2)-int(x1)
    int(y2)-int(y1) score`` in the detections' order. ``name`` is the image file name (a ``.jpg``
    suffix is dropped).

    The folder is built aside and then replaces ``out_dir`` whole, so no stale or half-written
    file is ever left in it.
    """
    with staged_dir(out_dir) as staging:
        for (event, name), found in detections_by_image.items():
            name = name.removesuffix(".jpg")
            write_prediction_file(
                prediction_path(staging, event, name),
                name,
                found.boxes.detach().cpu().numpy(),
                found.scores.detach().cpu().numpy(),
            )


def chunks(items: list, size: int) -> Iterator[list]:
    """``items`` in consecutive pieces of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def detect_split(
    runner: Runner,
    image_files: list[Path],
    params: EvaluateParams,
    progress: Callable[[int], None] | None = None,
) -> list:
    """Detections for each file, read and run in chunks of ``params.batch_size`` images."""
    found = []
    for chunk in chunks(image_files, params.batch_size):
        found += detect_images(
            runner, [read_rgb(path) for path in chunk], params.mode, params.size,
            params.postprocess(), params.scales, params.flip, params.batch_size,
        )  # fmt: skip
        if progress:
            progress(len(found))
    return found
