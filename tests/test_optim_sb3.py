"""Every optimizer trains stable-baselines3 agents through sb3_optimizer_kwargs."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC

from finrl_lab.optim import METHOD_DEFAULTS, RoutedOptimizer, sb3_optimizer_kwargs


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run this module's small-tensor tests on one torch thread, then restore.

    On a busy 2-core machine, two threads per op made these tests 10x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _parameters(policy):
    return {name: p.detach().clone() for name, p in policy.named_parameters()}


@pytest.mark.parametrize("name", list(METHOD_DEFAULTS))
def test_sac_trains_on_pendulum(name):
    env = gym.make("Pendulum-v1")
    policy_kwargs = {"net_arch": [32, 32], **sb3_optimizer_kwargs({"name": name})}
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=1e-3,
        learning_starts=100,
        batch_size=64,
        policy_kwargs=policy_kwargs,
        seed=0,
        device="cpu",
    )
    assert isinstance(model.actor.optimizer, RoutedOptimizer)
    assert isinstance(model.critic.optimizer, RoutedOptimizer)
    before = _parameters(model.policy)
    model.learn(total_timesteps=300)
    after = _parameters(model.policy)
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert any(key.startswith("actor.") for key in changed)
    assert any(key.startswith("critic.") for key in changed)
    assert all(torch.isfinite(value).all() for value in after.values())
    # SAC's learning-rate schedule writes every group, matrix rule included.
    for group in model.critic.optimizer.param_groups:
        assert group["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("name", ["deva", "shrink_muon"])
def test_ppo_trains_saves_and_loads(name, tmp_path):
    env = gym.make("Pendulum-v1")
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=128,
        batch_size=64,
        n_epochs=2,
        learning_rate=3e-4,
        policy_kwargs={"net_arch": [32, 32], **sb3_optimizer_kwargs({"name": name})},
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=256)
    path = tmp_path / "ppo.zip"
    model.save(path)

    loaded = PPO.load(path, env=env, device="cpu")
    assert isinstance(loaded.policy.optimizer, RoutedOptimizer)
    saved_state = model.policy.optimizer.state_dict()["optimizers"][0]["state"]
    loaded_state = loaded.policy.optimizer.state_dict()["optimizers"][0]["state"]
    assert saved_state.keys() == loaded_state.keys()
    for index, entry in saved_state.items():
        for key, value in entry.items():
            np.testing.assert_array_equal(
                np.asarray(value), np.asarray(loaded_state[index][key])
            )
    loaded.learn(total_timesteps=128)
