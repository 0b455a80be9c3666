"""Features: EarnMore's list, values against direct formulas, and no look-ahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finrl_lab.data.features import (
    FEATURE_SETS,
    Normalizer,
    compute_features,
    feature_names,
)
from finrl_lab.data.panel import Panel
from finrl_lab.errors import ConfigError, DataError

DJ30 = Path(__file__).resolve().parents[2] / "shared/data/us_stocks/earnmore_dj30"


def random_panel(rows: int = 240, seed: int = 0) -> Panel:
    """Three assets of random OHLC bars: one complete, one listed late, one with
    gaps."""
    rng = np.random.default_rng(seed)
    n = 3
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (rows, n)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, (rows, n)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, (rows, n)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, (rows, n)))
    volume = rng.uniform(1e3, 1e4, (rows, n))
    values = np.stack([open_, high, low, close, volume], axis=-1)
    available = np.ones((rows, n), dtype=bool)
    available[: rows // 3, 1] = False
    available[rng.choice(rows, size=rows // 10, replace=False), 2] = False
    values[~available] = np.nan
    timestamps = pd.date_range("2015-01-01", periods=rows, freq="B", tz="UTC")
    return Panel(
        timestamps,
        ("A", "LATE", "GAPPY"),
        ("open", "high", "low", "close", "volume"),
        values,
        available,
    )


def truncate(panel: Panel, rows: int) -> Panel:
    return Panel(
        panel.timestamps[:rows],
        panel.tickers,
        panel.fields,
        panel.values[:rows],
        panel.available[:rows],
    )


def test_alpha158_matches_earnmore_list():
    names = feature_names("alpha158")
    assert len(names) == 102
    assert names[:9] == [
        "open",
        "high",
        "low",
        "close",
        "kmid2",
        "kup2",
        "klow",
        "klow2",
        "ksft2",
    ]
    assert names[9:14] == ["roc_5", "roc_10", "roc_20", "roc_30", "roc_60"]
    assert names[-8:] == [
        "sumd_5",
        "sumd_10",
        "sumd_20",
        "sumd_30",
        "sumd_60",
        "weekday",
        "day",
        "month",
    ]
    assert len(feature_names("close")) == 79
    assert set(FEATURE_SETS["close"]) <= set(names)


def test_values_match_direct_formulas():
    panel = random_panel()
    features, names = compute_features(panel, "alpha158")
    assert features.shape == (len(panel), 3, 102)
    col = {name: i for i, name in enumerate(names)}
    for asset in range(3):
        rows = np.flatnonzero(panel.available[:, asset])
        o, h, low, c = (
            panel.field(f)[rows, asset] for f in ("open", "high", "low", "close")
        )
        got = features[rows, asset]
        for k in range(60, len(rows)):
            w = 20
            window = c[k - w + 1 : k + 1]
            assert got[k, col["roc_20"]] == pytest.approx(c[k - w] / c[k])
            assert got[k, col["ma_20"]] == pytest.approx(window.mean() / c[k])
            assert got[k, col["std_20"]] == pytest.approx(window.std(ddof=1) / c[k])
            assert got[k, col["qtlu_20"]] == pytest.approx(
                np.quantile(window, 0.8) / c[k]
            )
            below = (window < c[k]).sum() + 0.5 * ((window == c[k]).sum() - 1) + 1
            assert got[k, col["rank_20"]] == pytest.approx(below / w / w)
            assert got[k, col["imax_20"]] == np.argmax(h[k - w + 1 : k + 1]) / w
            assert got[k, col["imin_20"]] == np.argmin(low[k - w + 1 : k + 1]) / w
            returns = c[k - w + 1 : k + 1] / c[k - w : k] - 1
            assert got[k, col["cntp_20"]] == pytest.approx((returns > 0).mean())
            assert got[k, col["sump_20"]] == pytest.approx(
                returns[returns > 0].sum() / (np.abs(returns).sum() + 1e-12)
            )
            span = h[k] - low[k] + 1e-12
            assert got[k, col["kmid2"]] == pytest.approx((c[k] - o[k]) / span)
        # A w-bar window needs w bars of this asset.
        assert np.isnan(got[:19, col["ma_20"]]).all()
        assert np.isfinite(got[19:, col["ma_20"]]).all()
    assert np.isnan(features[~panel.available]).all()
    weekday = features[:, 0, col["weekday"]]
    np.testing.assert_array_equal(weekday, panel.timestamps.weekday)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=1, max_value=239), seed=st.integers(0, 3))
def test_later_rows_never_change_earlier_features(cut, seed):
    panel = random_panel(seed=seed)
    full, _ = compute_features(panel, "alpha158")
    head, _ = compute_features(truncate(panel, cut), "alpha158")
    np.testing.assert_array_equal(head, full[:cut])


@settings(max_examples=25, deadline=None)
@given(
    train_end=st.integers(min_value=30, max_value=200),
    scale=st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
)
def test_normaliser_uses_training_rows_only(train_end, scale):
    features, names = compute_features(random_panel(), "close")
    changed = features.copy()
    changed[train_end:] = changed[train_end:] * scale + 7.0
    rows = slice(0, train_end)
    first = Normalizer.for_features(names).fit(features, rows)
    second = Normalizer.for_features(names).fit(changed, rows)
    np.testing.assert_array_equal(first.mean, second.mean)
    np.testing.assert_array_equal(first.std, second.std)
    window = features[:train_end, 0, :]
    for j, name in enumerate(names):
        column = window[:, j]
        column = column[np.isfinite(column)]
        if name in ("weekday", "day", "month"):
            assert first.mean[0, j] == 0.0
            assert first.std[0, j] == 1.0
        elif len(column):
            assert first.mean[0, j] == pytest.approx(column.mean(), rel=1e-9, abs=1e-12)
            if column.std() > 0:
                assert first.std[0, j] == pytest.approx(column.std(), rel=1e-9)


def test_normaliser_late_listing_uses_pooled_statistics():
    features, names = compute_features(random_panel(), "close")
    rows = slice(0, 50)  # the late asset is not listed yet
    normaliser = Normalizer.for_features(names).fit(features, rows)
    with np.errstate(all="ignore"):
        pooled = np.nanmean(features[:50], axis=(0, 1))
    j = names.index("ma_5")
    assert normaliser.mean[1, j] == pytest.approx(pooled[j])
    scaled = normaliser.transform(features)
    assert np.isfinite(scaled[100:, 1, j]).all()
    restored = Normalizer.from_state_dict(normaliser.state_dict())
    np.testing.assert_array_equal(restored.transform(features), scaled)
    assert restored.fitted_rows == (0, 50)


def test_normaliser_rejects_bad_use():
    features, names = compute_features(random_panel(), "close")
    with pytest.raises(ConfigError, match="not fitted"):
        Normalizer().transform(features)
    with pytest.raises(ConfigError, match="invalid fit rows"):
        Normalizer().fit(features, slice(10, 10))
    fitted = Normalizer().fit(features, slice(0, 100))
    with pytest.raises(ConfigError, match="do not match"):
        fitted.transform(features[:, :2])


def test_close_only_panel_rejects_alpha158():
    panel = random_panel()
    close_only = Panel(
        panel.timestamps,
        panel.tickers,
        ("close",),
        panel.values[:, :, 3:4],
        panel.available,
    )
    with pytest.raises(DataError, match="needs the 'open' field"):
        compute_features(close_only, "alpha158")
    features, names = compute_features(close_only, "close")
    assert features.shape[2] == len(names) == 79
    with pytest.raises(ConfigError, match="unknown feature set"):
        compute_features(panel, "alpha360")


@pytest.mark.skipif(not DJ30.is_dir(), reason="shared DJ30 data absent")
def test_late_listing_kept_and_masked(tmp_path):
    from finrl_lab.data.local import load_panel

    # Three of the Dow Jones files, linked into one folder to keep the test fast.
    for ticker in ("AAPL", "KO", "V"):
        (tmp_path / f"{ticker}.csv.gz").symlink_to(DJ30 / f"{ticker}.csv.gz")
    panel = load_panel(tmp_path).between("2007-01-01", "2009-12-31")
    assert "V" in panel.tickers
    v = panel.tickers.index("V")
    listing = panel.timestamps.get_loc(pd.Timestamp("2008-03-19", tz="UTC"))
    assert not panel.available[:listing, v].any()
    assert panel.available[listing:, v].all()
    features, names = compute_features(panel, "alpha158")
    assert np.isnan(features[:listing, v]).all()
    ma5 = names.index("ma_5")
    assert np.isnan(features[listing : listing + 4, v, ma5]).all()
    assert np.isfinite(features[listing + 4 :, v, ma5]).all()
    aapl = panel.tickers.index("AAPL")
    assert np.isfinite(features[listing:, aapl, ma5]).all()


def test_window_position_takes_first_of_ties():
    panel = random_panel(seed=5)
    rounded = panel.values.copy()
    rounded[:, :, :4] = np.round(rounded[:, :, :4])  # many equal highs and lows
    rounded[:, :, 1] = np.nanmax(rounded[:, :, :4], axis=2)
    rounded[:, :, 2] = np.nanmin(rounded[:, :, :4], axis=2)
    tied = Panel(
        panel.timestamps, panel.tickers, panel.fields, rounded, panel.available
    )
    features, names = compute_features(tied, "alpha158")
    for asset in range(3):
        rows = np.flatnonzero(tied.available[:, asset])
        high = tied.field("high")[rows, asset]
        low = tied.field("low")[rows, asset]
        for w in (5, 60):
            imax = features[rows, asset, names.index(f"imax_{w}")]
            imin = features[rows, asset, names.index(f"imin_{w}")]
            for k in range(w - 1, len(rows)):
                assert imax[k] == np.argmax(high[k - w + 1 : k + 1]) / w
                assert imin[k] == np.argmin(low[k - w + 1 : k + 1]) / w
