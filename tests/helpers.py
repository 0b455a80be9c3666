"""Shared test helpers: paths of the real data beside the project, small panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finrl_lab.data.panel import Panel

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DJ30_DIR = SHARED_DATA / "us_stocks" / "earnmore_dj30"

needs_dj30 = pytest.mark.skipif(
    not DJ30_DIR.exists(), reason="real Dow Jones files not present beside the repo"
)


def random_walk_panel(
    n_bars: int = 300, n_assets: int = 5, seed: int = 0, start: str = "2020-01-01"
) -> Panel:
    """Return a close-only panel of geometric random walks on business days."""
    rng = np.random.default_rng(seed)
    log_returns = rng.normal(0.0003, 0.02, size=(n_bars, n_assets))
    close = 50.0 * np.exp(np.cumsum(log_returns, axis=0))
    dates = pd.bdate_range(start, periods=n_bars)
    frame = pd.DataFrame(close, index=dates, columns=[f"S{i}" for i in range(n_assets)])
    return Panel.from_wide(frame, source="random walk")
