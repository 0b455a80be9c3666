"""Run folders: every output of a run, with the config and versions that made it.

A run is written into a hidden temporary folder beside its final location and
renamed when complete, so an interrupted run leaves no half-written folder under
its final name.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import yaml

from finrl_lab.io import write_json_atomic, write_text_atomic

RECORDED_PACKAGES = (
    "finrl-lab",
    "numpy",
    "pandas",
    "scipy",
    "gymnasium",
    "stable-baselines3",
    "torch",
    "yfinance",
    "ccxt",
)


def run_name(*parts: object) -> str:
    """Return ``part1-part2-...-YYYYmmdd-HHMMSS`` with unsafe characters replaced."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    cleaned = [_safe(str(p)) for p in parts if p is not None and str(p)]
    return "-".join([*cleaned, stamp])


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._+-" else "_" for c in text)[:60]


@dataclass
class StagedRun:
    """A run folder being written: files go to ``staging``; ``final`` is its name."""

    staging: Path
    final: Path


@contextmanager
def staged_run_folder(root: str | Path, name: str) -> Iterator[StagedRun]:
    """Yield a temporary folder that is renamed to ``root/name`` when the block ends.

    A name that already exists gets a numeric suffix rather than being overwritten.
    On an exception the temporary folder is removed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    suffix = 1
    while final.exists():
        suffix += 1
        final = root / f"{name}-{suffix}"
    run = StagedRun(Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root)), final)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(run.staging, 0o777 & ~mask)
    try:
        yield run
        run.staging.rename(run.final)
    except BaseException:
        shutil.rmtree(run.staging, ignore_errors=True)
        raise


def environment_record() -> dict:
    """Return Python, platform, package versions and the git commit of this checkout."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git": git_state(),
        "command": sys.argv,
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def git_state() -> dict | None:
    """Return the commit and whether the work tree has changes, or None outside git."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def write_config(folder: Path, config: dict) -> None:
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    write_text_atomic(folder / "config.yaml", text)


def write_environment(folder: Path) -> None:
    write_json_atomic(folder / "environment.json", environment_record())
