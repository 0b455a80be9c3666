"""One run logger for scalars (TensorBoard and CSV) and the console progress bar.

:class:`RunLogger` writes every scalar to ``logs/scalars.csv`` (long format:
``step,key,value``) and to TensorBoard under ``logs/tensorboard``; its
:meth:`~RunLogger.sb3_logger` feeds stable-baselines3's own training metrics
into the same files. :class:`TrainingProgress` shows steps, steps per second
and the latest validation metric.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from stable_baselines3.common.logger import KVWriter, Logger

from finrl_lab.console import console

log = logging.getLogger(__name__)

CSV_NAME = "scalars.csv"


class RunLogger:
    """Scalar logger with a CSV writer and an optional TensorBoard writer.

    :param folder: the ``logs`` folder of one seed.
    :param tensorboard: write TensorBoard event files.
    :param csv_file: write ``scalars.csv``.
    :param resume_step: when resuming, rows logged after this step (by the
        killed run, after its last checkpoint) are dropped so the files hold
        each step once.
    """

    def __init__(
        self,
        folder: Path,
        *,
        tensorboard: bool = True,
        csv_file: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._csv_path = self.folder / CSV_NAME if csv_file else None
        self._csv_handle = None
        self._csv_writer = None
        if self._csv_path is not None:
            if resume_step is not None:
                _drop_rows_after(self._csv_path, resume_step)
            new_file = not self._csv_path.exists()
            self._csv_handle = self._csv_path.open("a", newline="", encoding="utf-8")
            self._csv_writer = csv.writer(self._csv_handle)
            if new_file:
                self._csv_writer.writerow(["step", "key", "value"])
        self._tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning("tensorboard is not installed; logging to CSV only")
            else:
                self._tensorboard = SummaryWriter(
                    log_dir=str(self.folder / "tensorboard"), purge_step=resume_step
                )
        self.latest: dict[str, float] = {}

    def log(self, key: str, value: float, step: int) -> None:
        """Record one scalar at an environment step."""
        value = float(value)
        self.latest[key] = value
        if self._csv_writer is not None:
            self._csv_writer.writerow([int(step), key, repr(value)])
        if self._tensorboard is not None and math.isfinite(value):
            self._tensorboard.add_scalar(key, value, int(step))

    def log_many(self, values: dict[str, float], step: int) -> None:
        """Record several scalars at one step."""
        for key, value in values.items():
            self.log(key, value, step)
        self.flush()

    def flush(self) -> None:
        """Push buffered rows to disk."""
        if self._csv_handle is not None:
            self._csv_handle.flush()
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def close(self) -> None:
        """Flush and close both writers."""
        self.flush()
        if self._csv_handle is not None:
            self._csv_handle.close()
            self._csv_handle = None
            self._csv_writer = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def sb3_logger(self) -> Logger:
        """Return a stable-baselines3 logger whose output goes to this logger."""
        return Logger(folder=None, output_formats=[_SB3Writer(self)])


class _SB3Writer(KVWriter):
    def __init__(self, target: RunLogger) -> None:
        self.target = target

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...]],
        step: int = 0,
    ) -> None:
        numbers = {
            key: value
            for key, value in key_values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        self.target.log_many(numbers, step)

    def close(self) -> None:
        self.target.flush()


def _drop_rows_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0], *(row for row in rows[1:] if row and int(row[0]) <= step)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(kept)


class TrainingProgress:
    """Console progress bar: steps done, steps per second, latest validation metric.

    :param total: environment steps of the whole run.
    :param label: text before the bar, e.g. ``ppo seed 0``.
    :param enabled: False hides the bar (it is also hidden when the console is
        not a terminal).
    :param start: steps already done, when resuming.
    """

    def __init__(self, total: int, label: str, enabled: bool = True, start: int = 0):
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} steps/s"),
            TextColumn("{task.fields[validation]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not (enabled and console.is_terminal),
            transient=False,
        )
        self._task = self._progress.add_task(
            label, total=total, completed=start, speed="-", validation=""
        )
        self._start_steps = start
        self._start_time = time.perf_counter()
        self.steps_per_second = 0.0

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, steps: int) -> None:
        """Set the number of environment steps done."""
        elapsed = time.perf_counter() - self._start_time
        if elapsed > 0:
            self.steps_per_second = (steps - self._start_steps) / elapsed
        self._progress.update(
            self._task, completed=steps, speed=f"{self.steps_per_second:,.0f}"
        )

    def set_validation(self, metric: str, value: float, step: int) -> None:
        """Show the latest validation metric beside the bar."""
        self._progress.update(
            self._task, validation=f"valid {metric} {value:.3f} @ {step:,}"
        )
