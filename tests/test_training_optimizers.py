"""Every project optimizer trains every stable-baselines3 agent for a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finrl_lab.envs.batched import BatchedPortfolioEnv
from finrl_lab.optim import METHOD_DEFAULTS
from finrl_lab.optim.routing import RoutedOptimizer
from finrl_lab.training import sb3_trainer
from finrl_lab.training.config import resolve_config

OPTIMIZERS = tuple(METHOD_DEFAULTS)
STEPS = 200
AGENTS = tuple(sb3_trainer.ALGORITHMS)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Tiny networks train faster on one thread than on a shared, loaded CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(agent: str, optimizer: str) -> dict:
    section = {"name": agent, "net_arch": [16]}
    if agent in ("ppo", "a2c"):
        section["n_steps"] = 25
    else:
        section.update(learning_starts=50, batch_size=32, buffer_size=500)
    if agent == "ppo":
        section.update(batch_size=50, n_epochs=2)
    return resolve_config(
        {
            "agent": section,
            "optimizer": {"name": optimizer, "lr": 1e-3},
            "pool": {"name": "sp20-tech"},
            "splits": {
                "train": ["2014-01-01", "2015-12-31"],
                "valid": ["2016-01-01", "2016-06-30"],
                "test": ["2016-07-01", "2016-12-31"],
            },
            "env": {"lookback": 5, "episode_length": 40, "n_envs": 4},
            "device": "cpu",
        }
    )


def policy_optimizers(model) -> list[torch.optim.Optimizer]:
    if hasattr(model, "actor") and model.actor is not None:
        return [model.actor.optimizer, model.critic.optimizer]
    return [model.policy.optimizer]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("agent", AGENTS)
def test_optimizer_trains_agent(agent, optimizer):
    config = tiny_config(agent, optimizer)
    env = BatchedPortfolioEnv(sb3_trainer.make_env(config, "train"), 4)
    model = sb3_trainer.build_model(config, env, seed=0, device="cpu")
    for opt in policy_optimizers(model):
        assert isinstance(opt, RoutedOptimizer)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(total_timesteps=STEPS)
    after = model.policy.state_dict()
    assert model.num_timesteps >= STEPS
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "no policy parameter changed"
    for key, value in after.items():
        assert torch.isfinite(value).all(), key
    action, _ = model.predict(env.reset(), deterministic=True)
    assert np.isfinite(action).all()
