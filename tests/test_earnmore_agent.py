"""EarnMore as a project agent: backtests, pools, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_walk_panel

from finrl_lab.agents.earnmore.agent import EarnMoreAgent, backtest_pool
from finrl_lab.agents.earnmore.dataset import check_in_global_pool
from finrl_lab.agents.earnmore.model import EarnMoreModel
from finrl_lab.agents.earnmore.settings import EarnMoreSettings
from finrl_lab.data.pools import make_pool
from finrl_lab.errors import ConfigError, PoolError

FEATURES = ["r0", "r1", "r2"]


def small_agent(seed: int = 0) -> tuple[EarnMoreAgent, object, np.ndarray]:
    panel = random_walk_panel(n_bars=120, n_assets=6, seed=seed)
    torch.manual_seed(seed)
    settings = EarnMoreSettings(dim=8, decoder_dim=8, hidden=8, heads=2, lookback=5)
    model = EarnMoreModel(FEATURES, panel.n_assets, settings).eval()
    features = np.random.default_rng(seed).normal(size=(len(panel), 6, 3))
    agent = EarnMoreAgent(
        model, settings, panel.tickers, "ohlc", FEATURES, None, {"global_pool": "gsp"}
    )
    return agent, panel, features.astype(np.float32)


def test_backtest_gives_pool_outside_zero_weight():
    agent, panel, features = small_agent()
    pool = make_pool("three", ["S0", "S2", "S5"])
    run = backtest_pool(agent, panel, pool, None, None, 0.001, features)
    targets = run.result.targets
    assert np.all(targets[:, [2, 4, 5]] == 0.0)
    assert np.all(targets[:, [1, 3, 6]] > 0.0)
    assert np.allclose(targets.sum(axis=1), 1.0)
    env_values = run.result.extra["env_values"]
    assert np.allclose(env_values, run.result.path.values)


def test_same_model_differs_by_pool():
    agent, panel, features = small_agent()
    wide = backtest_pool(agent, panel, "S0,S1,S2,S3", None, None, 0.0, features)
    narrow = backtest_pool(agent, panel, "S0,S1", None, None, 0.0, features)
    assert wide.result.targets.shape == narrow.result.targets.shape
    assert not np.allclose(wide.result.path.values, narrow.result.path.values)


def test_save_and_load_reproduce_actions(tmp_path):
    agent, panel, features = small_agent()
    path = tmp_path / "earnmore.pt"
    agent.save(path)
    loaded = EarnMoreAgent.from_file(path)
    before = backtest_pool(agent, panel, "S1,S3,S4", None, None, 0.001, features)
    after = backtest_pool(loaded, panel, "S1,S3,S4", None, None, 0.001, features)
    assert np.array_equal(before.result.targets, after.result.targets)
    other, _, _ = small_agent(seed=1)
    other.tickers = agent.tickers
    other.load(path)
    again = backtest_pool(other, panel, "S1,S3,S4", None, None, 0.001, features)
    assert np.array_equal(before.result.targets, again.result.targets)


def test_loading_rejects_other_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "something else"}, path)
    with pytest.raises(ConfigError, match="format"):
        EarnMoreAgent.from_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        EarnMoreAgent.from_file(tmp_path / "missing.pt")


def test_pool_outside_global_pool_names_ticker():
    pool = make_pool("mine", ["AAPL", "ZZZZ", "JPM"])
    with pytest.raises(PoolError, match="ZZZZ") as caught:
        check_in_global_pool(pool, ("AAPL", "JPM", "KO"), "dj30")
    assert "AAPL" not in caught.value.message
