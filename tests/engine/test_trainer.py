"""The trainer, its callbacks and the optimiser/schedule builders, on a tiny detector and a few
random 64x64 images (the dataset module is not used: batches are built here in its format)."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from featherface.detection.priors import num_priors
from featherface.engine.callbacks import Callback, MetricsLogger, ProgressCallback
from featherface.engine.distributed import DistributedContext
from featherface.engine.losses import DetectionLoss, MultiBoxLoss
from featherface.engine.optim import (
    OptimizerConfig,
    ScheduleConfig,
    build_optimizer,
    build_scheduler,
)
from featherface.engine.trainer import Trainer, resume_message
from featherface.errors import FeatherFaceError
from featherface.models.outputs import RawOutputs

SIZE = 64
LOSS_TERMS = ["train/loss", "train/loss_loc", "train/loss_cls", "train/loss_landm"]


class TinyDetector(nn.Module):
    """RawOutputs for the default priors of a 64x64 input: strides 8, 16, 32, 2 anchors a cell,
    one shared 1x1 head; a BatchNorm and a Dropout exercise buffers and the torch RNG."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=4, padding=1),
            nn.ReLU(),
        )
        self.down = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(2)
        )
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Conv2d(channels, 2 * 16, 1)

    def forward(self, images: Tensor) -> RawOutputs:
        features = [self.stem(images)]
        for down in self.down:
            features.append(torch.relu(down(features[-1])))
        batch = images.shape[0]
        rows = [
            self.head(self.dropout(f)).permute(0, 2, 3, 1).reshape(batch, -1, 16) for f in features
        ]
        out = torch.cat(rows, dim=1)
        return RawOutputs(out[..., :4], out[..., 4:6], out[..., 6:])


class RandomFaces(Dataset):
    """``count`` random images with 1-2 random faces each (landmarks NaN on the second face).

    Item ``i`` is fixed by ``(seed, i)``; with ``augment`` a noise level drawn from Python's and
    NumPy's global generators is added, so the data depends on the process RNG state too.
    """

    def __init__(self, count: int = 8, seed: int = 0, augment: bool = False) -> None:
        self.count = count
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 1000 + index)
        image = torch.randn(3, SIZE, SIZE, generator=generator)
        faces = 1 + index % 2
        sides = 0.25 + 0.35 * torch.rand(faces, 1, generator=generator)
        corners = (1 - sides) * torch.rand(faces, 2, generator=generator)
        boxes = torch.cat([corners, corners + sides], dim=1)
        landmarks = corners.repeat(1, 5) + sides * torch.rand(faces, 10, generator=generator)
        landmarks[1:] = float("nan")
        for box in (boxes * SIZE).round().long().tolist():
            image[:, box[1] : box[3], box[0] : box[2]] += 1.5
        if self.augment:
            level = random.random() * float(np.random.uniform(0.0, 0.1))
            image = image + level
        return image, {"boxes": boxes, "landmarks": landmarks}


def collate(batch: list[tuple[Tensor, dict[str, Tensor]]]) -> tuple[Tensor, list[dict]]:
    """The ``(images Tensor[B, 3, S, S], targets)`` format of the project's loaders."""
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


def loader(dataset: Dataset, batch_size: int = 2, shuffle: bool = True) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        generator=torch.Generator() if shuffle else None,
    )


def make_trainer(out_dir: Path, epochs: int = 3, seed: int = 0, **options: Any) -> Trainer:
    torch.manual_seed(seed)
    options.setdefault("val_loader", loader(RandomFaces(4, seed=1), shuffle=False))
    options.setdefault("optimizer", OptimizerConfig(lr=1e-2))
    return Trainer(
        model=TinyDetector(),
        loss_fn=DetectionLoss(MultiBoxLoss()),
        train_loader=loader(RandomFaces(8, augment=True)),
        out_dir=out_dir,
        epochs=epochs,
        seed=seed,
        **options,
    )


