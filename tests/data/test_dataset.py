"""FaceDataset, collation and the seeded DataLoader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import DataLoader

from featherface.data.augment import EvalTransform, TrainAugmentation
from featherface.data.dataset import (
    FaceDataset,
    collate_detection,
    make_loader,
)
from featherface.data.layout import read_annotations
from featherface.data.prepare import PreparedData, write_synthetic_dataset
from featherface.data.schema import LANDMARK_COLUMNS, conform_faces, conform_images
from featherface.data.synthetic import SyntheticConfig
from featherface.errors import FeatherFaceError

TINY = SyntheticConfig(num_train=3, num_val=2, max_image_size=360, max_faces=5, workers=1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, TINY)
    images, faces = read_annotations(root)
    return PreparedData(conform_images(images), conform_faces(faces), root, "synthetic")


def _face_row(image_id: int, index: int, box: tuple[int, ...], landmarks: bool) -> dict:
    x, y, w, h = box
    row = {"image_id": image_id, "face_index": index, "x": x, "y": y, "w": w, "h": h}
    for column in LANDMARK_COLUMNS:
        axis = column[-1]
        row[column] = (x + w / 2 if axis == "x" else y + h / 2) if landmarks else np.nan
    row.update(blur=0, expression=0, illumination=0, invalid=0, occlusion=0, pose=0)
    row.update(keep_easy=pd.NA, keep_medium=pd.NA, keep_hard=pd.NA)
    return row


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """Three 64x48 train images: two faces (one without landmarks), no face, one face."""
    root = tmp_path_factory.mktemp("handmade")
    folder = root / "WIDER_train" / "images" / "0--Parade"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for image_id in range(3):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{image_id}.png")
        path = f"0--Parade/{image_id}.png"
        rows.append(dict(image_id=image_id, path=path, event="0--Parade", width=64, height=48))
    images = pd.DataFrame(rows).assign(split="train")
    faces = pd.DataFrame(
        [
            _face_row(0, 1, (30, 10, 20, 24), landmarks=False),
            _face_row(0, 0, (4, 6, 16, 20), landmarks=True),
            _face_row(2, 0, (10, 10, 30, 30), landmarks=True),
        ]
    )
    return PreparedData(conform_images(images), conform_faces(faces), root, "synthetic")


def test_items_carry_the_annotated_faces(handmade: PreparedData) -> None:
    dataset = FaceDataset(handmade, "train", EvalTransform(None), seed=0)
    assert len(dataset) == 3
    image, target = dataset[0]
    assert image.shape == (3, 48, 64)
    scale = torch.tensor([64.0, 48.0, 64.0, 48.0])
    # face_index order, x2 = x + w.
    torch.testing.assert_close(
        target["boxes"] * scale, torch.tensor([[4, 6, 20, 26], [30, 10, 50, 34.0]])
    )
    assert not target["landmarks"][0].isnan().any() and target["landmarks"][1].isnan().all()
    assert target["landmarks"][0, 0].item() * 64 == pytest.approx(12.0)


def test_image_without_faces_gives_empty_targets(handmade: PreparedData) -> None:
    for transform in (EvalTransform(32), TrainAugmentation(32)):
        image, target = FaceDataset(handmade, "train", transform, seed=0)[1]
        assert image.shape == (3, 32, 32)
        assert target["boxes"].shape == (0, 4) and target["landmarks"].shape == (0, 10)


def test_unknown_split_is_an_error(handmade: PreparedData) -> None:
    with pytest.raises(FeatherFaceError, match="unknown split"):
        FaceDataset(handmade, "test", EvalTransform(None))


def _assert_same_sample(a: tuple, b: tuple) -> None:
    torch.testing.assert_close(a[0], b[0])
    for key in ("boxes", "landmarks"):
        torch.testing.assert_close(a[1][key], b[1][key], equal_nan=True)


def test_randomness_follows_seed_epoch_and_index(synthetic: PreparedData) -> None:
    first = FaceDataset(synthetic, "train", TrainAugmentation(64), seed=11)
    second = FaceDataset(synthetic, "train", TrainAugmentation(64), seed=11)
    _assert_same_sample(first[1], second[1])
    first.set_epoch(1)
    assert not torch.equal(first[1][0], second[1][0])
    second.set_epoch(1)
    _assert_same_sample(first[1], second[1])
    other_seed = FaceDataset(synthetic, "train", TrainAugmentation(64), seed=12)
    other_seed.set_epoch(1)
    assert not torch.equal(first[1][0], other_seed[1][0])


def test_synthetic_val_split_matches_its_table(synthetic: PreparedData) -> None:
    dataset = FaceDataset(synthetic, "val", EvalTransform(None))
    val = synthetic.images[synthetic.images["split"] == "val"]
    assert len(dataset) == len(val) == TINY.num_val
    image_id = int(dataset.image_ids[0])
    faces = synthetic.faces[synthetic.faces["image_id"] == image_id].sort_values("face_index")
    image, target = dataset[0]
    height, width = image.shape[1:]
    expected = faces[["x", "y", "w", "h"]].to_numpy(dtype=np.float32)
    expected[:, 2:] += expected[:, :2]
    got = target["boxes"].numpy() * np.array([width, height, width, height], dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


def test_collate_stacks_images_and_lists_targets(handmade: PreparedData) -> None:
    dataset = FaceDataset(handmade, "train", TrainAugmentation(40), seed=0)
    images, targets = collate_detection([dataset[i] for i in range(3)])
    assert images.shape == (3, 3, 40, 40)
    assert [len(t["boxes"]) for t in targets][1] == 0
    assert all(t["landmarks"].shape[1] == 10 for t in targets)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """What the trainer does before an epoch: ``set_epoch`` on the dataset and the sampler."""
    for part in (loader.dataset, loader.sampler):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def _epochs(dataset: FaceDataset, workers: int, epochs: int = 2) -> list[list]:
    loader = make_loader(dataset, batch_size=2, shuffle=True, num_workers=workers, seed=5)
    result = []
    for epoch in range(epochs):
        set_loader_epoch(loader, epoch)
        result.append(list(loader))
    return result


def _assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (images_a, targets_a), (images_b, targets_b) in zip(a, b, strict=True):
        torch.testing.assert_close(images_a, images_b)
        for target_a, target_b in zip(targets_a, targets_b, strict=True):
            for key in ("boxes", "landmarks"):
                torch.testing.assert_close(target_a[key], target_b[key], equal_nan=True)


def test_loader_with_workers_is_reproducible_and_follows_the_epoch(
    synthetic: PreparedData,
) -> None:
    def dataset() -> FaceDataset:
        return FaceDataset(synthetic, "train", TrainAugmentation(48), seed=3)

    first, second = _epochs(dataset(), workers=2), _epochs(dataset(), workers=2)
    for epoch in range(2):
        _assert_same_batches(first[epoch], second[epoch])
    # Samples depend on (seed, epoch, index) only: the same batches without workers, which
    # also shows that the persistent workers saw set_epoch(1).
    in_process = _epochs(dataset(), workers=0)
    for epoch in range(2):
        _assert_same_batches(first[epoch], in_process[epoch])
    assert not torch.equal(first[0][0][0], first[1][0][0])
    assert first[0][0][0].shape == (2, 3, 48, 48) and first[0][-1][0].shape == (1, 3, 48, 48)


def test_distributed_sampler_follows_the_epoch(handmade: PreparedData, tmp_path: Path) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        dataset = FaceDataset(handmade, "train", EvalTransform(16), seed=0)
        loader = make_loader(dataset, 2, shuffle=True, num_workers=0, seed=9, distributed=True)
        set_loader_epoch(loader, 4)
        assert loader.sampler.epoch == 4 and dataset.epoch == 4
        assert loader.sampler.seed == 9
        assert sorted(loader.sampler) == [0, 1, 2]
    finally:
        dist.destroy_process_group()


def test_shuffle_order_is_seed_plus_epoch(handmade: PreparedData) -> None:
    dataset = FaceDataset(handmade, "train", EvalTransform(16), seed=0)
    loader = make_loader(dataset, 2, shuffle=True, num_workers=0, seed=9)
    for epoch in (0, 4):
        set_loader_epoch(loader, epoch)
        expected = torch.randperm(3, generator=torch.Generator().manual_seed(9 + epoch))
        assert list(loader.sampler) == expected.tolist()
        assert dataset.epoch == epoch
    ordered = make_loader(dataset, 2, shuffle=False, num_workers=0, seed=9)
    assert list(ordered.sampler) == [0, 1, 2]
