"""The experiment runner: one run folder, one training run per seed, a summary.

Run folder layout (``<output>/<agent>-<pool>-seed<seeds>-<YYYYmmdd-HHMMSS>/``)::

    config.yaml         the resolved config (every default written out)
    environment.json    python, package versions, git commit, command line
    status.json         running, complete or failed, and the seeds finished
    summary.json        per-seed test metrics, their mean and spread, baselines
    seed<k>/
        checkpoints/step-000005000.pt   full training state (resume from here)
        checkpoints/best.pt             policy chosen on the validation window
        logs/scalars.csv                step,key,value of every logged scalar
        logs/tensorboard/               the same scalars for TensorBoard
        metrics.json                    test metrics, baselines, validation history

Every file is written atomically. A killed run keeps its folder, marked
``running``; ``finrl-lab train --resume FOLDER`` skips the seeds that have a
``metrics.json`` and continues the others from their newest checkpoint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from finrl_lab.console import console
from finrl_lab.errors import ConfigError
from finrl_lab.io import write_json_atomic
from finrl_lab.metrics import METRIC_NAMES
from finrl_lab.reporting.run_folder import run_name, write_config, write_environment
from finrl_lab.training.checkpoint import latest_checkpoint
from finrl_lab.training.config import check_version, resolve_config
from finrl_lab.training.device import resolve_device
from finrl_lab.training.logger import RunLogger
from finrl_lab.training.registry import RunContext, TrainOutcome, get_trainer
from finrl_lab.training.seeding import seed_everything

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"
SUMMARY_NAME = "summary.json"
STATUS_NAME = "status.json"


@dataclass
class ExperimentResult:
    """Outcome of ``finrl-lab train``: per-seed outcomes and their summary.

    :param run_dir: the run folder.
    :param outcomes: the trainer's outcome for each seed.
    :param summary: ``mean`` and ``std`` (sample, ddof=1; 0 for one seed) of
        every test metric over seeds, the per-seed metrics and the baselines.
    """

    run_dir: Path
    outcomes: dict[int, TrainOutcome]
    summary: dict[str, Any] = field(default_factory=dict)


def prepare(raw: dict[str, Any]) -> dict[str, Any]:
    """Resolve and validate a config, including its data, before any file is made.

    :raises FinRLLabError: the config, the pool or the windows are invalid.
    """
    config = resolve_config(raw)
    resolve_device(config["device"])
    return config


def start_run(config: dict[str, Any]) -> Path:
    """Make the run folder and write the config and environment records."""
    seeds = "+".join(str(seed) for seed in config["seeds"])
    name = run_name(config["agent"]["name"], config["pool"]["name"], f"seed{seeds}")
    root = Path(config["output"])
    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / name
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{name}-{suffix}"
    run_dir.mkdir()
    write_config(run_dir, config)
    write_environment(run_dir)
    _write_status(run_dir, "running", [])
    return run_dir


def load_run_config(run_dir: Path) -> dict[str, Any]:
    """Read and re-validate the config stored in a run folder.

    :raises ConfigError: the folder has no config or it has another version.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{str(run_dir)!r} is not a run folder (no config.yaml)",
            "give the folder that finrl-lab train printed",
        )
    try:
        stored = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"{path} is not valid YAML: {first_line}",
            "restore the config.yaml that finrl-lab train wrote",
        ) from None
    if not isinstance(stored, dict):
        raise ConfigError(
            f"{path} does not hold a config mapping",
            "restore the config.yaml that finrl-lab train wrote",
        )
    check_version(stored.get("version"), f"run {str(run_dir)!r}")
    return resolve_config(stored)


