"""Metrics: golden values against empyrical-reloaded on real returns, hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from finrl_lab.data.local import load_bundled
from finrl_lab.metrics import compute_metrics, earnmore_metrics, max_drawdown

empyrical = pytest.importorskip("empyrical")


@pytest.fixture(scope="module")
def real_values():
    """Value paths of the 20 bundled stocks over 2008-2022, [20, S + 1]."""
    close = load_bundled().between("2008-01-01", "2022-12-28").close
    return (close / close[0]).T


def test_golden_against_empyrical(real_values):
    ours = compute_metrics(real_values, 252)
    returns = (real_values[:, 1:] / real_values[:, :-1] - 1.0).T
    expected = {
        "arr": empyrical.annual_return(returns, annualization=252),
        "annual_volatility": empyrical.annual_volatility(returns, annualization=252),
        "sharpe": empyrical.sharpe_ratio(returns, annualization=252),
        "sortino": empyrical.sortino_ratio(returns, annualization=252),
        "max_drawdown": -empyrical.max_drawdown(returns),
        "calmar": np.array(
            [empyrical.calmar_ratio(r, annualization=252) for r in returns.T]
        ),
    }
    for name, values in expected.items():
        np.testing.assert_allclose(ours[name], values, rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(ours["total_return"], real_values[:, -1] - 1.0)


def test_one_series_returns_floats(real_values):
    one = compute_metrics(real_values[0], 252)
    many = compute_metrics(real_values, 252)
    assert isinstance(one["sharpe"], float)
    assert one["sharpe"] == pytest.approx(many["sharpe"][0])


def test_drawdown_counts_a_loss_from_the_initial_capital():
    values = np.array([100.0, 90.0, 95.0, 120.0, 108.0])
    assert max_drawdown(values) == pytest.approx(0.10)
    values = np.array([100.0, 130.0, 91.0, 140.0])
    assert max_drawdown(values) == pytest.approx(0.30)


def test_hand_computed_metrics_and_crypto_annualisation():
    values = np.array([1.0, 1.01, 0.99, 1.02])
    r = np.array([0.01, 0.99 / 1.01 - 1, 1.02 / 0.99 - 1])
    for ppy in (252, 365):
        m = compute_metrics(values, ppy, turnover=np.array([1.0, 0.2, 0.0]))
        assert m["arr"] == pytest.approx(1.02 ** (ppy / 3) - 1)
        assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(ppy))
        downside = np.sqrt(np.mean(np.minimum(r, 0) ** 2) * ppy)
        assert m["sortino"] == pytest.approx(r.mean() * ppy / downside)
        assert m["avg_turnover"] == pytest.approx(0.4)
        assert m["max_drawdown"] == pytest.approx(1 - 0.99 / 1.01)


def test_earnmore_paper_definitions():
    values = np.array([1.0, 1.02, 0.99, 1.03, 1.01])
    r = values[1:] / values[:-1] - 1
    m = earnmore_metrics(values)
    assert m["earnmore_arr"] == pytest.approx(0.01 * 252 / 4)
    assert m["earnmore_sr"] == pytest.approx(r.mean() / r.std(ddof=1))
    assert m["earnmore_vol"] == pytest.approx(r.std(ddof=1))
    mdd = 1 - 0.99 / 1.02
    assert m["earnmore_mdd"] == pytest.approx(mdd)
    assert m["earnmore_cr"] == pytest.approx(r.mean() / mdd)
    assert m["earnmore_sor"] == pytest.approx(r.mean() / r[r < 0].std(ddof=1))
