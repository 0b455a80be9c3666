"""Replay of transitions sampled as overlapping n-step chunks.

Transitions are stored one per env step in ring arrays, each with its pre-squash
action u and the behaviour log-density log mu(tanh u | s) recorded at acting
time. A sample is a batch of windows of n consecutive slots starting at random
slots. A window stops early (its chunk-end flag is set) at an episode end or
where the next slot does not continue the same stream of steps, so every step
can start a chunk and no step is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class ChunkBatch:
    """A batch of B chunks of n steps, as tensors on the learner's device.

    ``features`` [B, n, L, F] and ``account`` [B, n, 2] are the states s_k;
    ``next_features`` and ``next_account`` the states after each step;
    ``u`` [B, n, A] the pre-squash actions; ``log_mu``, ``rewards``,
    ``terminated``, ``chunk_end`` and ``valid`` are [B, n] float (``valid`` is 0
    for steps after the chunk ended).
    """

    features: Tensor
    account: Tensor
    u: Tensor
    log_mu: Tensor
    rewards: Tensor
    terminated: Tensor
    chunk_end: Tensor
    valid: Tensor
    next_features: Tensor
    next_account: Tensor


class ChunkReplay:
    """Ring buffer of transitions, sampled as n-step chunks.

    :param capacity: transitions kept (the oldest are overwritten).
    :param lookback: L; ``n_features``: F; ``action_dim``: A.
    :param device: where sampled tensors are put.
    """

    def __init__(
        self,
        capacity: int,
        lookback: int,
        n_features: int,
        action_dim: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        self.capacity = int(capacity)
        self.device = torch.device(device)
        shape = (self.capacity, lookback, n_features)
        self.features = np.zeros(shape, np.float32)
        self.next_features = np.zeros(shape, np.float32)
        self.account = np.zeros((self.capacity, 2), np.float32)
        self.next_account = np.zeros((self.capacity, 2), np.float32)
        self.u = np.zeros((self.capacity, action_dim), np.float32)
        self.log_mu = np.zeros(self.capacity, np.float32)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.terminated = np.zeros(self.capacity, np.float32)
        self.episode_end = np.zeros(self.capacity, bool)
        # Insertion count of each slot: slot j continues slot i iff its stamp is
        # one more, which detects the write position and overwritten slots.
        self.stamp = np.full(self.capacity, -1, np.int64)
        self.size = 0
        self.position = 0
        self.count = 0

    def add(
        self,
        observation: dict[str, np.ndarray],
        u: np.ndarray,
        log_mu: float,
        reward: float,
        terminated: bool,
        truncated: bool,
        next_observation: dict[str, np.ndarray],
    ) -> None:
        """Store one transition; ``reward`` is already scaled."""
        i = self.position
        self.features[i] = observation["features"]
        self.account[i] = observation["account"]
        self.next_features[i] = next_observation["features"]
        self.next_account[i] = next_observation["account"]
        self.u[i] = u
        self.log_mu[i] = log_mu
        self.rewards[i] = reward
        self.terminated[i] = float(terminated)
        self.episode_end[i] = terminated or truncated
        self.stamp[i] = self.count
        self.count += 1
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, n: int, rng: np.random.Generator) -> ChunkBatch:
        """Sample ``batch_size`` chunks of up to ``n`` steps each."""
        starts = rng.integers(0, self.size, batch_size)
        slots = (starts[:, None] + np.arange(n)[None, :]) % self.capacity
        stamps = self.stamp[slots]
        contiguous = stamps == stamps[:, :1] + np.arange(n)[None, :]
        # A step is valid when every earlier step of the window is contiguous and
        # did not end its episode.
        stopped_before = np.zeros((batch_size, n), bool)
        stopped_before[:, 1:] = np.cumsum(self.episode_end[slots[:, :-1]], axis=1) > 0
        valid = np.cumprod(contiguous & ~stopped_before, axis=1).astype(bool)
        next_valid = np.zeros_like(valid)
        next_valid[:, :-1] = valid[:, 1:]
        chunk_end = valid & ~next_valid

        def tensor(array: np.ndarray) -> Tensor:
            return torch.as_tensor(array).to(self.device, non_blocking=True)

        return ChunkBatch(
            features=tensor(self.features[slots]),
            account=tensor(self.account[slots]),
            u=tensor(self.u[slots]),
            log_mu=tensor(self.log_mu[slots]),
            rewards=tensor(self.rewards[slots]),
            terminated=tensor(self.terminated[slots]),
            chunk_end=tensor(chunk_end.astype(np.float32)),
            valid=tensor(valid.astype(np.float32)),
            next_features=tensor(self.next_features[slots]),
            next_account=tensor(self.next_account[slots]),
        )
