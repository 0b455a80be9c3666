"""Checkpoints: atomic ``torch.save`` files that load with ``weights_only=True``.

A checkpoint is a mapping of tensors and plain Python values (numbers, text,
lists, tuples, dicts), so :func:`torch.load` can read it with
``weights_only=True`` and never runs code from the file. Every checkpoint
stores the config version and a fingerprint of the settings that shape
training; loading it under another version or other settings raises
:class:`~finrl_lab.errors.ConfigError`.

File names: ``checkpoints/step-000005000.pt`` for periodic checkpoints (the
highest step is the one to resume from) and ``checkpoints/best.pt`` for the
checkpoint chosen on the validation window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from finrl_lab.errors import ConfigError
from finrl_lab.io import atomic_path
from finrl_lab.training.config import CONFIG_VERSION, check_version

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")

# Sections that do not change what training computes, so a run may be resumed
# with other values (more steps, another device, other logging).
_UNFINGERPRINTED = ("seeds", "device", "threads", "budget", "logging", "output")


def config_fingerprint(config: dict[str, Any]) -> str:
    """Return a short hash of the config sections that shape training."""
    shaping = {k: v for k, v in config.items() if k not in _UNFINGERPRINTED}
    text = json.dumps(shaping, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def save_checkpoint(
    path: Path, payload: dict[str, Any], config: dict[str, Any]
) -> Path:
    """Write ``payload`` with version and fingerprint to ``path`` atomically.

    :param payload: tensors and plain values only (no numpy arrays or objects).
    """
    record = {
        "config_version": CONFIG_VERSION,
        "fingerprint": config_fingerprint(config),
        "agent": config["agent"]["name"],
        **payload,
    }
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    log.info("checkpoint written: %s", path)
    return path


def load_checkpoint(
    path: Path, config: dict[str, Any] | None = None, map_location: str = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint safely and check that it belongs to ``config``.

    :raises ConfigError: the file is missing or not a finrl-lab checkpoint, was
        written by another config version, or by a run with other settings.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} not found", "check the path")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        # torch's own message suggests weights_only=False, an unsafe load, so the
        # error names only the exception type.
        raise ConfigError(
            f"checkpoint {str(path)!r} cannot be loaded safely "
            f"({type(exc).__name__}): it is corrupt, truncated or contains objects "
            "other than tensors",
            "use a checkpoint written by finrl-lab train, or resume from an "
            "earlier one",
        ) from None
    if not isinstance(record, dict) or "config_version" not in record:
        raise ConfigError(
            f"{str(path)!r} is not a finrl-lab checkpoint",
            "use a checkpoint written by finrl-lab train",
        )
    check_version(record["config_version"], f"checkpoint {str(path)!r}")
    if config is not None:
        if record.get("agent") != config["agent"]["name"]:
            raise ConfigError(
                f"checkpoint {str(path)!r} contains agent {record.get('agent')!r}, "
                f"not {config['agent']['name']!r}",
                "use the run's own config",
            )
        if record.get("fingerprint") != config_fingerprint(config):
            raise ConfigError(
                f"checkpoint {str(path)!r} was written with other settings than "
                "the run's config",
                "resume with the run folder's unchanged config.yaml",
            )
    return record


def step_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Return ``(step, path)`` of the periodic checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _STEP_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Return the periodic checkpoint with the highest step, or None."""
    found = step_checkpoints(run_dir)
    return found[-1][1] if found else None


def step_checkpoint_path(run_dir: Path, step: int) -> Path:
    """Return the path of the periodic checkpoint at ``step``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:09d}.pt"


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest periodic checkpoints."""
    found = step_checkpoints(run_dir)
    for _, path in found[: max(len(found) - keep, 0)]:
        path.unlink(missing_ok=True)
