"""Backtest throughput of the six classic baselines, and metric computation speed.

Over the 28-stock Dow Jones pool, 2008-03-19 .. 2022-12-23 (3,720 daily bars):

- all six baselines' target weights plus the ledger, total seconds and
  asset-bars per second (median of repeats);
- OLMAR and PAMR from universal-portfolios 0.4.17 on the same closes, fee free,
  seconds and final wealth, when ``FINRL_LAB_REFERENCE_PYTHON`` is set (see
  benchmarks/reference_runner.py);
- the metrics of 29 daily return series of 3,720 days against
  empyrical-reloaded's vectorised calls on the same array.

Usage: ``python -m benchmarks.baselines [--repeats 5]``
"""

from __future__ import annotations

import argparse

from benchmarks.common import SHARED_DATA, median_seconds, reference_json, save, show
from finrl_lab.agents.classic import CLASSIC_AGENTS
from finrl_lab.backtest import backtest_agents
from finrl_lab.data.local import load_panel
from finrl_lab.data.pools import resolve_pool
from finrl_lab.market import build_market
from finrl_lab.metrics import compute_metrics

START, END = "2008-03-19", "2022-12-23"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = SHARED_DATA / "us_stocks" / "earnmore_dj30"
    panel = load_panel(folder)
    market = build_market(panel, "dj30", start=START, end=END)
    names = list(CLASSIC_AGENTS)
    asset_bars = market.steps * int(market.pool_mask.sum())

    rows, payload = [], {"steps": market.steps, "assets": int(market.pool_mask.sum())}
    per_agent = {}
    for name in names:
        seconds = median_seconds(
            lambda n=name: backtest_agents(market, [n]), args.repeats
        )
        per_agent[name] = seconds
        rows.append([name, f"{1000 * seconds:.1f}", f"{asset_bars / seconds:,.0f}", ""])
    total = median_seconds(lambda: backtest_agents(market, names), args.repeats)
    rows.append(
        [
            "all six",
            f"{1000 * total:.1f}",
            f"{len(names) * asset_bars / total:,.0f}",
            "target < 500 ms",
        ]
    )
    payload.update(per_agent_seconds=per_agent, all_six_seconds=total)

    fee_free = {
        r.agent: float(r.path.values[-1])
        for r in backtest_agents(market, ["olmar", "pamr"], cost_rate=0.0)
    }
    reference = reference_json(
        [
            "--data",
            str(folder),
            "--tickers",
            ",".join(resolve_pool("dj30").tickers),
            "--start",
            START,
            "--end",
            END,
            "--what",
            "baselines",
            "--repeats",
            str(min(args.repeats, 3)),
        ]
    )
    payload.update(finrl_lab_fee_free_wealth=fee_free, reference_universal=reference)
    if reference:
        for name in ("olmar", "pamr"):
            ref = reference[name]
            rows.append(
                [
                    f"universal-portfolios {name}",
                    f"{1000 * ref['seconds']:.1f}",
                    f"{asset_bars / ref['seconds']:,.0f}",
                    f"wealth {ref['total_wealth']:.6f} vs ours {fee_free[name]:.6f}",
                ]
            )
    show(
        f"baselines over DJ30 {START} .. {END}",
        ["agent", "ms (median)", "asset-bars/s", "note"],
        rows,
    )

    close = panel.select(list(panel.tickers)).between(START, END).close
    values = (close / close[0]).T  # 29 series
    returns = (values[:, 1:] / values[:, :-1] - 1.0).T
    ours = median_seconds(lambda: compute_metrics(values, 252), args.repeats * 4)
    metric_rows = [
        ["finrl_lab compute_metrics (8 metrics)", f"{1000 * ours:.2f}", "1.00"]
    ]
    try:
        import empyrical
    except ImportError:
        empyrical = None
    if empyrical is not None:

        def reference_metrics():
            empyrical.annual_return(returns, annualization=252)
            empyrical.annual_volatility(returns, annualization=252)
            empyrical.sharpe_ratio(returns, annualization=252)
            empyrical.sortino_ratio(returns, annualization=252)
            empyrical.max_drawdown(returns)

        theirs = median_seconds(reference_metrics, args.repeats * 4)
        metric_rows.append(
            [
                "empyrical-reloaded (5 vectorised calls)",
                f"{1000 * theirs:.2f}",
                f"{theirs / ours:.2f}x ours",
            ]
        )
        payload.update(empyrical_metrics_seconds=theirs)
    payload.update(
        finrl_lab_metrics_seconds=ours,
        metric_series=values.shape[0],
        metric_days=returns.shape[0],
    )
    show(
        f"metrics of {values.shape[0]} series x {returns.shape[0]} days",
        ["implementation", "ms (median)", "relative"],
        metric_rows,
    )
    print(f"saved {save('baselines', payload)}")


if __name__ == "__main__":
    main()
