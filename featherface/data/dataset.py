"""The torch ``Dataset`` and ``DataLoader`` of the training stages.

Randomness is per sample: item ``i`` of epoch ``e`` is transformed with
``numpy.random.default_rng(SeedSequence([seed, e, i]))``, so a sample depends on neither the
worker that builds it nor the number of workers, and a run is reproducible from its seed.

Each epoch, before iterating the loader, call ``set_epoch(e)`` on the dataset and on the
loader's sampler where it has one, as :meth:`featherface.engine.trainer.Trainer.set_epoch` does.

The dataset keeps its epoch in shared memory, so worker processes that persist across epochs
(``persistent_workers``) see the new epoch; the loader's ``DistributedSampler`` shuffles epoch
``e`` with ``seed + e`` (and repeats the order of epoch 0 if ``set_epoch`` is never called).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from featherface.data.augment import SampleTransform
from featherface.data.prepare import PreparedData
from featherface.data.schema import LANDMARK_COLUMNS, SPLITS
from featherface.errors import FeatherFaceError

Target = dict[str, Tensor]
Sample = tuple[Tensor, Target]


def _targets_by_image(
    faces: pd.DataFrame, image_ids: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image id, ``(float32[F, 4] x1y1x2y2, float32[F, 10] landmarks)`` in ``face_index``
    order; ``x2 = x + w``, ``y2 = y + h``."""
    faces = faces[faces["image_id"].isin(image_ids)].sort_values(["image_id", "face_index"])
    xywh = faces[["x", "y", "w", "h"]].to_numpy(dtype=np.float32)
    corners = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    landmarks = faces[list(LANDMARK_COLUMNS)].to_numpy(dtype=np.float32)
    ids = faces["image_id"].to_numpy()
    starts = np.searchsorted(ids, image_ids, side="left")
    ends = np.searchsorted(ids, image_ids, side="right")
    return [(corners[a:b], landmarks[a:b]) for a, b in zip(starts, ends, strict=True)]


class FaceDataset(Dataset[Sample]):
    """The images of one split with their faces, each passed through ``transform``.

    Item ``i`` is ``(Tensor[3, S, S], {"boxes": Tensor[F, 4], "landmarks": Tensor[F, 10]})`` with
    targets as ``transform`` returns them (normalised ``x1y1x2y2``; NaN landmark rows where a face
    has none); an image without faces gives ``Tensor[0, 4]`` and ``Tensor[0, 10]``. Images are in
    ``image_id`` order; :attr:`image_ids` maps an index back to its image.
    """

    def __init__(
        self, data: PreparedData, split: str, transform: SampleTransform, seed: int = 0
    ) -> None:
        if split not in SPLITS:
            raise FeatherFaceError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        images = data.images[data.images["split"] == split].sort_values("image_id")
        self.image_ids: np.ndarray = images["image_id"].to_numpy()
        self.paths: list[str] = [str(data.image_path(row)) for _, row in images.iterrows()]
        self.targets = _targets_by_image(data.faces, self.image_ids)
        self.split = split
        self.transform = transform
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the per-sample randomness of ``epoch`` (seen by running workers too)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index`` in the current epoch: ``SeedSequence([seed, e, i])``."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))

    def read_image(self, index: int) -> np.ndarray:
        """``uint8[H, W, 3]`` RGB pixels of item ``index``."""
        with Image.open(self.paths[index]) as image:
            return np.asarray(image.convert("RGB"))

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        boxes, landmarks = self.targets[index]
        image, boxes_t, landmarks_t = self.transform(
            self.read_image(index), boxes, landmarks, self.rng(index)
        )
        return image, {"boxes": boxes_t, "landmarks": landmarks_t}


def collate_detection(batch: Sequence[Sample]) -> tuple[Tensor, list[Target]]:
    """``B`` samples -> ``(Tensor[B, 3, S, S], B target dicts)``; faces per image may differ."""
    images = torch.stack([image for image, _ in batch])
    return images, [target for _, target in batch]


def seed_worker(worker_id: int) -> None:
    """Seed Python's and numpy's global generators of a loader worker from its torch seed.

    The samples do not use them (see the module docstring); this keeps any third-party code
    that does reproducible too.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    drop_last: bool = False,
    distributed: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A ``DataLoader`` of :func:`collate_detection` batches, reproducible from ``seed``.

    The order comes from a ``DistributedSampler(shuffle, seed, drop_last)``: over the ranks of
    the initialised ``torch.distributed`` group with ``distributed``, else as the only replica.
    Epoch ``e`` is then shuffled with ``seed + e`` whatever the number of workers, and a run
    resumed at epoch ``e`` sees the same order. A ``torch.Generator`` seeded with ``seed`` gives
    the workers' base seed; workers are seeded by :func:`seed_worker` and persist across epochs
    when ``num_workers > 0``. Set the epoch before every epoch (module docstring).
    """
    replicas = {} if distributed else {"num_replicas": 1, "rank": 0}
    sampler = DistributedSampler(
        dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, **replicas
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_detection,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=seed_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    )
