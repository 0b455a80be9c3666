"""Actor and twin critics for Trace-SAC, with MLP, LSTM or transformer encoders.

Every network reads an observation as two tensors: ``features`` [B, L, F] (a
lookback window of L bars, oldest first) and ``account`` [B, 2] (position and
cash fractions of wealth). The encoder maps the window to a vector, the account
state is appended, and an MLP head follows. The LSTM runs along the L time steps
of each sample (``batch_first=True``), never across the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from finrl_lab.errors import ConfigError

ENCODERS = ("mlp", "lstm", "transformer")
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Build Linear layers of the given sizes with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class WindowEncoder(nn.Module):
    """Encode a feature window [B, L, F] and account [B, 2] into [B, out_dim].

    :param kind: ``mlp`` (flatten the window), ``lstm`` (the last hidden state of
        an LSTM run along time) or ``transformer`` (the last position of a causal
        transformer encoder with learned position embeddings).
    :param lookback: L, bars in the window.
    :param n_features: F, features per bar.
    :param hidden: LSTM hidden size or transformer model width (default 64).
    :param layers: LSTM or transformer layers (default 1).
    :param heads: attention heads of the transformer (default 4).
    """

    def __init__(
        self,
        kind: str,
        lookback: int,
        n_features: int,
        hidden: int = 64,
        layers: int = 1,
        heads: int = 4,
    ) -> None:
        super().__init__()
        if kind not in ENCODERS:
            raise ConfigError(
                f"unknown encoder {kind!r}", f"use one of {', '.join(ENCODERS)}"
            )
        self.kind = kind
        if kind == "mlp":
            width = lookback * n_features
        elif kind == "lstm":
            self.lstm = nn.LSTM(n_features, hidden, num_layers=layers, batch_first=True)
            width = hidden
        else:
            if hidden % heads:
                raise ConfigError(
                    f"transformer width {hidden} is not divisible by {heads} heads",
                    "pick encoder.hidden as a multiple of encoder.heads",
                )
            self.embed = nn.Linear(n_features, hidden)
            self.position = nn.Parameter(torch.zeros(lookback, hidden))
            nn.init.normal_(self.position, std=0.02)
            layer = nn.TransformerEncoderLayer(
                hidden,
                heads,
                dim_feedforward=2 * hidden,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )
            self.transformer = nn.TransformerEncoder(
                layer, layers, enable_nested_tensor=False
            )
            mask = torch.triu(torch.full((lookback, lookback), -math.inf), 1)
            self.register_buffer("causal_mask", mask, persistent=False)
            width = hidden
        self.out_dim = width + 2

    def forward(self, features: Tensor, account: Tensor) -> Tensor:
        """Encode ``features`` [B, L, F] and ``account`` [B, 2] into [B, out_dim]."""
        if self.kind == "mlp":
            encoded = features.flatten(1)
        elif self.kind == "lstm":
            outputs, _ = self.lstm(features)
            encoded = outputs[:, -1]
        else:
            x = self.embed(features) + self.position
            x = self.transformer(x, mask=self.causal_mask, is_causal=True)
            encoded = x[:, -1]
        return torch.cat([encoded, account], dim=-1)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy over actions in [-1, 1]^A.

    The policy samples a pre-squash action u ~ N(mean, std) and acts with
    a = tanh(u). Log-densities are of a, Jacobian included:
    log pi(a) = log N(u) - sum log(1 - tanh(u)^2).
    """

    def __init__(
        self, encoder: WindowEncoder, hidden_sizes: Sequence[int], action_dim: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.body = mlp([encoder.out_dim, *hidden_sizes])
        self.body.append(nn.ReLU())
        self.head = nn.Linear(hidden_sizes[-1], 2 * action_dim)

    def distribution(self, features: Tensor, account: Tensor) -> Normal:
        """Return the Gaussian over pre-squash actions u, batch shape [B, A]."""
        mean, log_std = self.head(self.body(self.encoder(features, account))).chunk(
            2, dim=-1
        )
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return Normal(mean, log_std.exp())

    def sample(self, features: Tensor, account: Tensor) -> tuple[Tensor, Tensor]:
        """Draw u with the reparameterisation trick; return (u, log pi(tanh u)) [B]."""
        dist = self.distribution(features, account)
        u = dist.rsample()
        return u, squashed_log_prob(dist, u)


def squashed_log_prob(dist: Normal, u: Tensor) -> Tensor:
    """Return log pi(tanh(u)) [B] for pre-squash actions u [B, A] under ``dist``.

    Uses log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which stays finite
    for large |u|.
    """
    log_jacobian = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return (dist.log_prob(u) - log_jacobian).sum(-1)


class TwinCritic(nn.Module):
    """Two independent Q networks, each with its own encoder: Q_j(s, a) -> [B]."""

    def __init__(
        self,
        make_encoder: Any,
        hidden_sizes: Sequence[int],
        action_dim: int,
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleList([make_encoder(), make_encoder()])
        width = self.encoders[0].out_dim + action_dim
        self.heads = nn.ModuleList(
            [mlp([width, *hidden_sizes, 1]), mlp([width, *hidden_sizes, 1])]
        )

    def encode(self, features: Tensor, account: Tensor) -> list[Tensor]:
        """Return each critic's state encoding [B, D]."""
        return [encoder(features, account) for encoder in self.encoders]

    def heads_at(self, encodings: list[Tensor], action: Tensor) -> Tensor:
        """Return Q values [2, B] at ``action`` [B, A] from state encodings."""
        return torch.stack(
            [
                head(torch.cat([encoding, action], dim=-1)).squeeze(-1)
                for head, encoding in zip(self.heads, encodings, strict=True)
            ]
        )

    def forward(self, features: Tensor, account: Tensor, action: Tensor) -> Tensor:
        """Return Q values [2, B] of both critics."""
        return self.heads_at(self.encode(features, account), action)


def build_networks(
    encoder_config: dict[str, Any],
    hidden_sizes: Sequence[int],
    lookback: int,
    n_features: int,
    action_dim: int = 1,
) -> tuple[Actor, TwinCritic]:
    """Build the actor and twin critics, each network with its own encoder.

    ``encoder_config`` keys: ``kind`` (default ``mlp``), ``hidden``, ``layers``,
    ``heads`` (see :class:`WindowEncoder`).
    """
    options = dict(encoder_config)
    kind = options.pop("kind", "mlp")
    unknown = set(options) - {"hidden", "layers", "heads"}
    if unknown:
        raise ConfigError(
            f"unknown encoder keys {sorted(unknown)}", "use kind, hidden, layers, heads"
        )

    def make_encoder() -> WindowEncoder:
        return WindowEncoder(kind, lookback, n_features, **options)

    actor = Actor(make_encoder(), hidden_sizes, action_dim)
    critic = TwinCritic(make_encoder, hidden_sizes, action_dim)
    return actor, critic
