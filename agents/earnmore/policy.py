"""EarnMore's SAC actor, twin critics and the re-weighting softmax.

The actor reads rho [B, N + 1, E] (row 0 for cash, from the encoder's [CLS], so
the cash weight depends on the state) and the current drifted weights, and
outputs a Gaussian over one logit per row. A sampled logit vector z becomes
portfolio weights through one softmax with temperature T (EarnMore's
re-weighting, default 0.1): ``w_i = exp(z_i / T) / sum_j exp(z_j / T)``. With
``allowed`` given, rows outside the pool get a logit of minus infinity, so their
weight is exactly zero; that is how the agent acts at evaluation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_STD_MIN = -16.0
# The standard deviation of the logits is set relative to the temperature T:
# the tempered logits z / T start with unit noise and may reach e times that.
# EarnMore clamps log sigma to [-16, 2] in absolute terms; with T = 0.1 that
# noise saturates the softmax, so the critic's gradient cannot reach sigma.
LOG_STD_SPAN = 1.0
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def reweight(
    logits: torch.Tensor, temperature: float, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """Map logits [B, N + 1] (cash first) to weights with one tempered softmax.

    :param temperature: T > 0; lower T gives more concentrated weights.
    :param allowed: bool [B, N + 1] or None; False entries get weight exactly 0.
        Cash (column 0) must be allowed.
    """
    scaled = logits / temperature
    if allowed is not None:
        scaled = scaled.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scaled, dim=-1)


def _token_mlp(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.LayerNorm(hidden),
    )


class Actor(nn.Module):
    """Per-row Gaussian over logits: a 2-layer GELU MLP on [rho_i, weight_i].

    :param dim: E, the width of rho.
    :param hidden: MLP width.
    :param temperature: T of the softmax that the logits feed; the standard
        deviation is at most ``e * T`` and starts near ``T``.
    """

    def __init__(self, dim: int, hidden: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.body = _token_mlp(dim + 1, hidden)
        self.head = nn.Linear(hidden, 2)
        self.log_temperature = math.log(temperature)

    def forward(
        self, rho: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the mean and log standard deviation of the logits, each [B, N + 1].

        :param rho: representation [B, N + 1, E].
        :param weights: current drifted weights [B, N + 1], cash first.
        """
        x = self.body(torch.cat([rho, weights[..., None]], dim=-1))
        mean, raw_log_std = self.head(x).unbind(dim=-1)
        log_std = raw_log_std + self.log_temperature
        return mean, log_std.clamp(LOG_STD_MIN, self.log_temperature + LOG_STD_SPAN)

    def sample(
        self, rho: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw logits z with the reparameterisation trick and their log-density.

        The log-density is that of the Gaussian at the sampled z, summed over
        the N + 1 rows (the weights are a deterministic function of z).
        """
        mean, log_std = self(rho, weights)
        noise = torch.randn_like(mean)
        logits = mean + noise * log_std.exp()
        log_prob = (-0.5 * noise.pow(2) - log_std - _HALF_LOG_TWO_PI).sum(dim=-1)
        return logits, log_prob


class Critic(nn.Module):
    """Q(rho, w): a per-row MLP on [rho_i, w_i, drifted_i], averaged over rows.

    EarnMore sums over rows; the mean keeps the scale of Q's input the same for
    pools of different sizes.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.body = _token_mlp(dim + 2, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(
        self, rho: torch.Tensor, action: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Return Q [B] for rho [B, N + 1, E], target weights and drifted weights."""
        x = torch.cat([rho, action[..., None], weights[..., None]], dim=-1)
        return self.head(self.body(x).mean(dim=1)).squeeze(-1)


class TwinCritic(nn.Module):
    """Two independent critics; SAC uses the minimum of the two as its target."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.q1 = Critic(dim, hidden)
        self.q2 = Critic(dim, hidden)

    def forward(
        self, rho: torch.Tensor, action: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return both critics' Q values, each [B]."""
        return self.q1(rho, action, weights), self.q2(rho, action, weights)
