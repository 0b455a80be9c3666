"""PortfolioEnv: ledger invariants, costs, timing, masks and the Gymnasium API."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env
from helpers import random_walk_panel
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import finrl_lab  # noqa: F401  (registers the environments)
from finrl_lab.agents.base import PolicyAgent
from finrl_lab.backtest import run_policy_agent
from finrl_lab.data.local import load_bundled
from finrl_lab.data.panel import Panel
from finrl_lab.envs.portfolio import PortfolioEnv
from finrl_lab.errors import ConfigError
from finrl_lab.ledger import simulate


def test_gymnasium_make_builds_on_bundled_data():
    env = gym.make("finrl_lab/Portfolio-v0")
    obs, _ = env.reset(seed=0)
    assert obs["features"].shape == (20, 10, 1)
    assert obs["weights"].tolist()[0] == 1.0
    env.close()


def test_env_checkers_pass():
    env = PortfolioEnv(
        load_bundled(), "sp20-health", global_pool="sp20", end="1995-01-01"
    )
    check_env(env, skip_render_check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # image-shape hints only
        sb3_check_env(env)


def test_ledger_invariants_every_step_random_actions():
    panel = random_walk_panel(n_bars=200, n_assets=6, seed=1)
    env = PortfolioEnv(
        panel,
        ["S0", "S2", "S3"],
        global_pool=[f"S{i}" for i in range(6)],
        cost_rate=0.002,
    )
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    mask = np.array([True, False, True, True, False, False])
    done, steps = False, 0
    while not done:
        action = rng.uniform(-1, 1, size=7)
        previous_value = env.value
        obs, reward, terminated, truncated, info = env.step(action)
        target = info["target_weights"]
        for weights in (target, info["weights"]):
            assert (weights >= 0).all()
            assert weights.sum() == pytest.approx(1.0, abs=1e-12)
            assert (weights[1:][~mask] == 0).all()
        assert env.holdings.sum() == pytest.approx(env.value, rel=1e-12)
        assert reward == pytest.approx(np.log(env.value / previous_value), abs=1e-12)
        assert obs["mask"].tolist() == mask.astype(int).tolist()
        np.testing.assert_allclose(obs["weights"], info["weights"], atol=1e-7)
        done = terminated or truncated
        steps += 1
    assert truncated and not terminated
    assert steps == env.market.steps


class _RandomPolicy(PolicyAgent):
    name = "random"

    def __init__(self, n_actions: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.n_actions = n_actions

    def act(self, observation, deterministic=True):
        return self.rng.uniform(-1, 1, size=self.n_actions)


def test_env_value_path_equals_backtester_for_same_weights():
    panel = load_bundled().between("2015-01-01", "2016-12-31")
    env = PortfolioEnv(
        panel, "sp20-staples", global_pool="sp20", cost_rate=0.001, initial_value=1000.0
    )
    result = run_policy_agent(_RandomPolicy(21, seed=5), env)
    np.testing.assert_allclose(
        result.extra["env_values"], result.path.values, rtol=1e-12
    )
    rows = slice(env.market.first, env.market.last)
    direct = simulate(result.targets, env.market.relatives[rows], 0.001, 1000.0)
    np.testing.assert_allclose(direct.values, result.path.values, rtol=1e-12)


def _two_asset_panel() -> Panel:
    dates = pd.bdate_range("2021-01-04", periods=4)
    frame = pd.DataFrame(
        {"A": [100.0, 110.0, 99.0, 99.0], "B": [50.0, 50.0, 55.0, 44.0]}, index=dates
    )
    return Panel.from_wide(frame, source="hand case")


def test_hand_computed_cost_case():
    env = PortfolioEnv(
        _two_asset_panel(),
        ["A", "B"],
        lookback=1,
        cost_rate=0.01,
        action_mode="weights",
        initial_value=1000.0,
    )
    env.reset(options={"start_row": 0})
    # Bar 0 -> 1: buy 50% A, 50% B from cash. Turnover 1.0, cost 10.
    # Value after cost 990; A +10%, B flat: 495 * 1.1 + 495 = 1039.5.
    _, reward, _, _, info = env.step(np.array([0.0, 0.5, 0.5]))
    assert info["turnover"] == pytest.approx(1.0)
    assert info["cost"] == pytest.approx(10.0)
    assert env.value == pytest.approx(1039.5)
    assert reward == pytest.approx(np.log(1.0395))
    # Drifted weights: A 544.5 / 1039.5, B 495 / 1039.5. Move all to cash:
    # turnover 1.0, cost 10.395, value 1029.105, held in cash over bar 1 -> 2.
    _, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0]))
    assert info["turnover"] == pytest.approx(1.0)
    assert env.value == pytest.approx(1039.5 - 10.395)
    # All into B: cost 10.29105; B falls 20% over bar 2 -> 3.
    _, _, _, truncated, info = env.step(np.array([0.0, 0.0, 1.0]))
    assert env.value == pytest.approx((1029.105 - 10.29105) * 0.8)
    assert truncated


@pytest.mark.parametrize("mode", ["simplex", "weights"])
def test_concentrated_portfolio_is_reachable(mode):
    env = PortfolioEnv(load_bundled(), "sp20", end="1991-01-01", action_mode=mode)
    env.reset(seed=0)
    action = np.zeros(21) if mode == "weights" else -np.ones(21)
    action[5] = 1.0
    _, _, _, _, info = env.step(action)
    assert info["target_weights"][5] == 1.0
    assert info["target_weights"].sum() == 1.0


def test_softmax_mode_nearly_concentrated():
    env = PortfolioEnv(load_bundled(), "sp20", end="1991-01-01", action_mode="softmax")
    env.reset(seed=0)
    action = -np.ones(21)
    action[3] = 1.0
    _, _, _, _, info = env.step(action)
    assert info["target_weights"][3] > 1 - 1e-15


def test_stock_outside_pool_gets_exactly_zero():
    env = PortfolioEnv(
        load_bundled(), "sp20-energy", global_pool="sp20", end="1991-01-01"
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.ones(21))
    inside = np.array([t in ("CVX", "RRC", "XOM") for t in env.market.tickers])
    assert (info["target_weights"][1:][~inside] == 0.0).all()
    assert info["target_weights"][1:][inside] == pytest.approx([0.25] * 3)


def test_observation_never_sees_the_next_bar():
    panel = random_walk_panel(n_bars=80, n_assets=3, seed=2)
    cut = 50
    changed_values = panel.values.copy()
    changed_values[cut + 1 :] *= 1.7
    changed = Panel(
        panel.timestamps, panel.tickers, panel.fields, changed_values, panel.available
    )
    observations = []
    for data in (panel, changed):
        env = PortfolioEnv(data, list(data.tickers), lookback=5)
        obs, _ = env.reset(options={"start_row": 4})
        seen = [obs]
        for _ in range(4, cut):
            obs, *_ = env.step(np.ones(4))
            seen.append(obs)
        observations.append(seen)
    for first, second in zip(*observations, strict=True):
        np.testing.assert_array_equal(first["features"], second["features"])


def test_reset_seed_reproduces_the_start():
    env = PortfolioEnv(load_bundled(), "sp20", episode_length=50)
    starts = []
    for seed in (7, 7, 8):
        _, info = env.reset(seed=seed)
        starts.append(info["row"])
    assert starts[0] == starts[1]
    assert starts[0] != starts[2]


def test_ruin_terminates():
    panel = _two_asset_panel()
    env = PortfolioEnv(
        panel, ["A", "B"], lookback=1, action_mode="weights", ruin_fraction=0.95
    )
    env.reset(options={"start_row": 1})
    env.step(np.array([0.0, 0.0, 1.0]))  # B +10%
    _, _, terminated, truncated, _ = env.step(np.array([0.0, 0.0, 1.0]))  # B -20%
    assert terminated
    assert not truncated


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("cost_rate", 2.0),
        ("reward", "sharpe"),
        ("action_mode", "bang"),
        ("lookback", 0),
    ],
)
def test_invalid_options_raise_config_error(option, value):
    with pytest.raises(ConfigError):
        PortfolioEnv(load_bundled(), "sp20", **{option: value})


@pytest.mark.parametrize("mode", ["simplex", "softmax", "weights"])
def test_non_finite_action_keeps_value_finite(mode):
    env = PortfolioEnv(load_bundled(), "sp20", end="1991-01-01", action_mode=mode)
    env.reset(seed=0)
    action = np.zeros(21)
    action[1], action[2], action[3] = np.nan, np.inf, -np.inf
    _, reward, _, _, info = env.step(action)
    assert np.isfinite(reward)
    assert info["target_weights"].sum() == pytest.approx(1.0)
    assert np.isfinite(env.value) and env.value > 0
