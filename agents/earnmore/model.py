"""The EarnMore model: representation, actor and twin critics in one module."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from finrl_lab.agents.earnmore.network import MaskableRepresentation
from finrl_lab.agents.earnmore.policy import Actor, TwinCritic, reweight
from finrl_lab.agents.earnmore.settings import EarnMoreSettings


class EarnMoreModel(nn.Module):
    """Every trained part of EarnMore for a global pool of ``n_stocks`` stocks.

    :param feature_names: the F feature columns of each window.
    :param n_stocks: N, the size of the global pool.
    :param settings: network sizes and the softmax temperature.
    """

    def __init__(
        self, feature_names: Sequence[str], n_stocks: int, settings: EarnMoreSettings
    ) -> None:
        super().__init__()
        self.n_stocks = n_stocks
        self.temperature = settings.effective_temperature
        self.representation = MaskableRepresentation(
            feature_names,
            n_stocks,
            settings.lookback,
            dim=settings.dim,
            decoder_dim=settings.decoder_dim,
            depth=settings.depth,
            heads=settings.heads,
            mlp_ratio=settings.mlp_ratio,
        )
        self.actor = Actor(
            settings.decoder_dim, settings.hidden, settings.effective_temperature
        )
        self.critic = TwinCritic(settings.decoder_dim, settings.hidden)

    @torch.no_grad()
    def portfolio_weights(
        self,
        windows: torch.Tensor,
        visible: torch.Tensor,
        weights: torch.Tensor,
        deterministic: bool = True,
    ) -> torch.Tensor:
        """Return target weights [B, N + 1] with exactly 0 outside ``visible``.

        :param windows: scaled feature windows [B, N, D, F].
        :param visible: bool [B, N], stocks in the pool with a bar today.
        :param weights: current drifted weights [B, N + 1], cash first.
        :param deterministic: use the mean logits (evaluation) or sample them.
        """
        rho = self.representation(windows, visible)
        if deterministic:
            logits, _ = self.actor(rho, weights)
        else:
            logits, _ = self.actor.sample(rho, weights)
        allowed = torch.cat([torch.ones_like(visible[:, :1]), visible], dim=1)
        return reweight(logits, self.temperature, allowed)


def gather_windows(
    features: torch.Tensor, days: torch.Tensor, lookback: int
) -> torch.Tensor:
    """Return the windows ending at each day: [B, N, D, F] from features [T, N, F].

    :param days: int64 [B], the decision row of each sample; rows
        ``day - lookback + 1 .. day`` are read.
    """
    offsets = torch.arange(1 - lookback, 1, device=features.device)
    rows = days[:, None] + offsets[None, :]  # [B, D]
    return features[rows].permute(0, 2, 1, 3)


def as_tensor(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Move a numpy array to ``device`` without copying on the CPU."""
    return torch.as_tensor(array, device=device)
