"""Inference for evaluation: modes, batching, prediction files, PyTorch and ONNX runners."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from featherface.detection import encode_boxes, encode_landmarks, prior_boxes
from featherface.detection.postprocess import Detections
from featherface.errors import FeatherFaceError
from featherface.evaluate.inference import (
    detect_image,
    detect_images,
    write_predictions,
)
from featherface.evaluate.runtime import OnnxRunner, TorchRunner, load_runner
from featherface.models import build_model
from featherface.models.checkpoint import save_checkpoint
from featherface.models.outputs import RawOutputs
from featherface.params import EvaluateParams, PostprocessSettings

# Three faces of a 331 x 237 (W x H) image, corners in pixels, with asymmetric landmarks
# (left eye, right eye, nose, left mouth corner, right mouth corner) and face logits.
WIDTH, HEIGHT = 331, 237
FACES = torch.tensor(
    [[20.5, 30.25, 80.0, 100.5], [150.0, 40.0, 230.75, 150.0], [260, 150, 300, 200]]
)
LANDMARKS = torch.tensor(
    [
        [35.0, 50.0, 62.0, 52.0, 50.0, 66.0, 40.0, 85.0, 66.0, 83.0],
        [170.0, 70.0, 210.0, 75.0, 192.0, 100.0, 175.0, 125.0, 205.0, 128.0],
        [270.0, 165.0, 290.0, 166.0, 281.0, 178.0, 272.0, 190.0, 289.0, 189.0],
    ]
)
LOGITS = torch.tensor([1.0, 3.0, 2.0])
BACKGROUND = (4.0, -4.0)


def sigmoid(values: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-values))


def mirror(boxes: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised faces of the mirrored scene; landmarks keep their left/right meaning."""
    boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], dim=-1)
    points = landmarks.unflatten(-1, (5, 2))[:, [1, 0, 2, 4, 3]]  # swap eyes, mouth corners
    points = torch.stack([1 - points[..., 0], points[..., 1]], dim=-1)
    return boxes, points.flatten(-2)


