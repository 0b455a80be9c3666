"""PortfolioEnv for many episodes at once, as a stable-baselines3 VecEnv.

:class:`BatchedPortfolioEnv` runs ``num_envs`` episodes of one
:class:`~finrl_lab.envs.portfolio.PortfolioEnv` side by side with array
operations over the batch instead of a Python loop over environments. Its
results equal ``DummyVecEnv([PortfolioEnv] * num_envs)`` seeded the same way:
environment ``i`` draws its episode starts from a generator seeded with
``seed + i``, exactly as ``PortfolioEnv.reset(seed=seed + i)`` does, and a
finished episode is reset at once with its final observation in
``info["terminal_observation"]``.

:class:`TorchBatchedPortfolio` is the same simulation on torch tensors, on the
GPU when one is given, for trainers that keep the whole rollout on the device.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from finrl_lab.envs.actions import action_to_weights
from finrl_lab.envs.portfolio import PortfolioEnv
from finrl_lab.errors import ConfigError


class BatchedPortfolioEnv(VecEnv):
    """Run ``num_envs`` episodes of a PortfolioEnv at once as arrays.

    :param env: the single environment whose market, features and options every
        episode shares; it is not stepped.
    :param num_envs: episodes simulated side by side (the batch size).

    Observations are the single env's Dict, stacked: ``features`` float32
    [B, N, lookback, F], ``mask`` int8 [B, N], ``weights`` float32 [B, N + 1].
    Rewards are float32 [B] as in stable-baselines3's DummyVecEnv. Infos are
    empty dicts except at episode ends, where they hold ``terminal_observation``,
    ``TimeLimit.truncated``, ``episode`` (return ``r``, length ``l``, seconds
    ``t``) and the final ``value``.
    """

    def __init__(self, env: PortfolioEnv, num_envs: int) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs {num_envs} must be at least 1")
        self.env = env
        super().__init__(num_envs, env.observation_space, env.action_space)
        self.market = env.market
        n = env.market.n_assets
        self._windows = env._windows
        self._allowed = env._allowed
        self._mask = env._mask_int
        self._relatives = env._rel_cash
        self._rows = np.full(num_envs, env.market.first, dtype=np.int64)
        self._ends = self._rows + env.episode_length
        self._values = np.full(num_envs, env.initial_value)
        self._weights = np.zeros((num_envs, n + 1))
        self._weights[:, 0] = 1.0
        self._episode_return = np.zeros(num_envs)
        self._episode_length = np.zeros(num_envs, dtype=np.int64)
        self._episode_start_time = np.full(num_envs, time.time())
        self._generators: list[np.random.Generator | None] = [None] * num_envs
        self._actions: np.ndarray | None = None

    # -- VecEnv API -------------------------------------------------------------

    def reset(self) -> dict[str, np.ndarray]:
        """Start a new episode in every slot, using pending seeds and options."""
        for i in range(self.num_envs):
            if self._seeds[i] is not None or self._generators[i] is None:
                self._generators[i], _ = seeding.np_random(self._seeds[i])
            self._start_episode(i, self._options[i].get("start_row"))
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float64)

    def step_wait(
        self,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        """Apply the pending actions to every episode; reset the finished ones."""
        env = self.env
        rows = self._rows
        target = action_to_weights(
            self._actions, self._allowed[rows], env.action_mode, env.softmax_temperature
        )
        traded = np.abs(target[:, 1:] - self._weights[:, 1:]).sum(axis=1)
        cost = env.cost_rate * traded * self._values
        gross = target * self._relatives[rows]
        growth = gross.sum(axis=1)
        old_values = self._values
        self._values = (old_values - cost) * growth
        self._weights = gross / growth[:, None]
        self._rows = rows + 1

        if env.reward_kind == "log_return":
            reward = np.log(np.maximum(self._values, 1e-300) / old_values)
        else:
            reward = self._values / old_values - 1.0
        reward = reward * env.reward_scale
        self._episode_return += reward
        self._episode_length += 1
        terminated = self._values <= env.ruin_value
        truncated = (self._rows >= self._ends) & ~terminated
        dones = terminated | truncated

        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        finished = np.flatnonzero(dones)
        if finished.size:
            final = self._observation(finished)
            now = time.time()
            for k, i in enumerate(finished):
                infos[i] = {
                    "terminal_observation": {key: v[k] for key, v in final.items()},
                    "TimeLimit.truncated": bool(truncated[i]),
                    "value": float(self._values[i]),
                    "episode": {
                        "r": float(self._episode_return[i]),
                        "l": int(self._episode_length[i]),
                        "t": round(now - self._episode_start_time[i], 6),
                    },
                }
                self._start_episode(i, None)
        return self._observation(), reward.astype(np.float32), dones, infos

    def close(self) -> None:
        """Release nothing: the batch is made of arrays only."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.env, attr_name) for _ in self._get_indices(indices)]

    def set_attr(
        self, attr_name: str, value: Any, indices: VecEnvIndices = None
    ) -> None:
        raise AttributeError(
            f"BatchedPortfolioEnv shares one environment; cannot set {attr_name!r}"
        )

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        method = getattr(self.env, method_name)
        return [
            method(*method_args, **method_kwargs) for _ in self._get_indices(indices)
        ]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    # -- state for checkpoints --------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Return the batch's state as tensors and plain values, for checkpoints."""
        return {
            "rows": torch.from_numpy(self._rows.copy()),
            "ends": torch.from_numpy(self._ends.copy()),
            "values": torch.from_numpy(self._values.copy()),
            "weights": torch.from_numpy(self._weights.copy()),
            "episode_return": torch.from_numpy(self._episode_return.copy()),
            "episode_length": torch.from_numpy(self._episode_length.copy()),
            "generators": [
                None if g is None else g.bit_generator.state for g in self._generators
            ],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state returned by :meth:`get_state`."""
        self._rows = state["rows"].numpy().copy()
        self._ends = state["ends"].numpy().copy()
        self._values = state["values"].numpy().copy()
        self._weights = state["weights"].numpy().copy()
        self._episode_return = state["episode_return"].numpy().copy()
        self._episode_length = state["episode_length"].numpy().copy()
        self._episode_start_time[:] = time.time()
        for i, generator_state in enumerate(state["generators"]):
            if generator_state is None:
                self._generators[i] = None
                continue
            generator, _ = seeding.np_random(0)
            generator.bit_generator.state = generator_state
            self._generators[i] = generator

    # -- inspection ---------------------------------------------------------------

    @property
    def values(self) -> np.ndarray:
        """Current portfolio value of every episode, in currency units, [B]."""
        return self._values.copy()

    @property
    def weights(self) -> np.ndarray:
        """Current drifted weights of every episode, cash first, [B, N + 1]."""
        return self._weights.copy()

    @property
    def rows(self) -> np.ndarray:
        """Current decision row of every episode in the market's panel, [B]."""
        return self._rows.copy()

    # -- helpers -------------------------------------------------------------------

    def _start_episode(self, i: int, start_row: int | None) -> None:
        env = self.env
        market = self.market
        latest_start = market.last - env.episode_length
        if start_row is not None:
            start = int(start_row)
            if not market.first <= start <= latest_start:
                raise ConfigError(
                    f"start_row {start} is outside {market.first} .. {latest_start}"
                )
        elif latest_start > market.first:
            start = int(self._generators[i].integers(market.first, latest_start + 1))
        else:
            start = market.first
        self._rows[i] = start
        self._ends[i] = start + env.episode_length
        self._values[i] = env.initial_value
        self._weights[i] = 0.0
        self._weights[i, 0] = 1.0
        self._episode_return[i] = 0.0
        self._episode_length[i] = 0
        self._episode_start_time[i] = time.time()

    def _observation(self, which: np.ndarray | None = None) -> dict[str, np.ndarray]:
        rows = self._rows if which is None else self._rows[which]
        weights = self._weights if which is None else self._weights[which]
        return {
            "features": self._windows[rows - self.env.lookback + 1],
            "mask": self._mask[rows],
            "weights": weights.astype(np.float32),
        }


class TorchBatchedPortfolio:
    """The batched portfolio simulation on torch tensors, on any device.

    Holds the market arrays on ``device`` once and steps ``num_envs`` episodes
    with tensor operations, so a GPU trainer never copies observations to the
    host. Actions are mapped to weights with the env's action mode, as in
    :func:`finrl_lab.envs.actions.action_to_weights`. Episodes are not reset
    automatically: call :meth:`reset` with the start rows of the next episodes.

    :param env: the single environment to mirror (market, features, costs).
    :param num_envs: episodes simulated side by side.
    :param device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
    """

    def __init__(
        self, env: PortfolioEnv, num_envs: int, device: str | torch.device = "cpu"
    ) -> None:
        self.env = env
        self.num_envs = num_envs
        self.device = torch.device(device)
        dtype = torch.float64
        self._windows = torch.as_tensor(
            np.ascontiguousarray(env._windows), device=self.device
        )
        self._allowed = torch.as_tensor(env._allowed, device=self.device)
        self._mask = torch.as_tensor(env._mask_int, device=self.device)
        self._relatives = torch.as_tensor(
            env._rel_cash, dtype=dtype, device=self.device
        )
        n = env.market.n_assets
        self.rows = torch.full((num_envs,), env.market.first, device=self.device)
        self.values = torch.full(
            (num_envs,), env.initial_value, dtype=dtype, device=self.device
        )
        self.weights = torch.zeros((num_envs, n + 1), dtype=dtype, device=self.device)
        self.weights[:, 0] = 1.0

    def reset(
        self, start_rows: Sequence[int] | torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Start every episode at the given decision rows, all in cash."""
        self.rows = torch.as_tensor(start_rows, device=self.device).long().clone()
        self.values.fill_(self.env.initial_value)
        self.weights.zero_()
        self.weights[:, 0] = 1.0
        return self.observation()

    def observation(self) -> dict[str, torch.Tensor]:
        """Return the current observations as tensors on the device."""
        return {
            "features": self._windows[self.rows - self.env.lookback + 1],
            "mask": self._mask[self.rows],
            "weights": self.weights.float(),
        }

    def target_weights(self, actions: torch.Tensor) -> torch.Tensor:
        """Map float64 actions [B, N + 1] to target weights at the current rows."""
        env = self.env
        allowed = self._allowed[self.rows]
        if env.action_mode == "softmax":
            logits = torch.where(allowed, actions / env.softmax_temperature, -torch.inf)
            return torch.softmax(logits, dim=1)
        if env.action_mode == "weights":
            actions = torch.nan_to_num(actions, nan=0.0)
        scores = torch.where(allowed, actions.clamp_min(0.0), 0.0)
        if env.action_mode == "weights":
            # Weight on an asset without a bar moves to cash, as in the numpy env.
            dropped = torch.where(allowed, 0.0, actions.clamp_min(0.0)).sum(dim=1)
            scores[:, 0] += dropped
        total = scores.sum(dim=1, keepdim=True)
        cash_only = torch.zeros_like(scores)
        cash_only[:, 0] = 1.0
        return torch.where(total > 0, scores / total.clamp_min(1e-300), cash_only)

    def step(
        self, actions: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Apply actions [B, N + 1]; return observations, rewards [B] and ends [B].

        ``ends`` is True where the value fell to the ruin level; the caller
        decides when the window is over (compare :attr:`rows` with its end rows).
        """
        env = self.env
        target = self.target_weights(actions.to(self.device, torch.float64))
        traded = (target[:, 1:] - self.weights[:, 1:]).abs().sum(dim=1)
        cost = env.cost_rate * traded * self.values
        gross = target * self._relatives[self.rows]
        growth = gross.sum(dim=1)
        old_values = self.values
        self.values = (old_values - cost) * growth
        self.weights = gross / growth[:, None]
        self.rows = self.rows + 1
        if env.reward_kind == "log_return":
            reward = torch.log(self.values.clamp_min(1e-300) / old_values)
        else:
            reward = self.values / old_values - 1.0
        ruined = self.values <= env.ruin_value
        return self.observation(), reward * env.reward_scale, ruined
