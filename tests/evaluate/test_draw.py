"""Drawing detections, their JSON form, and the detect workflow over images and folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featherface.detection.postprocess import Detections
from featherface.errors import FeatherFaceError
from featherface.evaluate.draw import (
    BOX_COLOUR,
    DETECTIONS_FILE,
    LANDMARK_COLOURS,
    detections_to_json,
    draw_detections,
    line_width,
    run_detect,
)
from featherface.evaluate.inference import detect_image, read_rgb
from featherface.evaluate.runtime import load_runner
from featherface.models import build_model
from featherface.models.checkpoint import save_checkpoint
from featherface.params import PostprocessSettings


def one_face(width: int, height: int, score: float = 0.9) -> Detections:
    """One face covering the middle of a ``width x height`` image, landmarks spread across it."""
    box = torch.tensor([[0.2 * width, 0.2 * height, 0.8 * width, 0.8 * height]])
    xs = torch.tensor([0.35, 0.65, 0.5, 0.38, 0.62]) * width
    ys = torch.tensor([0.35, 0.35, 0.5, 0.68, 0.68]) * height
    landmarks = torch.stack([xs, ys], dim=-1).reshape(1, 10)
    return Detections(boxes=box, scores=torch.tensor([score]), landmarks=landmarks)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (17, 33), (333, 101), (1500, 40)])
def test_drawing_keeps_the_size_on_odd_images(width: int, height: int) -> None:
    rgb = np.full((height, width, 3), 128, dtype=np.uint8)
    image = draw_detections(rgb, one_face(width, height), score_threshold=0.5)
    assert image.size == (width, height) and image.mode == "RGB"
    assert np.asarray(image).shape == rgb.shape
    assert (rgb == 128).all()  # the input is not drawn on


def test_boxes_and_landmarks_are_drawn_in_their_colours() -> None:
    width, height = 1600, 1200
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    found = one_face(width, height)
    pixels = np.asarray(draw_detections(rgb, found, score_threshold=0.5))
    line = line_width(height, width)
    assert line == 4
    x1, y1, _, y2 = (int(v) for v in found.boxes[0])
    middle = (y1 + y2) // 2
    for dx in range(line):  # a left edge ``line`` pixels wide
        assert tuple(pixels[middle, x1 + dx]) == BOX_COLOUR
    assert tuple(pixels[middle, x1 + line]) == (0, 0, 0)
    points = found.landmarks[0].reshape(5, 2)
    for (x, y), colour in zip(points.tolist(), LANDMARK_COLOURS, strict=True):
        assert tuple(pixels[round(y), round(x)]) == colour
    assert len(set(LANDMARK_COLOURS) | {BOX_COLOUR}) == 6


def test_faces_at_or_below_the_threshold_are_not_drawn() -> None:
    rgb = np.zeros((60, 80, 3), dtype=np.uint8)
    image = draw_detections(rgb, one_face(80, 60, score=0.5), score_threshold=0.5)
    assert not np.asarray(image).any()
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 10))
    assert not np.asarray(draw_detections(rgb, empty, 0.0)).any()


def test_json_lists_boxes_scores_and_landmark_pairs() -> None:
    found = Detections(
        boxes=torch.tensor([[10.123, 20.0, 30.5, 40.25]]),
        scores=torch.tensor([0.987654321]),
        landmarks=torch.arange(10, dtype=torch.float32).reshape(1, 10) + 0.004,
    )
    faces = detections_to_json(found)
    assert faces == [
        {
            "box": [10.12, 20.0, 30.5, 40.25],
            "score": 0.987654,
            "landmarks": [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]],
        }
    ]
    assert json.loads(json.dumps(faces)) == faces


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "retinaface.pt"
    save_checkpoint(path, "retinaface-mnet025", build_model("retinaface-mnet025"))
    return path


def write_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Three small images of odd sizes (PNG, JPEG, BMP) and a file that is not an image."""
    sizes = {"a.png": (45, 31), "b.JPG": (64, 48), "c.bmp": (33, 70)}
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, (width, height)) in enumerate(sizes.items()):
        pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return sizes


def test_detect_over_a_folder(checkpoint: Path, tmp_path: Path) -> None:
    sizes = write_images(tmp_path / "in")
    out = tmp_path / "out"
    document = run_detect(checkpoint, tmp_path / "in", out, score_threshold=0.52)
    assert json.loads((out / DETECTIONS_FILE).read_text()) == document
    assert [Path(entry["image"]).name for entry in document["images"]] == sorted(sizes)
    runner = load_runner(checkpoint)
    for entry in document["images"]:
        path = Path(entry["image"])
        assert (entry["width"], entry["height"]) == sizes[path.name]
        with Image.open(out / f"{path.stem}.jpg") as drawn:
            assert drawn.size == sizes[path.name]
        expected = detect_image(runner, read_rgb(path), postprocess=PostprocessSettings(0.52))
        assert entry["faces"] == detections_to_json(expected)
        assert all(face["score"] > 0.52 for face in entry["faces"])
    assert sum(len(entry["faces"]) for entry in document["images"]) > 0


def test_detect_one_image_with_resize(checkpoint: Path, tmp_path: Path) -> None:
    write_images(tmp_path)
    document = run_detect(checkpoint, tmp_path / "b.JPG", tmp_path / "out", mode="resize", size=32)
    assert [entry["width"] for entry in document["images"]] == [64]
    assert document["mode"] == "resize"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.jpg", DETECTIONS_FILE]


def test_unreadable_image_names_the_file(checkpoint: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in")
    broken = tmp_path / "in" / "d.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a JPEG")
    with pytest.raises(FeatherFaceError) as error:
        run_detect(checkpoint, tmp_path / "in", tmp_path / "out")
    message = str(error.value)
    assert message.startswith(f"{broken}: cannot read image: ")
    assert "\n" not in message
    assert not (tmp_path / "out" / DETECTIONS_FILE).exists()


def test_input_problems(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(FeatherFaceError, match="no such image or folder"):
        run_detect(checkpoint, tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatherFaceError, match="no images"):
        run_detect(checkpoint, tmp_path / "empty", tmp_path / "out")
    write_images(tmp_path / "twins")
    Image.new("RGB", (8, 8)).save(tmp_path / "twins" / "a.jpg")
    with pytest.raises(FeatherFaceError, match=r"a.png: same output name as a.jpg"):
        run_detect(checkpoint, tmp_path / "twins", tmp_path / "out")
    with pytest.raises(FeatherFaceError, match="would overwrite it"):
        run_detect(checkpoint, tmp_path / "twins" / "a.jpg", tmp_path / "twins")
    with pytest.raises(FeatherFaceError, match=r"detect: score_threshold must be in \[0, 1\)"):
        run_detect(checkpoint, tmp_path / "twins", tmp_path / "out", score_threshold=1.0)