class SceneDetector(nn.Module):
    """A detector that knows its scene: it emits FACES (normalised by the original image size) at
    whatever input size it is given, encoded on the priors nearest to each face. An input whose
    right half is brighter than its left half is the mirrored scene: faces mirrored, landmarks
    swapped as a real detector would label them, logits raised by ``mirror_bonus``. With
    ``tag_scores`` the logits also grow with the input's mean, so different images differ.
    """

    def __init__(self, mirror_bonus: float = 0.0, tag_scores: bool = False) -> None:
        super().__init__()
        scale = torch.tensor([WIDTH, HEIGHT], dtype=torch.float32)
        self.boxes = FACES / scale.repeat(2)
        self.landmarks = LANDMARKS / scale.repeat(5)
        self.mirror_bonus = mirror_bonus
        self.tag_scores = tag_scores
        self.seen: list[tuple[int, ...]] = []

    def _scene(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        half = image.shape[-1] // 2
        mirrored = bool(image[..., :half].mean() < image[..., -half:].mean())
        boxes, landmarks = (
            mirror(self.boxes, self.landmarks)
            if mirrored
            else (
                self.boxes,
                self.landmarks,
            )
        )
        logits = LOGITS + (self.mirror_bonus if mirrored else 0.0)
        if self.tag_scores:
            logits = logits + image.mean() / 100
        return boxes, landmarks, logits

    def forward(self, images: Tensor) -> RawOutputs:
        self.seen.append(tuple(images.shape))
        batch, _, height, width = images.shape
        priors = prior_boxes((height, width))
        loc = torch.zeros(batch, len(priors), 4)
        conf = torch.tensor(BACKGROUND).repeat(batch, len(priors), 1)
        landm = torch.zeros(batch, len(priors), 10)
        for b in range(batch):
            boxes, landmarks, logits = self._scene(images[b])
            centres = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
            nearest = torch.cdist(centres, priors).argmin(dim=1)
            assert len(set(nearest.tolist())) == len(boxes), "faces share a prior"
            loc[b, nearest] = encode_boxes(boxes, priors[nearest])
            landm[b, nearest] = encode_landmarks(landmarks, priors[nearest])
            conf[b, nearest] = torch.stack([torch.zeros_like(logits), logits], dim=-1)
        return RawOutputs(loc, conf, landm)


def scene_image(height: int = HEIGHT, width: int = WIDTH, level: int = 0) -> np.ndarray:
    """``uint8[H, W, 3]``: a bright left half and a dark right half (the stub's orientation cue)."""
    image = np.full((height, width, 3), 30 + level, dtype=np.uint8)
    image[:, : width // 2] = 200 + level
    return image


def by_score(logits: Tensor) -> Tensor:
    return torch.argsort(logits, descending=True)


def assert_scene(found: Detections, logits: Tensor = LOGITS, atol: float = 1e-3) -> None:
    order = by_score(logits)
    torch.testing.assert_close(found.scores, sigmoid(logits[order]), atol=1e-6, rtol=0)
    torch.testing.assert_close(found.boxes, FACES[order], atol=atol, rtol=0)
    torch.testing.assert_close(found.landmarks, LANDMARKS[order], atol=atol, rtol=0)


def test_original_mode_returns_the_faces_in_pixels() -> None:
    stub = SceneDetector()
    found = detect_image(TorchRunner(stub), scene_image())
    assert stub.seen == [(1, 3, HEIGHT, WIDTH)]
    assert_scene(found)


def test_resize_mode_maps_boxes_back_to_the_original() -> None:
    stub = SceneDetector()
    found = detect_image(TorchRunner(stub), scene_image(), mode="resize", size=160)
    assert stub.seen == [(1, 3, round(HEIGHT * 160 / WIDTH), 160)]
    assert_scene(found)


def test_multiscale_with_flip_merges_passes_and_swaps_landmarks() -> None:
    stub = SceneDetector(mirror_bonus=0.5)
    found = detect_image(TorchRunner(stub), scene_image(), mode="multiscale", scales=(0.5, 1.0))
    half = (2, 3, round(HEIGHT / 2), round(WIDTH / 2))
    assert stub.seen == [half, (2, 3, HEIGHT, WIDTH)]  # plain and mirrored pass batched
    # One face each after NMS; the mirrored passes score higher, so their faces are kept.
    assert_scene(found, LOGITS + 0.5)


def test_multiscale_without_flip() -> None:
    stub = SceneDetector(mirror_bonus=0.5)
    found = detect_image(
        TorchRunner(stub), scene_image(), mode="multiscale", scales=(0.75, 1.25), flip=False
    )
    assert [shape[0] for shape in stub.seen] == [1, 1]
    assert_scene(found)


def test_thresholds_and_keep_k() -> None:
    runner = TorchRunner(SceneDetector())
    above_first = PostprocessSettings(score_threshold=float(sigmoid(LOGITS[0])) + 1e-3)
    found = detect_image(runner, scene_image(), postprocess=above_first)
    assert len(found.scores) == 2
    found = detect_image(runner, scene_image(), postprocess=PostprocessSettings(keep_k=1))
    torch.testing.assert_close(found.boxes, FACES[1:2], atol=1e-3, rtol=0)
    # A section that inherits the settings (evaluate) selects the same faces.
    section = detect_image(runner, scene_image(), postprocess=EvaluateParams(keep_k=1))
    for ours, theirs in zip(section, found, strict=True):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


@pytest.mark.parametrize("mode", ["original", "multiscale"])
def test_batching_gives_the_same_faces_as_one_by_one(mode: str) -> None:
    images = [scene_image(level=k) for k in range(3)] + [scene_image(200, 180, level=5)]
    images.insert(1, scene_image(120, 90, level=7))
    stub = SceneDetector(tag_scores=True)
    batched = detect_images(TorchRunner(stub), images, mode=mode, scales=(0.5, 1.0), batch_size=2)
    if mode == "original":
        assert [shape[0] for shape in stub.seen] == [2, 1, 1, 1]
    single = [detect_image(TorchRunner(stub), image, mode, scales=(0.5, 1.0)) for image in images]
    assert len(batched) == len(images)
    for ours, theirs in zip(batched, single, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert len({float(found.scores[0]) for found in batched}) == len(images)


def test_bad_arguments() -> None:
    runner = TorchRunner(SceneDetector())
    with pytest.raises(FeatherFaceError, match="unknown inference mode"):
        detect_image(runner, scene_image(), mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(FeatherFaceError, match="positive scales"):
        detect_image(runner, scene_image(), mode="multiscale", scales=(0.0,))
    with pytest.raises(FeatherFaceError, match="expected uint8"):
        detect_image(runner, np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(FeatherFaceError, match="batch_size"):
        detect_images(runner, [scene_image()], batch_size=0)


def test_write_predictions_uses_the_official_layout(tmp_path: Path) -> None:
    out = tmp_path / "predictions"
    (out / "stale").mkdir(parents=True)
    found = Detections(
        boxes=torch.tensor([[10.7, 20.2, 50.9, 80.0], [-1.5, 3.0, 9.99, 7.5]]),
        scores=torch.tensor([0.99966156, 0.020503143]),
        landmarks=torch.zeros(2, 10),
    )
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 10))
    write_predictions({("0--Parade", "0_Parade_a"): found, ("1--Event", "b.jpg"): empty}, out)
    text = (out / "0--Parade" / "0_Parade_a.txt").read_text()
    assert text == "0_Parade_a\n2\n10 20 40 60 0.99966156 \n-1 3 10 4 0.020503143 \n"
    assert (out / "1--Event" / "b.txt").read_text() == "b\n0\n"
    assert not (out / "stale").exists()


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export with the runtime's contract: input ``images``, outputs ``loc``/``conf``/``landm``,
    dynamic batch, height and width."""
    dynamic = {"images": {0: "batch", 2: "height", 3: "width"}}
    dynamic |= {name: {0: "batch", 1: "anchors"} for name in ("loc", "conf", "landm")}
    with warnings.catch_warnings():  # the legacy exporter announces its deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 64, 96),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["loc", "conf", "landm"],
            dynamic_axes=dynamic,
        )


@pytest.fixture(scope="module")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, Path]:
    """A seeded RetinaFace-mnet0.25 as a module, one of our checkpoints and an ONNX file."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    torch.manual_seed(0)
    model = build_model("retinaface-mnet025").eval()
    folder = tmp_path_factory.mktemp("models")
    save_checkpoint(folder / "model.pt", "retinaface-mnet025", model)
    export_onnx(model, folder / "model.onnx")
    return model, folder / "model.pt", folder / "model.onnx"


def test_onnx_runner_matches_the_torch_runner(small_models: tuple[nn.Module, Path, Path]) -> None:
    model, _, onnx_path = small_models
    torch_runner, onnx_runner = TorchRunner(model), OnnxRunner(onnx_path, threads=1)
    for shape in [(2, 3, 64, 96), (1, 3, 77, 50)]:
        batch = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 60
        for ours, theirs in zip(
            onnx_runner.predict(batch), torch_runner.predict(batch.numpy()), strict=True
        ):
            assert ours.shape == theirs.shape and ours.dtype == torch.float32
            torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    image = np.random.default_rng(2).integers(0, 255, (53, 71, 3), dtype=np.uint8)
    for a, b in zip(
        detect_image(onnx_runner, image), detect_image(torch_runner, image), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_load_runner_by_file_type(
    small_models: tuple[nn.Module, Path, Path], tmp_path: Path
) -> None:
    model, checkpoint, onnx_path = small_models
    runner = load_runner(checkpoint)
    assert isinstance(runner, TorchRunner)
    batch = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(runner.predict(batch).conf, TorchRunner(model).predict(batch).conf)
    assert isinstance(load_runner(onnx_path), OnnxRunner)
    with pytest.raises(FeatherFaceError, match="unknown model file type"):
        load_runner(tmp_path / "model.tflite")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(FeatherFaceError, match=r"garbage.onnx: not a loadable ONNX model"):
        load_runner(garbage)
    with pytest.raises(FeatherFaceError, match="ONNX model not found"):
        OnnxRunner(tmp_path / "missing.onnx")


def test_onnx_runner_checks_names(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

    class Identity(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x * 2

    path = tmp_path / "other.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Identity(), (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False, input_names=["x"]
        )
    with pytest.raises(FeatherFaceError, match=r"other.onnx: expected input 'images'"):
        OnnxRunner(path)
