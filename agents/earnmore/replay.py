"""Replay of EarnMore transitions as day indices and masks, not feature windows.

A state is (day t, visible mask, drifted weights); its feature window is looked
up from the shared feature array when a batch is drawn. One transition of a
500-stock pool with 102 features takes about 6.5 kB, against about 4 MB for
its two float32 windows [N, 10, 102].
The next state is (t + 1, the same mask, the weights after the day's drift).
"""

from __future__ import annotations

import numpy as np


class IndexReplay:
    """A ring buffer of transitions of a pool of ``n_stocks`` stocks.

    :param capacity: maximum number of transitions kept.
    :param n_stocks: N; weights have N + 1 entries, cash first.
    """

    FIELDS = ("day", "visible", "weights", "action", "reward", "next_weights")

    def __init__(self, capacity: int, n_stocks: int) -> None:
        self.capacity = capacity
        self.day = np.zeros(capacity, dtype=np.int64)
        self.visible = np.zeros((capacity, n_stocks), dtype=bool)
        self.weights = np.zeros((capacity, n_stocks + 1), dtype=np.float32)
        self.action = np.zeros((capacity, n_stocks + 1), dtype=np.float32)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.next_weights = np.zeros((capacity, n_stocks + 1), dtype=np.float32)
        self.size = 0
        self.cursor = 0

    def add(
        self,
        day: np.ndarray,
        visible: np.ndarray,
        weights: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_weights: np.ndarray,
    ) -> None:
        """Append a batch of K transitions; arrays have K rows."""
        rows = (self.cursor + np.arange(len(day))) % self.capacity
        self.day[rows] = day
        self.visible[rows] = visible
        self.weights[rows] = weights
        self.action[rows] = action
        self.reward[rows] = reward
        self.next_weights[rows] = next_weights
        self.cursor = int(rows[-1] + 1) % self.capacity
        self.size = min(self.size + len(day), self.capacity)

    def sample(
        self, rng: np.random.Generator, batch_size: int
    ) -> dict[str, np.ndarray]:
        """Draw ``batch_size`` transitions uniformly, with replacement."""
        rows = rng.integers(0, self.size, size=batch_size)
        return {
            "day": self.day[rows],
            "visible": self.visible[rows],
            "weights": self.weights[rows],
            "action": self.action[rows],
            "reward": self.reward[rows],
            "next_weights": self.next_weights[rows],
        }

    def nbytes(self) -> int:
        """Return the memory the buffer's arrays take, in bytes."""
        return sum(getattr(self, name).nbytes for name in self.FIELDS)
