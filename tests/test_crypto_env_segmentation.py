"""Near-stationary segmentation: fixed blocks, change points and the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finrl_lab.envs.segmentation import (
    change_point_blocks,
    fixed_blocks,
    split_block,
    summarize_segments,
)
from finrl_lab.errors import ConfigError


def hourly(days: float) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=int(days * 24) + 1, freq="1h", tz="UTC")


def test_fixed_blocks_split_by_days():
    stamps = hourly(20)
    segments = fixed_blocks(stamps, block_days=5, proportions=(3, 1, 1))
    assert len(segments) == 4
    for segment in segments:
        train, valid, test = segment.train, segment.valid, segment.test
        assert train[1] == valid[0]
        assert valid[1] == test[0]
        assert train[1] - train[0] == 3 * 24
        assert valid[1] - valid[0] == 24
        assert test[1] - test[0] == 24
    for a, b in zip(segments[:-1], segments[1:], strict=True):
        assert a.test[1] == b.train[0]


def test_fixed_blocks_drop_short_tail():
    segments = fixed_blocks(hourly(12), block_days=5, proportions=(3, 1, 1))
    # 5 + 5 days, then a 2-day tail that cannot hold three parts.
    assert len(segments) == 2


def test_split_block_rejects_bad_proportions():
    with pytest.raises(ConfigError, match="proportions"):
        split_block(hourly(10), 0, 240, (1, 1))
    assert split_block(hourly(2), 0, 48, (3, 1, 1)) is None


def test_change_points_find_volatility_shift():
    rng = np.random.default_rng(0)
    stamps = hourly(120)
    returns = np.concatenate(
        [rng.normal(0, 0.002, 60 * 24), rng.normal(0, 0.02, len(stamps) - 1 - 60 * 24)]
    )
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    segments = change_point_blocks(
        stamps, close, min_days=10, proportions=(3, 1, 1), max_samples=720
    )
    starts = [segment.train[0] for segment in segments]
    assert len(segments) >= 2
    # One block starts within a day of the true shift at row 1440.
    assert min(abs(start - 60 * 24) for start in starts[1:]) <= 24


def test_summary_statistics_match_returns():
    stamps = hourly(10)
    close = 100 * np.exp(np.linspace(0, 0.24, len(stamps)))
    segments = fixed_blocks(stamps, block_days=5, proportions=(3, 1, 1))
    summary = summarize_segments(segments, stamps, close)
    assert list(summary.index) == [0, 1]
    assert summary.loc[0, "bars"] == 120
    assert summary.loc[0, "mean_return"] == pytest.approx(0.001)
    assert summary.loc[0, "drift"] == pytest.approx(0.12)
    assert summary.loc[0, "volatility"] == pytest.approx(0.0, abs=1e-12)
