"""Named trainer callbacks: a no-op base class, a rich progress bar and metric logging.

The trainer calls every hook on every process; callbacks that log or write check
:func:`~featherface.engine.distributed.is_main_process` so that only rank 0 does.
Epoch indices are 0-based; ``step`` is the 0-based global iteration index.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor

from featherface.engine.distributed import is_main_process

if TYPE_CHECKING:
    from featherface.engine.trainer import Trainer


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    def on_resume(self, message: str) -> None:
        """On rank 0 only, when a run resumes from ``last.pt``, before :meth:`on_fit_start`:
        ``message`` is one line saying from which file and epoch (1-based) it continues, e.g.
        ``resuming from out/last.pt: epochs 1-2 done, continuing at epoch 3 of 4``."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume has restored the trainer's state)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before the first iteration of ``epoch``."""

    def on_train_batch_end(self, step: int, terms: Mapping[str, Tensor], images: Tensor) -> None:
        """After the optimiser step of iteration ``step``; ``terms`` are the detached loss terms
        (``"total"`` and the named terms), ``images`` the batch ``Tensor[B, 3, H, W]``."""

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """After ``epoch`` is validated and checkpointed; ``metrics`` as in the history file."""

    def on_fit_end(self) -> None:
        """After the last epoch, and also when training stops on an error."""


LOG_WIDTH = 240  # columns of the progress line when the output is not a terminal


class ProgressCallback(Callback):
    """A rich progress bar per epoch: iterations, running mean losses, images/s and ETA; also
    prints the trainer's resume line.

    Disabled on non-zero ranks and when ``enabled`` is False.
    """

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        # Off a terminal (a DVC log, CI), rich would cut lines at 80 columns and drop the losses.
        self.console = console or Console(width=None if sys.stdout.isatty() else LOG_WIDTH)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._epochs = 0
        self._steps = 0
        self._sums: dict[str, float] = {}
        self._batches = 0
        self._images = 0
        self._start = 0.0

    def on_resume(self, message: str) -> None:
        if self.enabled and is_main_process():
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def on_fit_start(self, trainer: Trainer) -> None:
        if not (self.enabled and is_main_process()):
            return
        self._epochs = trainer.epochs
        self._steps = trainer.steps_per_epoch
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._progress.start()

    def on_epoch_start(self, epoch: int) -> None:
        if self._progress is None:
            return
        self._sums, self._batches, self._images = {}, 0, 0
        self._start = time.perf_counter()
        self._task = self._progress.add_task(
            f"epoch {epoch + 1}/{self._epochs}", total=self._steps, info=""
        )

    def on_train_batch_end(self, step: int, terms: Mapping[str, Tensor], images: Tensor) -> None:
        if self._progress is None or self._task is None:
            return
        for name, value in terms.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value)
        self._batches += 1
        self._images += int(images.shape[0])
        rate = self._images / max(time.perf_counter() - self._start, 1e-9)
        losses = " ".join(
            f"{'loss' if name == 'total' else name} {total / self._batches:.4f}"
            for name, total in self._sums.items()
        )
        self._progress.update(self._task, advance=1, info=f"{losses} {rate:.1f} img/s")

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self._progress is None or "val/loss" not in metrics:
            return
        self._progress.console.print(f"epoch {epoch + 1}: val/loss {metrics['val/loss']:.4f}")

    def on_fit_end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None


MetricsSink = Callable[[Mapping[str, float], int], None]


class MetricsLogger(Callback):
    """Hand every epoch's metrics (``epoch`` left out) to ``log(metrics, step=epoch)``, for
    example :meth:`featherface.tracking.Tracker.log_metrics`. Only rank 0 logs."""

    def __init__(self, log: MetricsSink) -> None:
        self.log = log

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if not is_main_process():
            return
        self.log({name: float(value) for name, value in metrics.items() if name != "epoch"}, epoch)
