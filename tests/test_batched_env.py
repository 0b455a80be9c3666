"""BatchedPortfolioEnv and TorchBatchedPortfolio against the single PortfolioEnv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv

from finrl_lab.data.local import load_bundled
from finrl_lab.envs.batched import BatchedPortfolioEnv, TorchBatchedPortfolio
from finrl_lab.envs.portfolio import PortfolioEnv
from finrl_lab.errors import ConfigError

ENV_OPTIONS = {"start": "2010-01-01", "end": "2011-12-31", "lookback": 5}


@pytest.fixture(scope="module")
def panel():
    return load_bundled()


def make_env(panel, **overrides) -> PortfolioEnv:
    return PortfolioEnv(panel, "sp20-tech", **{**ENV_OPTIONS, **overrides})


def random_actions(rng, batch: int, width: int) -> np.ndarray:
    # Mostly negative entries leave some rows all-cash, a case of its own.
    return rng.uniform(-1.0, 0.6, size=(batch, width)).astype(np.float32)


@pytest.mark.parametrize("action_mode", ["simplex", "softmax", "weights"])
@pytest.mark.parametrize("reward", ["log_return", "return"])
def test_batched_equals_dummy_vec_env(panel, action_mode, reward):
    options = {"episode_length": 23, "action_mode": action_mode, "reward": reward}
    batch = 5
    single = DummyVecEnv([lambda: make_env(panel, **options) for _ in range(batch)])
    batched = BatchedPortfolioEnv(make_env(panel, **options), batch)
    single.seed(11)
    batched.seed(11)
    obs_single, obs_batched = single.reset(), batched.reset()
    rng = np.random.default_rng(3)
    episodes_ended = 0
    # 80 steps of 23-step episodes cross several automatic resets.
    for step in range(80):
        for key in obs_single:
            assert np.array_equal(obs_single[key], obs_batched[key]), (step, key)
        actions = random_actions(rng, batch, single.action_space.shape[0])
        obs_single, rew_single, done_single, info_single = single.step(actions)
        obs_batched, rew_batched, done_batched, info_batched = batched.step(actions)
        np.testing.assert_array_equal(rew_batched, rew_single)
        np.testing.assert_array_equal(done_batched, done_single)
        for i in np.flatnonzero(done_single):
            episodes_ended += 1
            final_single = info_single[i]["terminal_observation"]
            final_batched = info_batched[i]["terminal_observation"]
            for key in final_single:
                assert np.array_equal(final_single[key], final_batched[key])
            truncated = info_single[i]["TimeLimit.truncated"]
            assert info_batched[i]["TimeLimit.truncated"] == truncated
            assert info_batched[i]["episode"]["l"] == 23
    assert episodes_ended == 5 * (80 // 23)


def test_batched_values_follow_single_env_episode(panel):
    env = make_env(panel, episode_length=40)
    first = env.market.first
    starts = [first, first + 7, first + 100]
    batched = BatchedPortfolioEnv(make_env(panel, episode_length=40), len(starts))
    batched.set_options([{"start_row": row} for row in starts])
    batched.reset()
    rng = np.random.default_rng(0)
    actions = random_actions(rng, 39 * len(starts), env.action_space.shape[0])
    actions = actions.reshape(39, len(starts), -1)
    expected = np.zeros((39, len(starts)))
    expected_weights = np.zeros((39, len(starts), env.action_space.shape[0]))
    for i, row in enumerate(starts):
        env.reset(options={"start_row": row})
        for step in range(39):
            _, _, _, _, info = env.step(actions[step, i])
            expected[step, i] = info["value"]
            expected_weights[step, i] = info["weights"]
    for step in range(39):
        batched.step(actions[step])
        np.testing.assert_allclose(batched.values, expected[step], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            batched.weights, expected_weights[step], rtol=0, atol=1e-12
        )
    assert np.array_equal(batched.rows, np.array(starts) + 39)


def test_batched_state_round_trip_continues_identically(panel):
    env = make_env(panel, episode_length=15)
    batched = BatchedPortfolioEnv(env, 3)
    batched.seed(5)
    batched.reset()
    rng = np.random.default_rng(1)
    for _ in range(10):
        batched.step(random_actions(rng, 3, env.action_space.shape[0]))
    state = batched.get_state()
    later = [random_actions(rng, 3, env.action_space.shape[0]) for _ in range(30)]
    first_run = [batched.step(a)[1] for a in later]
    copy = BatchedPortfolioEnv(make_env(panel, episode_length=15), 3)
    copy.set_state(state)
    second_run = [copy.step(a)[1] for a in later]
    np.testing.assert_array_equal(np.array(first_run), np.array(second_run))


@pytest.mark.parametrize("action_mode", ["simplex", "softmax", "weights"])
def test_torch_batch_equals_numpy_batch(panel, action_mode):
    env = make_env(panel, episode_length=200, action_mode=action_mode)
    starts = env.market.first + np.arange(4) * 20
    batched = BatchedPortfolioEnv(env, 4)
    batched.set_options([{"start_row": int(row)} for row in starts])
    batched.reset()
    tensors = TorchBatchedPortfolio(env, 4, device="cpu")
    obs = tensors.reset(torch.as_tensor(starts))
    rng = np.random.default_rng(2)
    for _ in range(30):
        actions = random_actions(rng, 4, env.action_space.shape[0])
        obs_np, reward_np, _, _ = batched.step(actions)
        obs, reward, ruined = tensors.step(torch.from_numpy(actions))
        np.testing.assert_allclose(tensors.values.numpy(), batched.values, atol=1e-12)
        np.testing.assert_allclose(reward.numpy(), reward_np, atol=1e-6)
        assert np.array_equal(obs["features"].numpy(), obs_np["features"])
        assert np.array_equal(obs["mask"].numpy(), obs_np["mask"])
        assert not ruined.any()


def test_batched_weights_stay_on_simplex(panel):
    env = make_env(panel, episode_length=30)
    batched = BatchedPortfolioEnv(env, 8)
    batched.seed(0)
    batched.reset()
    rng = np.random.default_rng(4)
    for _ in range(60):
        obs, _, _, _ = batched.step(random_actions(rng, 8, env.action_space.shape[0]))
        weights = batched.weights
        assert (weights >= 0).all()
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(obs["weights"].sum(axis=1), 1.0, atol=1e-5)


def test_single_env_passes_sb3_checker(panel):
    check_env(make_env(panel, episode_length=20), warn=False)


def test_batched_rejects_zero_envs(panel):
    with pytest.raises(ConfigError, match="num_envs 0"):
        BatchedPortfolioEnv(make_env(panel), 0)


def test_batched_rejects_start_row_outside_window(panel):
    env = make_env(panel, episode_length=20)
    batched = BatchedPortfolioEnv(env, 1)
    batched.set_options({"start_row": env.market.last})
    with pytest.raises(ConfigError, match="start_row"):
        batched.reset()
