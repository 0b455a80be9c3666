"""Registry of trainers: the runner looks up how to train an agent by its name.

How to plug in an agent family (EarnMore, Trace-SAC, ...):

1. In your module (listed in :data:`TRAINER_MODULES`), register a trainer::

       @register_trainer(
           "trace_sac",
           defaults={"agent": {"tau": 0.005}, "env": {"fee_bps": 4.0}},
           validate=validate_trace_sac,
           evaluate=evaluate_trace_sac,
       )
       def train_trace_sac(config: dict, context: RunContext) -> TrainOutcome: ...

   ``defaults`` fills the ``agent`` and ``env`` sections (any section may be
   given) before the user's YAML is merged over them; ``finrl-lab config show
   --agent trace_sac`` prints the result. ``validate`` and ``evaluate`` may also
   be added later with :func:`register_validator` and :func:`register_evaluator`.
2. ``validate(config) -> None`` receives the full config after the common
   sections (data, pool, splits, optimizer, seeds, device, budget, evaluation)
   have been checked. It must check your ``agent`` and ``env`` keys and raise
   :class:`~finrl_lab.errors.ConfigError` with the key and the fix; the CLI
   prints that as one line and exits 2 before any run folder exists. Use
   :func:`finrl_lab.training.config.check_keys` to reject unknown keys.
3. ``train(config, context)`` runs once per seed. The runner has already
   seeded python, numpy and torch, resolved ``context.device`` and made
   ``context.run_dir``. Write checkpoints with
   :func:`~finrl_lab.training.checkpoint.save_checkpoint` as
   ``run_dir/checkpoints/step-<step:09d>.pt`` (``step_checkpoint_path``; the
   newest one is what ``--resume`` hands back as ``context.resume_from``) and
   the validation choice as ``run_dir/checkpoints/best.pt`` (what ``finrl-lab
   evaluate`` loads). ``context.logger`` is a
   :class:`~finrl_lab.training.logger.RunLogger` (TensorBoard and CSV):
   ``logger.log_many({"valid/sharpe": x}, step)``. Train
   on the training window, pick checkpoints on the validation window only, and
   evaluate the chosen one once on the test window. Return a
   :class:`TrainOutcome` with the test metrics, the baselines' metrics on the
   same window and the best checkpoint; the runner writes ``metrics.json`` and
   prints mean and spread over seeds.
4. ``evaluate(request) -> EvaluationOutcome`` serves ``finrl-lab evaluate
   --checkpoint RUN [--pool POOL] [--start DATE] [--end DATE]``. The request
   carries the run's stored config, the checkpoint to load (``best.pt`` of
   each seed unless a file is given), the device, and the pool and window to
   evaluate (``None`` means the config's pool and test window). Return the
   metrics of the agent and of ``config["evaluation"]["baselines"]`` on the
   same window. Without an
   evaluator, ``finrl-lab evaluate`` reports that the agent has none.
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
    """Inputs the runner hands a trainer for one seed.

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
    """Results a trainer returns for one seed.

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


@dataclass
class EvaluationRequest:
    """Request from ``finrl-lab evaluate`` to an evaluator, for one seed.

    :param config: the resolved config stored in the run folder.
    :param checkpoint: the checkpoint to evaluate (the run's best by default).
    :param run_dir: the seed's folder in the run.
    :param seed: the seed that trained the checkpoint.
    :param device: ``cpu`` or ``cuda``, already resolved.
    :param pool: pool to trade instead of the config's, or None.
    :param start: first decision date, or None for the config's test start.
    :param end: last valuation date, or None for the config's test end.
    """

    config: dict[str, Any]
    checkpoint: Path
    run_dir: Path
    seed: int
    device: str
    pool: str | None = None
    start: str | None = None
    end: str | None = None


@dataclass
class EvaluationOutcome:
    """Result of an evaluation: metrics of the agent and of the baselines.

    :param metrics: project metrics of the agent on the requested window.
    :param baseline_metrics: the same metrics of classic baselines on the same
        window, by agent name.
    :param window: first decision and last valuation date, as text.
    """

    metrics: dict[str, float]
    baseline_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    window: tuple[str, str] = ("", "")
    extra: dict[str, Any] = field(default_factory=dict)


Trainer = Callable[[dict[str, Any], RunContext], TrainOutcome]
Validator = Callable[[dict[str, Any]], None]
Evaluator = Callable[[EvaluationRequest], EvaluationOutcome]


@dataclass
class TrainerSpec:
    """Everything registered for one agent name."""

    train: Trainer
    validate: Validator | None = None
    evaluate: Evaluator | None = None
    defaults: dict[str, Any] | Callable[[str], dict[str, Any]] = field(
        default_factory=dict
    )

    def defaults_for(self, name: str) -> dict[str, Any]:
        """Return the default sections for ``name`` (defaults may be per name)."""
        if callable(self.defaults):
            return self.defaults(name)
        return self.defaults


_TRAINERS: dict[str, Trainer] = {}
_SPECS: dict[str, TrainerSpec] = {}
log = logging.getLogger(__name__)


def register_trainer(
    *names: str,
    validate: Validator | None = None,
    evaluate: Evaluator | None = None,
    defaults: dict[str, Any] | Callable[[str], dict[str, Any]] | None = None,
) -> Callable[[Trainer], Trainer]:
    """Register a trainer function under one or more agent names.

    :param validate: checks the ``agent`` and ``env`` sections; raises ConfigError.
    :param evaluate: evaluates a trained checkpoint for ``finrl-lab evaluate``.
    :param defaults: default config sections, or a function of the agent name
        that returns them.
    """

    def decorate(function: Trainer) -> Trainer:
        for name in names:
            _TRAINERS[name] = function
            _SPECS[name] = TrainerSpec(function, validate, evaluate, defaults or {})
        return function

    return decorate


def register_validator(*names: str) -> Callable[[Validator], Validator]:
    """Register ``validate(config) -> None`` for agents already registered."""

    def decorate(function: Validator) -> Validator:
        for name in names:
            _spec(name).validate = function
        return function

    return decorate


def register_evaluator(*names: str) -> Callable[[Evaluator], Evaluator]:
    """Register ``evaluate(request) -> EvaluationOutcome`` for registered agents."""

    def decorate(function: Evaluator) -> Evaluator:
        for name in names:
            _spec(name).evaluate = function
        return function

    return decorate


def _spec(name: str) -> TrainerSpec:
    if name not in _SPECS:
        raise KeyError(f"register the trainer for {name!r} before its extras")
    return _SPECS[name]


# Modules that register trainers when imported; a missing one is skipped so that
# the runner works while an agent family is not installed.
TRAINER_MODULES = (
    "finrl_lab.training.sb3_trainer",
    "finrl_lab.agents.trace_sac.trainer",
    "finrl_lab.agents.earnmore.trainer",
)


# Trainer modules that failed to import, with the error, so that one broken
# agent family does not stop the others from training.
_IMPORT_ERRORS: dict[str, str] = {}


def _import_trainer_modules() -> None:
    for module in TRAINER_MODULES:
        if module in _IMPORT_ERRORS:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                _record_import_error(module, exc)
                continue
            log.debug("trainer module %s not available", module)
        except ImportError as exc:
            _record_import_error(module, exc)


def _record_import_error(module: str, exc: ImportError) -> None:
    _IMPORT_ERRORS[module] = f"{type(exc).__name__}: {exc}"
    log.warning(
        "trainer module %s failed to import (%s); its agents are unavailable",
        module,
        exc,
    )


def get_trainer(name: str) -> Trainer:
    """Return the trainer for an agent name; raise ConfigError if none is known."""
    _import_trainer_modules()
    if name not in _TRAINERS:
        hint = f"use one of {', '.join(sorted(_TRAINERS)) or '(none installed)'}"
        if _IMPORT_ERRORS:
            failed = ", ".join(f"{m} ({e})" for m, e in _IMPORT_ERRORS.items())
            hint += f"; these trainer modules failed to import: {failed}"
        raise ConfigError(f"unknown agent {name!r}", hint)
    return _TRAINERS[name]


def get_trainer_spec(name: str) -> TrainerSpec:
    """Return the trainer, validator, evaluator and defaults of an agent name."""
    get_trainer(name)
    if name not in _SPECS:
        # A trainer put straight into the table still gets a spec.
        _SPECS[name] = TrainerSpec(_TRAINERS[name])
    return _SPECS[name]


def trainer_names() -> list[str]:
    """Return every registered agent name."""
    _import_trainer_modules()
    return sorted(_TRAINERS)
