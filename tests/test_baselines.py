"""Classic baselines: reference implementations, causality and any-pool behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import DJ30_DIR, needs_dj30
from scipy.optimize import minimize

from finrl_lab.agents.classic import (
    CLASSIC_AGENTS,
    OLMARAgent,
    PAMRAgent,
    min_variance_weights,
    project_to_simplex,
)
from finrl_lab.backtest import backtest_agents, make_agent
from finrl_lab.data.local import load_bundled, load_panel
from finrl_lab.market import build_market


def _simplex_by_bisection(v: np.ndarray) -> np.ndarray:
    """Project onto the simplex by bisection on the threshold (a second algorithm)."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(v - mid, 0).sum() > 1:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - hi, 0)


def _reference_olmar(close: np.ndarray, first: int, last: int, window=5, eps=10.0):
    """Run the OLMAR-1 update of Li and Hoi (ICML 2012), all assets tradable."""
    n = close.shape[1]
    b = np.full(n, 1.0 / n)
    out = [b]
    for t in range(first + 1, last):
        x_pred = close[t - window + 1 : t + 1].mean(axis=0) / close[t]
        x_bar = x_pred.mean()
        gap = np.linalg.norm(x_pred - x_bar) ** 2
        lam = 0.0 if gap == 0 else max(0.0, (eps - b @ x_pred) / gap)
        b = _simplex_by_bisection(b + lam * (x_pred - x_bar))
        out.append(b)
    return np.array(out)


def _reference_pamr(close: np.ndarray, first: int, last: int, eps=0.5):
    """Run the PAMR update of Li, Zhao, Hoi and Gopalkrishnan (2012), all tradable."""
    n = close.shape[1]
    b = np.full(n, 1.0 / n)
    out = [b]
    for t in range(first + 1, last):
        x = close[t] / close[t - 1]
        loss = max(0.0, b @ x - eps)
        x_bar = x.mean()
        gap = np.linalg.norm(x - x_bar) ** 2
        tau = 0.0 if gap == 0 else loss / gap
        b = _simplex_by_bisection(b - tau * (x - x_bar))
        out.append(b)
    return np.array(out)


@pytest.fixture(scope="module")
def sp20_market():
    return build_market(load_bundled(), "sp20", start="2005-01-01", end="2009-12-31")


def test_simplex_projection_matches_bisection():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(0, 2, size=rng.integers(1, 30))
        np.testing.assert_allclose(
            project_to_simplex(v), _simplex_by_bisection(v), atol=1e-9
        )


@pytest.mark.parametrize(
    ("agent", "reference"),
    [(OLMARAgent(), _reference_olmar), (PAMRAgent(), _reference_pamr)],
)
def test_mean_reversion_matches_reference(sp20_market, agent, reference):
    market = sp20_market
    ours = agent.target_weights(market)
    expected = reference(market.close, market.first, market.last)
    assert (ours[:, 0] == 0).all()
    np.testing.assert_allclose(ours[:, 1:], expected, atol=1e-7)


def test_minvar_matches_slsqp():
    rng = np.random.default_rng(4)
    mix = rng.normal(size=(8, 8))
    returns = rng.normal(size=(126, 8)) @ mix * 0.01
    ours = min_variance_weights(returns, shrinkage=1e-3)
    cov = np.cov(returns, rowvar=False)
    cov += 1e-3 * np.mean(np.diag(cov)) * np.eye(8)
    solution = minimize(
        lambda w: w @ cov @ w,
        np.full(8, 1 / 8),
        jac=lambda w: 2 * cov @ w,
        bounds=[(0, 1)] * 8,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )
    assert ours @ cov @ ours <= solution.fun * (1 + 1e-9)
    np.testing.assert_allclose(ours, solution.x, atol=1e-4)
    assert (ours >= 0).all()
    assert (ours == 0).any()


@pytest.mark.parametrize("name", list(CLASSIC_AGENTS))
def test_weights_never_depend_on_later_prices(name):
    panel = load_bundled()
    full = build_market(panel, "sp20", start="2007-01-01", end="2008-12-31")
    weights_full = make_agent(name).target_weights(full)
    for cut in ("2007-06-29", "2008-03-31"):
        short = build_market(panel, "sp20", start="2007-01-01", end=cut)
        weights_short = make_agent(name).target_weights(short)
        np.testing.assert_allclose(
            weights_short, weights_full[: short.steps], atol=1e-12
        )


@needs_dj30
def test_every_baseline_handles_a_late_listing():
    panel = load_panel(DJ30_DIR)
    market = build_market(panel, "AAPL,JPM,V,KO", start="2007-06-01", end="2009-06-01")
    listed = market.tickers.index("V")
    results = backtest_agents(market, list(CLASSIC_AGENTS))
    listing_step = int(
        market.decision_times.searchsorted(pd.Timestamp("2008-03-19", tz="UTC"))
    )
    for result in results:
        assert (result.targets[:listing_step, 1 + listed] == 0).all(), result.agent
        assert np.isfinite(result.path.values).all()


def test_baselines_hold_only_pool_stocks():
    market = build_market(
        load_bundled(),
        "sp20-energy",
        global_pool="sp20",
        start="2010-01-01",
        end="2012-12-31",
    )
    inside = market.pool_mask
    for result in backtest_agents(market, list(CLASSIC_AGENTS)):
        assert (result.targets[:, 1:][:, ~inside] == 0).all(), result.agent
        np.testing.assert_allclose(result.targets.sum(axis=1), 1.0)


def test_market_agent_never_trades_after_the_first_bar(sp20_market):
    (result,) = backtest_agents(sp20_market, ["market"])
    assert result.path.turnover[0] == pytest.approx(1.0)
    assert np.abs(result.path.turnover[1:]).max() < 1e-12
