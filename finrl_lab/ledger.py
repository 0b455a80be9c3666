"""Portfolio accounting shared by the environment and the backtester.

Weights are vectors over ``[cash, asset_1, ..., asset_N]``: non-negative, summing
to 1. The weights chosen at bar t are held from t to t+1 and earn the price
relative ``close[t+1] / close[t]``. Rebalancing from the drifted weights ``d`` to
the target weights ``w`` costs ``cost_rate * sum_i |w_i - d_i|`` over the risky
assets only (cash is not counted twice), as a fraction of the portfolio value,
charged once per rebalance before the holding period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def turnover(target: np.ndarray, drifted: np.ndarray) -> np.ndarray:
    """Return one-way turnover over the risky assets: ``sum |target - drifted|``.

    Both arrays have cash in column 0; the sum runs over the last axis.
    """
    return np.abs(target[..., 1:] - drifted[..., 1:]).sum(axis=-1)


def with_cash(relatives: np.ndarray) -> np.ndarray:
    """Prepend a cash relative of 1 to asset price relatives [..., N]."""
    ones = np.ones((*relatives.shape[:-1], 1), dtype=relatives.dtype)
    return np.concatenate([ones, relatives], axis=-1)


@dataclass(frozen=True)
class LedgerPath:
    """Result of holding a sequence of target weights.

    :param values: portfolio value at each decision bar and after the last
        holding period, shape [S + 1]; ``values[0]`` is the initial capital.
    :param turnover: one-way risky turnover of each rebalance, shape [S].
    :param costs: transaction cost paid at each rebalance, in currency, shape [S].
    :param drifted: weights at the end of each holding period, shape [S, N + 1].
    """

    values: np.ndarray
    turnover: np.ndarray
    costs: np.ndarray
    drifted: np.ndarray

    @property
    def returns(self) -> np.ndarray:
        """Simple returns per holding period, net of costs, shape [S]."""
        return self.values[1:] / self.values[:-1] - 1.0


def simulate(
    targets: np.ndarray,
    relatives: np.ndarray,
    cost_rate: float,
    initial_value: float = 1.0,
    initial_weights: np.ndarray | None = None,
) -> LedgerPath:
    """Hold target weights through price relatives, charging turnover costs.

    Vectorised over time: the drifted weights before each rebalance depend only on
    the previous target and the price move, not on the portfolio value.

    :param targets: target weights at each decision bar, shape [S, N + 1].
    :param relatives: asset price relatives ``close[t+1] / close[t]`` for each
        holding period, shape [S, N].
    :param cost_rate: cost as a fraction of traded value (10 bps = 0.001).
    :param initial_value: capital before the first rebalance.
    :param initial_weights: weights before the first rebalance; all cash by default.
    """
    steps, width = targets.shape
    if relatives.shape != (steps, width - 1):
        raise ValueError(f"relatives shape {relatives.shape} != {(steps, width - 1)}")
    gross = targets * with_cash(relatives)
    growth = gross.sum(axis=1)
    drifted = gross / growth[:, None]
    if initial_weights is None:
        initial_weights = np.zeros(width)
        initial_weights[0] = 1.0
    before = np.vstack([initial_weights[None, :], drifted[:-1]])
    traded = turnover(targets, before)
    kept = 1.0 - cost_rate * traded
    values = initial_value * np.concatenate([[1.0], np.cumprod(kept * growth)])
    costs = cost_rate * traded * values[:-1]
    return LedgerPath(values=values, turnover=traded, costs=costs, drifted=drifted)
