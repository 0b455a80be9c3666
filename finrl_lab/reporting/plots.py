"""Plots written to run folders: equity curves and drawdowns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from finrl_lab.io import atomic_path  # noqa: E402
from finrl_lab.metrics import drawdown_path  # noqa: E402


def plot_equity_and_drawdown(results: Sequence, path: str | Path, title: str) -> Path:
    """Save a two-panel PNG: value paths on a log scale above their drawdowns."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 7), sharex=True, height_ratios=[3, 1.4]
    )
    for result in results:
        values = result.path.values
        top.plot(result.times, values / values[0], label=result.agent, linewidth=1.1)
        bottom.plot(result.times, -100.0 * drawdown_path(values), linewidth=0.9)
    top.set_yscale("log")
    top.set_ylabel("value (initial = 1, log scale)")
    top.set_title(title)
    top.grid(True, which="both", alpha=0.3)
    top.legend(loc="upper left", fontsize=8, ncol=2)
    bottom.set_ylabel("drawdown (%)")
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
