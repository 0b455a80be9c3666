"""Feature build time, in asset-bars per second.

- the 29 Dow Jones stocks of the shared EarnMore files, 2008-01-02 .. 2022-12-23
  (daily), both feature sets;
- one crypto symbol, one year of 1-minute bars (525,600), both feature sets. The
  bars are a seeded synthetic random walk with OHLC candles, because the shared
  data contains only ten days of real minute candles. The computation does not
  depend on the values.

An asset-bar is one (time, asset) cell of the panel. Each figure is the median
of ``--repeats`` calls after one warm-up call, both in wall time and in CPU time
of this process; on a shared, loaded machine the CPU time is the steadier one.

Usage: ``python -m benchmarks.features [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from benchmarks.common import SHARED_DATA, median_seconds, save, show
from finrl_lab.data.features import compute_features
from finrl_lab.data.local import load_panel
from finrl_lab.data.panel import Panel

DJ30_START, DJ30_END = "2008-01-01", "2022-12-31"
MINUTES_PER_YEAR = 365 * 24 * 60


def minute_year(seed: int = 0) -> Panel:
    """Return one symbol's year of synthetic 1-minute OHLCV bars."""
    rng = np.random.default_rng(seed)
    close = 20_000 * np.exp(np.cumsum(rng.normal(0, 5e-4, MINUTES_PER_YEAR)))
    open_ = np.empty_like(close)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    spread = np.abs(rng.normal(0, 3e-4, (2, MINUTES_PER_YEAR)))
    high = np.maximum(open_, close) * (1 + spread[0])
    low = np.minimum(open_, close) * (1 - spread[1])
    volume = rng.uniform(0.1, 10.0, MINUTES_PER_YEAR)
    values = np.stack([open_, high, low, close, volume], axis=-1)[:, None, :]
    timestamps = pd.date_range(
        "2023-01-01", periods=MINUTES_PER_YEAR, freq="min", tz="UTC"
    )
    return Panel(
        timestamps,
        ("BTC/USDT",),
        ("open", "high", "low", "close", "volume"),
        values,
        np.ones((MINUTES_PER_YEAR, 1), dtype=bool),
        interval="1m",
        market="crypto",
        source="synthetic minute year",
    )


def median_cpu_seconds(function, repeats: int) -> float:  # noqa: ANN001
    """Return the median CPU time of this process over ``repeats`` calls."""
    function()
    times = []
    for _ in range(repeats):
        began = time.process_time()
        function()
        times.append(time.process_time() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dj30 = load_panel(SHARED_DATA / "us_stocks" / "earnmore_dj30")
    dj30 = dj30.between(DJ30_START, DJ30_END)
    cases = {
        f"DJ30 daily, {dj30.n_assets} stocks x {len(dj30)} bars": dj30,
        "crypto 1m, 1 symbol x 525,600 bars (synthetic)": minute_year(),
    }
    rows, results = [], []
    for label, panel in cases.items():
        asset_bars = len(panel) * panel.n_assets
        for feature_set in ("alpha158", "close"):

            def build(panel=panel, feature_set=feature_set):  # noqa: ANN001, ANN202
                return compute_features(panel, feature_set)

            seconds = median_seconds(build, args.repeats)
            cpu_seconds = median_cpu_seconds(build, args.repeats)
            rows.append(
                [
                    label,
                    feature_set,
                    f"{seconds:.3f}",
                    f"{asset_bars / seconds:,.0f}",
                    f"{cpu_seconds:.3f}",
                    f"{asset_bars / cpu_seconds:,.0f}",
                ]
            )
            results.append(
                {
                    "case": label,
                    "feature_set": feature_set,
                    "asset_bars": asset_bars,
                    "wall_seconds_median": seconds,
                    "cpu_seconds_median": cpu_seconds,
                    "asset_bars_per_wall_second": asset_bars / seconds,
                    "asset_bars_per_cpu_second": asset_bars / cpu_seconds,
                    "repeats": args.repeats,
                }
            )
    show(
        "feature build time (median)",
        ["panel", "feature set", "wall s", "asset-bars/s", "CPU s", "per CPU s"],
        rows,
    )
    path = save(
        "features",
        {
            "versions": {"numpy": np.__version__, "pandas": pd.__version__},
            "results": results,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