def run_experiment(
    config: dict[str, Any], *, resume: Path | None = None
) -> ExperimentResult:
    """Train every seed of a prepared config; return outcomes and the summary.

    :param config: a config returned by :func:`prepare` (or
        :func:`load_run_config` when resuming).
    :param resume: a run folder to continue instead of starting a new one.
    """
    device = resolve_device(config["device"])
    trainer = get_trainer(config["agent"]["name"])
    if config["threads"] is not None:
        torch.set_num_threads(config["threads"])
    run_dir = Path(resume) if resume is not None else start_run(config)
    console.print(f"run folder: {run_dir}")
    outcomes: dict[int, TrainOutcome] = {}
    try:
        for seed in config["seeds"]:
            seed_dir = run_dir / f"seed{seed}"
            finished = seed_dir / METRICS_NAME
            if finished.is_file():
                outcomes[seed] = _read_outcome(finished)
                log.info("seed %d already finished; skipped", seed)
                continue
            resume_from = latest_checkpoint(seed_dir) if resume is not None else None
            outcomes[seed] = _train_seed(
                trainer, config, seed_dir, seed, device, resume_from
            )
            write_json_atomic(finished, _outcome_record(outcomes[seed]))
            _write_status(run_dir, "running", sorted(outcomes))
    except BaseException as exc:
        _write_status(run_dir, "failed", sorted(outcomes))
        if isinstance(exc, KeyboardInterrupt):
            console.print(f"stopped; continue with: finrl-lab train --resume {run_dir}")
        raise
    summary = summarise(outcomes)
    write_json_atomic(run_dir / SUMMARY_NAME, summary)
    _write_status(run_dir, "complete", sorted(outcomes))
    return ExperimentResult(run_dir, outcomes, summary)


def _train_seed(
    trainer: Any,
    config: dict[str, Any],
    seed_dir: Path,
    seed: int,
    device: str,
    resume_from: Path | None,
) -> TrainOutcome:
    seed_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    resume_step = None
    if resume_from is not None:
        resume_step = int(resume_from.stem.split("-")[-1])
    elif (seed_dir / "logs").exists():
        resume_step = -1  # a restart from scratch drops the killed run's rows
    logging_options = config["logging"]
    logger = RunLogger(
        seed_dir / "logs",
        tensorboard=logging_options["tensorboard"],
        csv_file=logging_options["csv"],
        resume_step=resume_step,
    )
    context = RunContext(
        run_dir=seed_dir,
        seed=seed,
        device=device,
        resume_from=resume_from,
        logger=logger,
    )
    log.info("training %s seed %d on %s", config["agent"]["name"], seed, device)
    try:
        return trainer(config, context)
    finally:
        logger.close()


def summarise(outcomes: dict[int, TrainOutcome]) -> dict[str, Any]:
    """Return mean and spread of every test metric over seeds, with the baselines."""
    seeds = sorted(outcomes)
    names = [m for m in METRIC_NAMES if m in outcomes[seeds[0]].test_metrics]
    table = np.array([[outcomes[s].test_metrics[m] for m in names] for s in seeds])
    spread = table.std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros(len(names))
    return {
        "seeds": seeds,
        "mean": dict(zip(names, table.mean(axis=0).tolist(), strict=True)),
        "std": dict(zip(names, spread.tolist(), strict=True)),
        "per_seed": {str(s): outcomes[s].test_metrics for s in seeds},
        "baselines": outcomes[seeds[0]].baseline_metrics,
        "test_window": outcomes[seeds[0]].extra.get("test_window"),
    }


def _outcome_record(outcome: TrainOutcome) -> dict[str, Any]:
    return {
        "test_metrics": outcome.test_metrics,
        "baseline_metrics": outcome.baseline_metrics,
        "best_checkpoint": None
        if outcome.best_checkpoint is None
        else str(outcome.best_checkpoint),
        "validation": [list(item) for item in outcome.validation],
        "extra": outcome.extra,
    }


def _read_outcome(path: Path) -> TrainOutcome:
    record = json.loads(path.read_text(encoding="utf-8"))
    best = record.get("best_checkpoint")
    return TrainOutcome(
        test_metrics=_as_floats(record["test_metrics"]),
        baseline_metrics={
            name: _as_floats(metrics)
            for name, metrics in record.get("baseline_metrics", {}).items()
        },
        best_checkpoint=None if best is None else Path(best),
        validation=[tuple(item) for item in record.get("validation", [])],
        extra=record.get("extra", {}),
    )


def _as_floats(metrics: dict[str, Any]) -> dict[str, float]:
    # JSON files store NaN as null (finrl_lab.io writes strict JSON).
    return {k: float("nan") if v is None else float(v) for k, v in metrics.items()}


def _write_status(run_dir: Path, state: str, finished: list[int]) -> None:
    write_json_atomic(
        run_dir / STATUS_NAME, {"state": state, "finished_seeds": finished}
    )
