"""Classic portfolio baselines: market, equal weight, momentum, OLMAR, PAMR, minvar.

Each works on any pool: only assets tradable at a decision bar (in the pool and
with a bar) get weight. Each reads prices at or before the decision bar only.
The daily rebalancing agents (ew, olmar, pamr) take in an asset from the bar it
lists. The periodic ones (momentum, minvar, ew with a period) take it in at
their next rebalance, and buy and hold never does. Weight on an asset that stops
trading goes to cash until the next rebalance. Otherwise none of them keeps cash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from finrl_lab.agents.base import WeightsAgent
from finrl_lab.market import Market


def project_to_simplex(values: np.ndarray) -> np.ndarray:
    """Return the Euclidean projection of a vector onto the probability simplex.

    Sort-based algorithm of Duchi, Shalev-Shwartz, Singer and Chandra (ICML 2008).
    """
    ordered = np.sort(values)[::-1]
    excess = np.cumsum(ordered) - 1.0
    ranks = np.arange(1, len(values) + 1)
    positive = ordered - excess / ranks > 0
    rho = ranks[positive][-1]
    theta = excess[positive][-1] / rho
    return np.maximum(values - theta, 0.0)


def equal_weights(tradable: np.ndarray) -> np.ndarray:
    """Return equal weights over tradable assets, cash first, [..., N + 1].

    Rows with no tradable asset are all cash.
    """
    count = tradable.sum(axis=-1, keepdims=True)
    out = np.zeros((*tradable.shape[:-1], tradable.shape[-1] + 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out[..., 1:] = np.where(tradable, 1.0 / count, 0.0)
    out[..., 0] = (count[..., 0] == 0).astype(float)
    return out


def hold_between_rebalances(
    market: Market, rebalance_targets: np.ndarray, rebalance_rows: np.ndarray
) -> np.ndarray:
    """Fill every decision row with the weights a portfolio drifts to.

    :param rebalance_targets: targets [R, N + 1] set at ``rebalance_rows``
        (absolute panel rows, increasing, the first equal to ``market.first``).
    :return: weights [S, N + 1]; between rebalances they are the previous
        target drifted with prices, so holding them costs no turnover. An asset
        that stops being tradable is sold to cash.
    """
    rows = np.arange(market.first, market.last)
    which = np.searchsorted(rebalance_rows, rows, side="right") - 1
    anchor = rebalance_rows[which]
    base = rebalance_targets[which]
    with np.errstate(invalid="ignore", divide="ignore"):
        growth = market.close[rows] / market.close[anchor]
    growth = np.where(np.isfinite(growth), growth, 0.0)
    held = base.copy()
    held[:, 1:] = base[:, 1:] * growth
    tradable = market.tradable[rows]
    lost = np.where(tradable, 0.0, held[:, 1:]).sum(axis=1)
    held[:, 1:] = np.where(tradable, held[:, 1:], 0.0)
    held[:, 0] += lost
    return held / held.sum(axis=1, keepdims=True)


def periodic_rows(market: Market, period: int) -> np.ndarray:
    return np.arange(market.first, market.last, period)


class MarketAgent(WeightsAgent):
    """Buy and hold: equal weights at the first bar, never rebalanced.

    If no asset of the pool trades at the first bar, the portfolio stays in cash
    until the first bar where one does, and buys then.
    """

    name = "market"

    def target_weights(self, market: Market) -> np.ndarray:
        first = market.first
        window = market.tradable[first : market.last]
        any_tradable = np.flatnonzero(window.any(axis=1))
        if len(any_tradable) == 0:
            return equal_weights(window)
        buy = first + int(any_tradable[0])
        targets = [equal_weights(market.tradable[buy])]
        rows = [buy]
        if buy > first:
            targets.insert(0, equal_weights(np.zeros(market.n_assets, dtype=bool)))
            rows.insert(0, first)
        return hold_between_rebalances(market, np.array(targets), np.array(rows))


class EqualWeightAgent(WeightsAgent):
    """Equal weights over tradable assets, rebalanced every ``period`` bars."""

    name = "ew"

    def __init__(self, period: int = 1) -> None:
        self.period = int(period)

    def target_weights(self, market: Market) -> np.ndarray:
        if self.period == 1:
            return equal_weights(market.tradable[market.first : market.last])
        rows = periodic_rows(market, self.period)
        return hold_between_rebalances(
            market, equal_weights(market.tradable[rows]), rows
        )


class MomentumAgent(WeightsAgent):
    """Cross-sectional momentum: equal weights on the past winners.

    Every ``period`` bars, rank tradable assets by the return from
    ``window`` bars ago to ``skip`` bars ago (12-1 month momentum by default) and
    hold the top ``top_fraction`` (at least one asset) in equal weights. Assets
    without that much history are not ranked; with none ranked, hold all equally.
    """

    name = "momentum"

    def __init__(
        self,
        window: int = 252,
        skip: int = 21,
        period: int = 21,
        top_fraction: float = 0.3,
    ) -> None:
        if not 0 <= skip < window:
            raise ValueError(
                f"need 0 <= skip < window, got skip={skip} window={window}"
            )
        self.window, self.skip, self.period = int(window), int(skip), int(period)
        self.top_fraction = float(top_fraction)

    def target_weights(self, market: Market) -> np.ndarray:
        rows = periodic_rows(market, self.period)
        past = np.clip(rows - self.window, 0, None)
        recent = np.clip(rows - self.skip, 0, None)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = market.close[recent] / market.close[past] - 1.0
        enough = (rows >= self.window)[:, None] & np.isfinite(score)
        tradable = market.tradable[rows]
        ranked = tradable & enough & market.panel.available[past]
        score = np.where(ranked, score, -np.inf)
        count = ranked.sum(axis=1)
        top = np.maximum(1, np.floor(self.top_fraction * count).astype(int))
        order = np.argsort(-score, axis=1, kind="stable")
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.arange(order.shape[1])[None, :], axis=1)
        chosen = ranked & (position < top[:, None])
        chosen = np.where((count > 0)[:, None], chosen, tradable)
        return hold_between_rebalances(market, equal_weights(chosen), rows)


class OLMARAgent(WeightsAgent):
    """On-Line Moving Average Reversion (Li and Hoi, ICML 2012), OLMAR-1.

    Predicts the next price relative as the ``window``-bar moving average of the
    close divided by today's close, then moves the previous portfolio the least
    distance that makes the predicted return at least ``epsilon``, projected onto
    the simplex of tradable assets.
    """

    name = "olmar"

    def __init__(self, window: int = 5, epsilon: float = 10.0) -> None:
        self.window, self.epsilon = int(window), float(epsilon)

    def target_weights(self, market: Market) -> np.ndarray:
        close = market.close
        rows = np.arange(market.first, market.last)
        csum = np.vstack([np.zeros((1, close.shape[1])), np.nancumsum(close, axis=0)])
        start = np.clip(rows - self.window + 1, 0, None)
        moving_avg = (csum[rows + 1] - csum[start]) / self.window
        with np.errstate(invalid="ignore", divide="ignore"):
            predicted = moving_avg / close[rows]
        history_ok = (rows >= self.window - 1)[:, None] & market.panel.available[start]
        predicted = np.where(history_ok & np.isfinite(predicted), predicted, 1.0)
        return _passive_aggressive(
            market, predicted, lambda b, x: max(0.0, self.epsilon - b @ x), sign=1.0
        )


class PAMRAgent(WeightsAgent):
    """Passive-Aggressive Mean Reversion (Li, Zhao, Hoi, Gopalkrishnan, 2012), PAMR.

    When the last period's return of the previous portfolio exceeds ``epsilon``,
    moves the portfolio away from the last winners by the least distance that
    brings that return down to ``epsilon``, projected onto the simplex.
    """

    name = "pamr"

    def __init__(self, epsilon: float = 0.5) -> None:
        self.epsilon = float(epsilon)

    def target_weights(self, market: Market) -> np.ndarray:
        rows = np.arange(market.first, market.last)
        last_rel = np.ones((len(rows), market.n_assets))
        has_prev = rows >= 1
        last_rel[has_prev] = market.relatives[rows[has_prev] - 1]
        return _passive_aggressive(
            market, last_rel, lambda b, x: max(0.0, b @ x - self.epsilon), sign=-1.0
        )


def _passive_aggressive(market, signals, loss, sign: float) -> np.ndarray:
    """Run the passive-aggressive loop shared by OLMAR and PAMR.

    Each step sets ``b += sign * loss(b, x) / |x - mean(x)|^2 * (x - mean(x))``.

    The update runs over tradable assets only; the first decision is uniform.
    """
    rows = np.arange(market.first, market.last)
    tradable = market.tradable[rows]
    out = np.zeros((len(rows), market.n_assets + 1))
    b = np.zeros(market.n_assets)
    for k in range(len(rows)):
        live = np.flatnonzero(tradable[k])
        if len(live) == 0:
            out[k, 0] = 1.0
            b[:] = 0.0
            continue
        previous = b[live]
        total = previous.sum()
        if k == 0 or total <= 0:
            new = np.full(len(live), 1.0 / len(live))
        else:
            previous = previous / total
            x = signals[k, live]
            deviation = x - x.mean()
            norm2 = deviation @ deviation
            step = loss(previous, x) / norm2 if norm2 > 0 else 0.0
            new = project_to_simplex(previous + sign * step * deviation)
        b[:] = 0.0
        b[live] = new
        out[k, 1:] = b
    return out


class MinVarianceAgent(WeightsAgent):
    """Long-only minimum-variance portfolio from a rolling covariance.

    Every ``period`` bars, estimate the covariance of daily simple returns over
    the last ``window`` bars (assets with a full window only, ridge ``shrinkage``
    times the mean variance added to the diagonal) and solve
    ``min w' S w  s.t.  w >= 0, sum w = 1`` exactly: with ``S = L L'`` the
    solution is ``z / sum z`` for the non-negative least-squares solution
    ``z = argmin_{z >= 0} |L' z - L^-1 1|``, by the problems' shared KKT conditions.
    """

    name = "minvar"

    def __init__(
        self, window: int = 126, period: int = 21, shrinkage: float = 1e-3
    ) -> None:
        self.window, self.period = int(window), int(period)
        self.shrinkage = float(shrinkage)

    def target_weights(self, market: Market) -> np.ndarray:
        rows = periodic_rows(market, self.period)
        with np.errstate(invalid="ignore", divide="ignore"):
            returns = market.close[1:] / market.close[:-1] - 1.0
        targets = np.zeros((len(rows), market.n_assets + 1))
        for k, row in enumerate(rows):
            lo = row - self.window
            tradable = market.tradable[row]
            if lo < 0:
                targets[k] = equal_weights(tradable)
                continue
            window = returns[lo:row]
            full = tradable & np.isfinite(window).all(axis=0)
            full &= market.panel.available[lo : row + 1].all(axis=0)
            live = np.flatnonzero(full)
            if len(live) < 2:
                targets[k] = equal_weights(full if len(live) else tradable)
                continue
            targets[k, 1 + live] = min_variance_weights(window[:, live], self.shrinkage)
        return hold_between_rebalances(market, targets, rows)


def min_variance_weights(returns: np.ndarray, shrinkage: float = 1e-3) -> np.ndarray:
    """Return long-only minimum-variance weights for returns [T, N]."""
    cov = np.cov(returns, rowvar=False)
    cov = cov + shrinkage * np.mean(np.diag(cov)) * np.eye(len(cov))
    chol = np.linalg.cholesky(cov)
    rhs = np.linalg.solve(chol, np.ones(len(cov)))
    z, _ = nnls(chol.T, rhs)
    return z / z.sum()


@dataclass(frozen=True)
class BaselineSpec:
    cls: type[WeightsAgent]
    summary: str


CLASSIC_AGENTS: dict[str, BaselineSpec] = {
    "market": BaselineSpec(MarketAgent, "buy and hold, equal initial weights"),
    "ew": BaselineSpec(EqualWeightAgent, "equal weight, rebalanced every bar"),
    "momentum": BaselineSpec(MomentumAgent, "cross-sectional 12-1 momentum, top 30%"),
    "olmar": BaselineSpec(OLMARAgent, "on-line moving average reversion"),
    "pamr": BaselineSpec(PAMRAgent, "passive-aggressive mean reversion"),
    "minvar": BaselineSpec(MinVarianceAgent, "rolling long-only minimum variance"),
}
