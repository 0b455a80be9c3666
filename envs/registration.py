"""Registration of finrl_lab's environments with Gymnasium."""

from __future__ import annotations

import gymnasium as gym


def register_envs() -> None:
    """Register ``finrl_lab/Portfolio-v0`` and ``finrl_lab/CryptoTrading-v0``.

    Safe to call more than once.
    """
    if "finrl_lab/Portfolio-v0" not in gym.registry:
        gym.register(
            id="finrl_lab/Portfolio-v0",
            entry_point="finrl_lab.envs.portfolio:make_default_portfolio_env",
        )
    if "finrl_lab/CryptoTrading-v0" not in gym.registry:
        gym.register(
            id="finrl_lab/CryptoTrading-v0",
            entry_point="finrl_lab.envs.crypto:make_crypto_env",
        )
