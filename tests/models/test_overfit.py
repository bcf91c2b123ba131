"""Each registered detector overfits one synthetic image: the loss falls by at least 95% and
every face is found again at IoU >= 0.7."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from featherface.data.synthetic import SyntheticConfig, generate_split
from featherface.data.transforms import to_network_input
from featherface.detection import postprocess, prior_boxes
from featherface.engine.losses import MultiBoxLoss
from featherface.models import build_model

SIZE = 256
MAX_STEPS = 300


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.Tensor, torch.Tensor, dict]:
    folder = tmp_path_factory.mktemp("overfit")
    config = SyntheticConfig(
        seed=5,
        num_val=1,
        min_image_size=SIZE,
        max_image_size=SIZE,
        min_faces=3,
        max_faces=3,
        min_face_height=30.0,
        max_face_height=90.0,
        occlusion_prob=0.0,
        blur_prob=0.0,
        workers=1,
    )
    images, faces = generate_split(Path(folder), "val", config)
    rgb = np.asarray(Image.open(Path(folder) / images["path"][0]).convert("RGB"))
    boxes = torch.tensor(faces[["x", "y", "w", "h"]].to_numpy(np.float32))
    boxes[:, 2:] += boxes[:, :2]
    landmarks = torch.tensor(
        faces[[f"lm{i}_{a}" for i in range(5) for a in "xy"]].to_numpy(np.float32)
    )
    scale = torch.tensor([SIZE, SIZE], dtype=torch.float32)
    target = {"boxes": boxes / scale.repeat(2), "landmarks": landmarks / scale.repeat(5)}
    return to_network_input(rgb)[None], boxes, target


@pytest.mark.parametrize("name", ["featherface-nano-b", "retinaface-mnet025", "featherface-v1"])
def test_overfits_one_image(name: str, sample) -> None:
    torch.manual_seed(0)
    image, boxes, target = sample
    model = build_model(name).eval()  # frozen BatchNorm statistics: one image is no batch
    priors = prior_boxes((SIZE, SIZE))
    criterion = MultiBoxLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses: list[float] = []
    for _ in range(MAX_STEPS):
        loss = criterion(model(image), [target], priors).total
        losses.append(loss.item())
        if losses[-1] <= 0.05 * losses[0]:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] <= 0.05 * losses[0], f"loss {losses[-1]:.3f} from {losses[0]:.3f}"
    with torch.no_grad():
        (found,) = postprocess(model(image), priors, (SIZE, SIZE), score_threshold=0.5)
    assert len(found.boxes) > 0
    best = box_iou(boxes, found.boxes).max(dim=1).values
    assert (best >= 0.7).all(), best
