"""Detections made visible: annotated images, a JSON listing, and the ``detect`` workflow.

A face is drawn as its box, its score above the box and its five landmarks, each landmark in its
own colour (:data:`LANDMARK_COLOURS`, in the order left eye, right eye, nose, left mouth corner,
right mouth corner). Line width and text size grow with the image: ``line = max(1, round(L /
400))`` pixels for the longer side ``L``; a landmark dot has radius
``max(1, min(line + 1, w / 12, h / 12))`` for a ``w x h`` box.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from featherface.detection import Detections
from featherface.errors import FeatherFaceError
from featherface.evaluate.inference import Mode, detect_image, read_rgb
from featherface.evaluate.runtime import load_runner
from featherface.params import PostprocessSettings
from featherface.utils.atomic import write_json

Colour = tuple[int, int, int]

BOX_COLOUR: Colour = (0, 255, 0)
TEXT_COLOUR: Colour = (0, 0, 0)
LANDMARK_COLOURS: tuple[Colour, ...] = (
    (255, 0, 0),  # left eye
    (255, 255, 0),  # right eye
    (0, 255, 255),  # nose
    (0, 96, 255),  # left mouth corner
    (255, 0, 255),  # right mouth corner
)
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
DETECTIONS_FILE = "detections.json"


def line_width(height: int, width: int) -> int:
    """Stroke width in pixels for an image: ``max(1, round(max(H, W) / 400))``."""
    return max(1, round(max(height, width) / 400))


def _visible(detections: Detections, score_threshold: float) -> list[int]:
    """Indices of faces with score ``> score_threshold``, lowest score first (drawn first)."""
    scores = detections.scores.detach().cpu()
    order = torch.argsort(scores, stable=True).tolist()
    return [i for i in order if float(scores[i]) > score_threshold]


def _draw_face(
    canvas: ImageDraw.ImageDraw,
    box: Sequence[float],
    score: float,
    landmarks: Sequence[float],
    line: int,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    """One box (corners in pixels), its score label and its five landmarks."""
    x1, y1, x2, y2 = box
    canvas.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=BOX_COLOUR, width=line)
    label = f"{score:.2f}"
    left, top, right, bottom = canvas.textbbox((0, 0), label, font=font)
    text_h = bottom - top
    y_text = y1 - text_h - 2 * line if y1 - text_h - 2 * line >= 0 else y1 + line
    canvas.rectangle(
        (x1, y_text, x1 + right - left + 2 * line, y_text + text_h + 2 * line), fill=BOX_COLOUR
    )
    canvas.text((x1 + line - left, y_text + line - top), label, fill=TEXT_COLOUR, font=font)
    radius = max(1.0, min(line + 1.0, (x2 - x1) / 12, (y2 - y1) / 12))
    for (x, y), colour in zip(np.reshape(landmarks, (5, 2)), LANDMARK_COLOURS, strict=True):
        canvas.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def draw_detections(
    rgb: np.ndarray, detections: Detections, score_threshold: float = 0.5
) -> Image.Image:
    """A copy of the ``uint8[H, W, 3]`` RGB image with every face of score ``> score_threshold``
    drawn on it (boxes and landmarks in pixels, as :class:`Detections` holds them). Higher
    scores are drawn last, on top."""
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    height, width = rgb.shape[:2]
    line = line_width(height, width)
    font = ImageFont.load_default(size=max(8, 6 + 4 * line))
    canvas = ImageDraw.Draw(image)
    boxes = detections.boxes.detach().cpu().tolist()
    scores = detections.scores.detach().cpu().tolist()
    landmarks = detections.landmarks.detach().cpu().tolist()
    for i in _visible(detections, score_threshold):
        _draw_face(canvas, boxes[i], scores[i], landmarks[i], line, font)
    return image


def detections_to_json(detections: Detections) -> list[dict[str, Any]]:
    """Faces as JSON-ready dicts, in the detections' order::

        {"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] * 5]}

    Pixel values are rounded to 2 decimals and scores to 6.
    """
    boxes = detections.boxes.detach().cpu().tolist()
    scores = detections.scores.detach().cpu().tolist()
    landmarks = detections.landmarks.detach().cpu().tolist()
    return [
        {
            "box": [round(v, 2) for v in box],
            "score": round(score, 6),
            "landmarks": [
                [round(x, 2), round(y, 2)] for x, y in zip(lm[0::2], lm[1::2], strict=True)
            ],
        }
        for box, score, lm in zip(boxes, scores, landmarks, strict=True)
    ]


def list_images(inputs: Path) -> list[Path]:
    """``[inputs]`` for an image file, else the folder's images (no recursion, sorted by name).

    Raises :class:`FeatherFaceError` for a missing path, a folder without images, or two images
    whose annotated outputs would share a name (same stem).
    """
    if inputs.is_file():
        return [inputs]
    if not inputs.is_dir():
        raise FeatherFaceError(f"{inputs}: no such image or folder")
    paths = sorted(
        path
        for path in inputs.iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise FeatherFaceError(f"{inputs}: no images ({', '.join(IMAGE_SUFFIXES)})")
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise FeatherFaceError(
                f"{path}: same output name as {seen[path.stem].name} ({path.stem}.jpg)"
            )
        seen[path.stem] = path
    return paths


def _output_paths(paths: Sequence[Path], out_dir: Path) -> list[Path]:
    """``<out_dir>/<stem>.jpg`` for each input; an output that is its own input is an error."""
    outputs = [out_dir / f"{path.stem}.jpg" for path in paths]
    for path, output in zip(paths, outputs, strict=True):
        if output.resolve() == path.resolve():
            raise FeatherFaceError(
                f"{path}: the annotated image would overwrite it; use another out_dir"
            )
    return outputs


def _save_jpeg(image: Image.Image, path: Path) -> None:
    """Write a JPEG through a temporary sibling, then rename it into place."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        image.save(temporary, format="JPEG", quality=95)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run_detect(
    model_path: Path,
    inputs: Path,
    out_dir: Path,
    score_threshold: float = 0.5,
    mode: Mode = "original",
    size: int = 640,
    nms_iou: float = 0.4,
    scales: Sequence[float] = (0.5, 1.0, 1.5),
    flip: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Detect faces in one image or every image of a folder and draw them.

    model_path: one of our ``.pt`` checkpoints or an ``.onnx`` detector
    (:func:`~featherface.evaluate.runtime.load_runner`); inputs: an image or a folder of
    ``.jpg``/``.jpeg``/``.png``/``.bmp`` images. Writes ``<out_dir>/<stem>.jpg`` per image and
    ``<out_dir>/detections.json``, and returns that JSON document::

        {"model": str, "mode": str, "score_threshold": float,
         "images": [{"image": path, "width": W, "height": H, "faces": [...]}]}

    with faces as :func:`detections_to_json` gives them (scores ``> score_threshold``). An
    unreadable image raises ``FeatherFaceError("<path>: cannot read image: ...")``; the JSON
    file is written only when every image is done.
    """
    model_path, inputs, out_dir = Path(model_path), Path(inputs), Path(out_dir)
    try:
        postprocess = PostprocessSettings(score_threshold=score_threshold, nms_iou=nms_iou)
    except ValueError as error:
        raise FeatherFaceError(f"detect: {error}") from None
    paths = list_images(inputs)
    outputs = _output_paths(paths, out_dir)
    runner = load_runner(model_path, device=device)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for path, output in zip(paths, outputs, strict=True):
        rgb = read_rgb(path)
        found = detect_image(runner, rgb, mode, size, postprocess, scales=scales, flip=flip)
        _save_jpeg(draw_detections(rgb, found, score_threshold), output)
        height, width = rgb.shape[:2]
        entries.append(
            {
                "image": str(path),
                "width": width,
                "height": height,
                "faces": detections_to_json(found),
            }
        )
    document = {
        "model": str(model_path),
        "mode": mode,
        "score_threshold": score_threshold,
        "images": entries,
    }
    write_json(out_dir / DETECTIONS_FILE, document)
    return document