def read_history(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


class Crash(Callback):
    """Stops training by raising at the end of ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


class Recorder(Callback):
    """Remembers the hooks called, with their epoch or step."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_resume(self, message: str) -> None:
        self.calls.append(("resume", message))

    def on_fit_start(self, trainer: Trainer) -> None:
        self.calls.append(("fit_start", None))

    def on_epoch_start(self, epoch: int) -> None:
        self.calls.append(("epoch_start", epoch))

    def on_train_batch_end(self, step: int, terms: Mapping[str, Tensor], images: Tensor) -> None:
        self.calls.append(("batch", step))

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.calls.append(("epoch_end", epoch))

    def on_fit_end(self) -> None:
        self.calls.append(("fit_end", None))


def test_tiny_detector_matches_the_priors() -> None:
    outputs = TinyDetector()(torch.zeros(2, 3, SIZE, SIZE))
    assert outputs.loc.shape == (2, num_priors((SIZE, SIZE)), 4)
    assert outputs.conf.shape[-1] == 2 and outputs.landm.shape[-1] == 10


def test_fit_lowers_the_loss_and_writes_history_best_and_last(tmp_path: Path) -> None:
    recorder = Recorder()
    console = Console(file=io.StringIO(), width=120)
    trainer = make_trainer(
        tmp_path, epochs=4, callbacks=[recorder, ProgressCallback(console=console)]
    )
    history = trainer.fit()

    assert history[-1]["train/loss"] < history[0]["train/loss"]
    rows = read_history(tmp_path / "history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3]
    expected = ["epoch", *LOSS_TERMS, "val/loss", "val/loss_loc", "val/loss_cls"]
    expected += ["val/loss_landm", "lr", "images_per_s"]
    assert list(rows[0]) == expected
    assert all(math.isfinite(float(value)) for row in rows for value in row.values())
    assert float(rows[-1]["images_per_s"]) > 0

    best = torch.load(tmp_path / "best.pt", weights_only=True)
    TinyDetector().load_state_dict(best)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "history.csv", "last.pt"]
    steps = [value for hook, value in recorder.calls if hook == "batch"]
    assert steps == list(range(16))
    assert recorder.calls[0] == ("fit_start", None) and recorder.calls[-1] == ("fit_end", None)
    assert "epoch 4/4" in console.file.getvalue()


def test_last_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    make_trainer(tmp_path, epochs=1).fit()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and state["epochs"] == 1
    assert {"model", "optimizer", "scheduler", "scaler", "best_loss", "history", "rng"} <= set(
        state
    )
    rng = state["rng"][0]
    assert isinstance(rng["torch"], Tensor) and isinstance(rng["python"][1], list)
    assert math.isfinite(state["best_loss"])


@pytest.mark.parametrize(
    "options",
    [{}, {"bn_recalibration_batches": 2, "channels_last": True}],
    ids=["plain", "precise-bn-channels-last"],
)
def test_resume_after_a_crash_equals_an_uninterrupted_run(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    uninterrupted = make_trainer(tmp_path / "full", epochs=3, **options)
    uninterrupted.fit()

    with pytest.raises(RuntimeError, match="simulated crash"):
        make_trainer(tmp_path / "crashed", epochs=3, callbacks=[Crash(epoch=0)], **options).fit()
    assert len(read_history(tmp_path / "crashed" / "history.csv")) == 1
    random.seed(123)  # the resumed run must restore the RNG states, not rely on them
    np.random.seed(123)
    recorder = Recorder()
    resumed = make_trainer(tmp_path / "crashed", epochs=3, seed=0, callbacks=[recorder], **options)
    resumed.fit()

    assert [e for hook, e in recorder.calls if hook == "epoch_start"] == [1, 2]
    full_state = uninterrupted.network.state_dict()
    for name, value in resumed.network.state_dict().items():
        assert torch.equal(value, full_state[name]), name
    full_rows = read_history(tmp_path / "full" / "history.csv")
    resumed_rows = read_history(tmp_path / "crashed" / "history.csv")
    assert [r["train/loss"] for r in resumed_rows] == [r["train/loss"] for r in full_rows]


def test_a_resumed_run_says_from_which_epoch_it_continues(tmp_path: Path) -> None:
    def run(*extra: Callback) -> str:
        console = Console(file=io.StringIO(), width=100)  # narrower than the line: not wrapped
        callbacks = [ProgressCallback(console=console), *extra]
        trainer = make_trainer(tmp_path, epochs=3, val_loader=None, callbacks=callbacks)
        with contextlib.suppress(RuntimeError):
            trainer.fit()
        return console.file.getvalue()

    last = tmp_path / "last.pt"
    assert "resuming" not in run(Crash(epoch=1))  # a fresh run, stopped after epoch 2 of 3
    resumed = run().splitlines()
    assert f"resuming from {last}: epochs 1-2 done, continuing at epoch 3 of 3" in resumed
    assert "epoch 3/3" in "".join(resumed) and "epoch 2/3" not in "".join(resumed)
    finished = run().splitlines()
    assert f"resuming from {last}: all 3 epochs done; nothing to train" in finished
    assert len(read_history(tmp_path / "history.csv")) == 3


def test_only_rank_0_says_that_it_resumes(tmp_path: Path) -> None:
    first, main, other = Recorder(), Recorder(), Recorder()
    make_trainer(tmp_path, epochs=1, val_loader=None, callbacks=[first]).fit()
    assert [hook for hook, _ in first.calls if hook == "resume"] == []  # a fresh run
    make_trainer(tmp_path, epochs=1, val_loader=None, callbacks=[main]).fit()
    context = DistributedContext(rank=1)  # a second process of the group, as seen from itself
    make_trainer(tmp_path, epochs=1, val_loader=None, callbacks=[other], context=context).fit()
    line = f"resuming from {tmp_path / 'last.pt'}: epoch 1 of 1 done; nothing to train"
    assert main.calls[:2] == [("resume", line), ("fit_start", None)]
    assert [hook for hook, _ in other.calls if hook == "resume"] == []


def test_resume_messages_count_epochs_from_one() -> None:
    path = Path("out") / "last.pt"
    assert resume_message(path, 1, 4) == (
        f"resuming from {path}: epoch 1 done, continuing at epoch 2 of 4"
    )
    assert resume_message(path, 2, 4) == (
        f"resuming from {path}: epochs 1-2 done, continuing at epoch 3 of 4"
    )
    assert (
        resume_message(path, 4, 4) == f"resuming from {path}: all 4 epochs done; nothing to train"
    )


def test_precise_bn_sets_the_statistics_of_the_final_weights(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, epochs=1, bn_recalibration_batches=2, val_loader=None)
    trainer.fit()
    bn = next(m for m in trainer.network.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 2  # reset, then exactly two batches averaged
    assert bn.momentum == 0.1


def test_resume_refuses_a_different_plan(tmp_path: Path) -> None:
    make_trainer(tmp_path, epochs=1).fit()
    with pytest.raises(FeatherFaceError, match="written for 1 epochs"):
        make_trainer(tmp_path, epochs=2).fit()


def test_gradients_are_clipped(tmp_path: Path) -> None:
    class GradientNorms(Callback):
        def __init__(self, model: nn.Module) -> None:
            self.model = model
            self.norms: list[float] = []

        def on_train_batch_end(self, step: int, terms: Mapping[str, Tensor], images: Tensor):
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            self.norms.append(
                float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
            )

    trainer = make_trainer(tmp_path, epochs=1, grad_clip_norm=1e-3, val_loader=None)
    norms = GradientNorms(trainer.network)
    trainer.callbacks.append(norms)
    trainer.fit()
    assert len(norms.norms) == 4
    assert max(norms.norms) <= 1e-3 * (1 + 1e-4)
    assert trainer.last_grad_norm is not None and float(trainer.last_grad_norm) > 1e-3


def test_onecycle_lr_rises_then_falls_per_iteration() -> None:
    optimizer = build_optimizer(TinyDetector(), OptimizerConfig(lr=1e-3))
    schedule = ScheduleConfig(pct_start=0.25, div_factor=10.0)
    scheduler = build_scheduler(optimizer, schedule, steps_per_epoch=5, epochs=4)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = lrs.index(max(lrs))
    assert lrs[0] == pytest.approx(1e-4) and max(lrs) == pytest.approx(1e-3)
    assert 3 <= peak <= 6
    assert all(a < b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a > b for a, b in itertools.pairwise(lrs[peak:]))


def test_sgd_step_decay_drops_at_the_milestone(tmp_path: Path) -> None:
    trainer = make_trainer(
        tmp_path,
        epochs=3,
        val_loader=None,
        optimizer=OptimizerConfig(name="sgd", lr=1e-2, momentum=0.9),
        schedule=ScheduleConfig(name="step", milestones=(2,), gamma=0.1),
    )
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    history = trainer.fit()
    assert [row["lr"] for row in history] == pytest.approx([1e-2, 1e-2, 1e-3])
    assert read_history(tmp_path / "history.csv")[0].keys() == {"epoch", *LOSS_TERMS, "lr"} | {
        "images_per_s"
    }


def test_biases_and_norm_weights_are_not_decayed() -> None:
    model = TinyDetector()
    optimizer = build_optimizer(model, OptimizerConfig(weight_decay=0.1))
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.stem[0].weight) in decay
    assert id(model.stem[0].bias) not in decay and id(model.stem[1].weight) not in decay
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="optimizer name"):
        OptimizerConfig(name="adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="milestones"):
        ScheduleConfig(name="step", milestones=(3, 2))


def test_a_module_loss_is_trained_and_checkpointed(tmp_path: Path) -> None:
    class ScaledLoss(nn.Module):
        """A loss with its own trainable parameter and an extra named term."""

        def __init__(self) -> None:
            super().__init__()
            self.detection = DetectionLoss(MultiBoxLoss())
            self.weight = nn.Parameter(torch.zeros(()))

        def forward(self, outputs: RawOutputs, targets: list, images: Tensor) -> dict:
            terms = self.detection(outputs, targets, images)
            extra = (self.weight - 1.0) ** 2
            return {**terms, "total": terms["total"] + extra, "kd_extra": extra}

    loss = ScaledLoss()
    trainer = make_trainer(tmp_path, epochs=1, val_loader=None)
    trainer = Trainer(trainer.network, loss, trainer.train_loader, tmp_path, epochs=1, seed=0)
    history = trainer.fit()
    assert "train/kd_extra" in history[0]
    assert float(loss.weight.detach()) > 0
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert torch.equal(state["loss"]["weight"], loss.weight.detach())


def test_a_loss_without_total_is_an_error(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, epochs=1, val_loader=None)
    trainer.loss_fn = lambda outputs, targets, images: {"loc": outputs.loc.sum()}
    with pytest.raises(FeatherFaceError, match="without 'total'"):
        trainer.fit()


def test_metrics_logger_hands_epoch_metrics_over_with_the_epoch_as_step() -> None:
    logged: list[tuple[dict[str, float], int]] = []
    MetricsLogger(lambda metrics, step: logged.append((dict(metrics), step))).on_epoch_end(
        2, {"epoch": 2, "train/loss": 1.5, "lr": 0.1}
    )
    assert logged == [({"train/loss": 1.5, "lr": 0.1}, 2)]
