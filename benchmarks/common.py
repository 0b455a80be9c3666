"""Helpers shared by the benchmark scripts: machine facts, tables, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from finrl_lab.console import print_table

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def machine() -> dict:
    """Return CPU model, core count, load average and Python version."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Return the median wall time of ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def reference_json(args: Sequence[str], timeout: float = 900) -> dict | None:
    """Run benchmarks/reference_runner.py in the reference interpreter, if set."""
    python = os.environ.get("FINRL_LAB_REFERENCE_PYTHON")
    if not python:
        return None
    runner = Path(__file__).resolve().parent / "reference_runner.py"
    done = subprocess.run(
        [python, str(runner), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(done.stdout)


def save(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine facts added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def show(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print_table(title, columns, rows)
