"""Registry of trainers: the runner looks up how to train an agent by its name.

A trainer is a function ``train(config, context) -> TrainOutcome``. The runner
(``finrl-lab train``) validates the experiment config, makes the run folder,
seeds everything, and calls the trainer registered for ``config["agent"]["name"]``
once per seed. The trainer trains on the training window, selects checkpoints on
the validation window only, and evaluates once on the test window.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finrl_lab.errors import ConfigError


@dataclass
class RunContext:
    """What the runner hands a trainer for one seed.

    :param run_dir: folder for this seed's outputs (checkpoints, logs, metrics).
    :param seed: the seed; the runner has already seeded python, numpy and torch.
    :param device: ``cpu`` or ``cuda`` (already resolved from ``auto``).
    :param resume_from: checkpoint to continue from, or None for a fresh start.
    :param logger: the run's key-value logger (TensorBoard and CSV), or None.
    """

    run_dir: Path
    seed: int
    device: str
    resume_from: Path | None = None
    logger: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainOutcome:
    """What a trainer returns for one seed.

    :param test_metrics: project metrics on the test window (see
        :func:`finrl_lab.metrics.compute_metrics`), by metric name.
    :param baseline_metrics: the same metrics of classic baselines on the same
        test window, by agent name, for the comparison table.
    :param best_checkpoint: checkpoint chosen on the validation window.
    :param validation: validation metric history, e.g. ``[(step, sharpe), ...]``.
    """

    test_metrics: dict[str, float]
    baseline_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    best_checkpoint: Path | None = None
    validation: list[tuple[int, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


Trainer = Callable[[dict[str, Any], RunContext], TrainOutcome]
_TRAINERS: dict[str, Trainer] = {}
log = logging.getLogger(__name__)


def register_trainer(*names: str) -> Callable[[Trainer], Trainer]:
    """Register a trainer function under one or more agent names."""

    def decorate(function: Trainer) -> Trainer:
        for name in names:
            _TRAINERS[name] = function
        return function

    return decorate


# Modules that register trainers when imported; a missing one is skipped so that
# the runner works while an agent family is not installed.
TRAINER_MODULES = (
    "finrl_lab.training.sb3_trainer",
    "finrl_lab.agents.trace_sac.trainer",
    "finrl_lab.agents.earnmore.trainer",
)


def _import_trainer_modules() -> None:
    for module in TRAINER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            log.debug("trainer module %s not available", module)


def get_trainer(name: str) -> Trainer:
    """Return the trainer for an agent name; raise ConfigError if none is known."""
    _import_trainer_modules()
    if name not in _TRAINERS:
        raise ConfigError(
            f"unknown agent {name!r}",
            f"use one of {', '.join(sorted(_TRAINERS)) or '(none installed)'}",
        )
    return _TRAINERS[name]


def trainer_names() -> list[str]:
    """Return every registered agent name."""
    _import_trainer_modules()
    return sorted(_TRAINERS)
