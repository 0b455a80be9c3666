"""Financial metrics of portfolio value paths.

All functions take values along the last axis, so one call evaluates many series
([..., S + 1] values, the first being the initial capital). Returns are simple
per-period returns; the risk-free rate is 0. Periods per year come from the bar
size and market (:func:`finrl_lab.data.panel.periods_per_year`).

- ARR: compounded annual return, ``(V_S / V_0) ** (periods_per_year / S) - 1``.
- Annual volatility: ``std(r, ddof=1) * sqrt(periods_per_year)``.
- Sharpe: ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)``.
- Sortino: ``mean(r) * periods_per_year / downside``, where ``downside`` is
  ``sqrt(mean(min(r, 0) ** 2) * periods_per_year)``.
- Max drawdown: the largest fall from a running peak, the initial capital
  included, as a positive fraction (0.25 is a 25% fall).
- Calmar: ARR / max drawdown.

EarnMore's paper defines several of these differently; those versions are in
:func:`earnmore_metrics`, labelled as such.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = (
    "total_return",
    "arr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "avg_turnover",
)


def simple_returns(values: np.ndarray) -> np.ndarray:
    """Return per-period simple returns ``V[t+1] / V[t] - 1`` along the last axis."""
    values = np.asarray(values, dtype=np.float64)
    return values[..., 1:] / values[..., :-1] - 1.0


def max_drawdown(values: np.ndarray) -> np.ndarray:
    """Return the largest fall from a running peak, the first value included, >= 0."""
    values = np.asarray(values, dtype=np.float64)
    peaks = np.maximum.accumulate(values, axis=-1)
    return np.max(1.0 - values / peaks, axis=-1)


def drawdown_path(values: np.ndarray) -> np.ndarray:
    """Return the fall from the running peak at every point, same shape, >= 0."""
    values = np.asarray(values, dtype=np.float64)
    return 1.0 - values / np.maximum.accumulate(values, axis=-1)


def compute_metrics(
    values: np.ndarray,
    periods_per_year: float,
    turnover: np.ndarray | None = None,
) -> dict[str, np.ndarray | float]:
    """Compute the project metrics of value paths [..., S + 1].

    :param values: portfolio values; ``values[..., 0]`` is the initial capital.
    :param periods_per_year: bars per year (252 for daily equities).
    :param turnover: one-way risky turnover per rebalance [..., S]; its mean is
        reported as ``avg_turnover`` (NaN when not given).
    :return: metric name to a float (one series) or an array (many series).
    """
    values = np.asarray(values, dtype=np.float64)
    steps = values.shape[-1] - 1
    if steps < 1:
        raise ValueError("need at least two values to compute returns")
    returns = simple_returns(values)
    growth = values[..., -1] / values[..., 0]
    mean = returns.mean(axis=-1)
    std = returns.std(axis=-1, ddof=1) if steps > 1 else np.full_like(mean, np.nan)
    downside = np.sqrt(
        np.mean(np.minimum(returns, 0.0) ** 2, axis=-1) * periods_per_year
    )
    arr = growth ** (periods_per_year / steps) - 1.0
    mdd = max_drawdown(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "total_return": growth - 1.0,
            "arr": arr,
            "annual_volatility": std * np.sqrt(periods_per_year),
            "sharpe": mean / std * np.sqrt(periods_per_year),
            "sortino": mean * periods_per_year / downside,
            "calmar": arr / mdd,
            "max_drawdown": mdd,
            "avg_turnover": (
                np.mean(turnover, axis=-1) if turnover is not None else np.nan
            ),
        }
    if values.ndim == 1:
        return {k: float(v) for k, v in out.items()}
    return out


def earnmore_metrics(values: np.ndarray, trading_days: int = 252) -> dict[str, float]:
    """Compute metrics as the EarnMore paper defines them (Zhang et al., 2024, App. A).

    These differ from :func:`compute_metrics`: ARR is simple, not compounded,
    ``(V_T - V_0) / V_0 * trading_days / T``; SR is ``mean(r) / std(r)`` of daily
    returns, not annualised; VOL is the daily standard deviation; CR is
    ``mean(r) / MDD`` and SoR is ``mean(r) / DD`` with DD the standard deviation of
    the negative returns. The reference code annualises some of these differently
    (Sharpe by ``sqrt(T)``), so compare with the paper's tables, not the code's.
    """
    values = np.asarray(values, dtype=np.float64)
    returns = simple_returns(values)
    steps = len(returns)
    negative = returns[returns < 0]
    mdd = float(max_drawdown(values))
    mean = float(returns.mean())
    std = float(returns.std(ddof=1))
    dd = float(negative.std(ddof=1)) if len(negative) > 1 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "earnmore_arr": float(
                (values[-1] - values[0]) / values[0] * trading_days / steps
            ),
            "earnmore_sr": mean / std,
            "earnmore_vol": std,
            "earnmore_mdd": mdd,
            "earnmore_cr": mean / mdd if mdd > 0 else float("nan"),
            "earnmore_sor": mean / dd,
        }
