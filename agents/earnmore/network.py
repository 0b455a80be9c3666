"""EarnMore's maskable stock representation: stock tokens, encoder, reconstruction.

Shapes: B samples, N stocks in the global pool (GSP), D days of lookback, F
features per day, E the token width. ``visible`` is a bool mask [B, N] that is
True for stocks inside the customizable pool (CSP) and with a bar at the
decision day; every other stock is replaced by one shared learnable mask token.

Masked stocks never reach the encoder's attention: their tokens are zeroed and
excluded as keys with a per-sample key padding mask, so each sample in a batch
can have its own mask and the representation of a pool does not depend on the
prices of stocks outside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

# Calendar columns and the number of values each can take (weekday 0-6, day of
# month 1-31, month 1-12); EarnMore embeds them with fixed sinusoidal tables.
CALENDAR_SIZES = {"weekday": 7, "day": 32, "month": 13}


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Return the fixed sine/cosine position table [length, dim] of Transformers."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    scale = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * scale)
    table[:, 1::2] = torch.cos(position * scale)[:, : dim // 2]
    return table


class StockTokenizer(nn.Module):
    """One token per stock: a linear map of its whole lookback window.

    EarnMore's token is a circular Conv1d (kernel 3) over the days followed by
    the mean over days. With circular padding every day meets every kernel tap
    once, so that token equals one linear map of the window's mean over days
    and ignores the order of the days. Here the flattened window [D * Fv] is
    mapped instead, which keeps the order at a similar cost. A fixed sinusoidal
    embedding of the decision day's calendar columns is added to every token.

    :param feature_names: names of the F feature columns; ``weekday``, ``day``
        and ``month`` (raw integers) are embedded, the rest are mapped.
    :param lookback: D, days per window.
    :param dim: E, the token width.
    """

    def __init__(self, feature_names: Sequence[str], lookback: int, dim: int) -> None:
        super().__init__()
        names = list(feature_names)
        calendar = [i for i, n in enumerate(names) if n in CALENDAR_SIZES]
        values = [i for i, n in enumerate(names) if n not in CALENDAR_SIZES]
        if not values:
            raise ValueError("the feature set has no non-calendar column")
        self.register_buffer("value_columns", torch.tensor(values), persistent=False)
        # Column index and buffer name of each calendar feature; python ints, so
        # the forward pass needs no device-to-host copy.
        self._calendar = [(i, f"calendar_{names[i]}") for i in calendar]
        for i, buffer in self._calendar:
            table = sinusoid_table(CALENDAR_SIZES[names[i]], dim)
            self.register_buffer(buffer, table, persistent=False)
        self.project = nn.Linear(lookback * len(values), dim)

    @property
    def n_values(self) -> int:
        """Number of non-calendar features per day, the reconstruction target width."""
        return int(self.value_columns.numel())

    def values(self, windows: torch.Tensor) -> torch.Tensor:
        """Return the non-calendar columns of windows [B, N, D, F] -> [B, N, D, Fv]."""
        return windows.index_select(-1, self.value_columns)

    def forward(self, windows: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Map windows [B, N, D, F] to tokens [B, N, E].

        The calendar is read from the visible stocks only (a stock without a bar
        has zeros there), so masked stocks cannot change any token.
        """
        tokens = self.project(self.values(windows).flatten(2))
        for column, buffer in self._calendar:
            table = getattr(self, buffer)
            today = windows[:, :, -1, column].masked_fill(~visible, -1.0)
            index = today.amax(dim=1).round().long().clamp(0, table.shape[0] - 1)
            tokens = tokens + table[index][:, None, :]
        return tokens


class MaskableEncoder(nn.Module):
    """Pre-LayerNorm Transformer over a [CLS] token and the visible stock tokens.

    :param n_stocks: N, the size of the global pool; each stock has a learnable
        position embedding, so the stock order is fixed at training time.
    :param dim: E, the token width.
    :param depth: number of Transformer blocks.
    :param heads: attention heads; ``dim`` must divide by it.
    :param mlp_ratio: hidden width of each block's MLP as a multiple of ``dim``.
    """

    def __init__(
        self, n_stocks: int, dim: int, depth: int, heads: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, n_stocks + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            int(dim * mlp_ratio),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Encode tokens [B, N, E] seen through ``visible`` [B, N] -> [B, N + 1, E].

        Row 0 is the [CLS] output. Rows of masked stocks are outputs that read
        only visible stocks; callers replace them.
        """
        tokens = torch.where(visible[..., None], tokens, torch.zeros_like(tokens))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.position
        keep_cls = torch.zeros_like(visible[:, :1])
        padding = torch.cat([keep_cls, ~visible], dim=1)
        return self.norm(self.blocks(x, src_key_padding_mask=padding))


class MaskableRepresentation(nn.Module):
    """The state of EarnMore: encoded visible stocks plus a mask token elsewhere.

    :meth:`forward` returns rho [B, N + 1, E_dec]: row 0 comes from [CLS] (it
    carries the state of the pool as a whole and drives the cash weight), row
    i + 1 is stock i's projected encoding if visible, else the shared mask token;
    decoder position embeddings are added to all rows.

    :meth:`reconstruction_loss` runs one Transformer block over rho and predicts
    each masked stock's normalised window of non-calendar features; the loss is
    the mean squared error over the masked stocks that have a bar.

    :param feature_names: the F feature columns of each window.
    :param n_stocks: N, the global pool's size.
    :param lookback: D, days per window.
    :param dim: E, encoder width; ``decoder_dim`` is E_dec.
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        n_stocks: int,
        lookback: int,
        dim: int = 64,
        decoder_dim: int = 64,
        depth: int = 1,
        heads: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.lookback = lookback
        self.tokenizer = StockTokenizer(feature_names, lookback, dim)
        self.encoder = MaskableEncoder(n_stocks, dim, depth, heads, mlp_ratio)
        self.to_decoder = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_position = nn.Parameter(
            torch.randn(1, n_stocks + 1, decoder_dim) * 0.02
        )
        nn.init.normal_(self.mask_token, std=0.02)
        decoder_layer = nn.TransformerEncoderLayer(
            decoder_dim,
            heads,
            int(decoder_dim * mlp_ratio),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerEncoder(
            decoder_layer, 1, enable_nested_tensor=False
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.predict = nn.Linear(decoder_dim, lookback * self.tokenizer.n_values)

    def forward(self, windows: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Return rho [B, N + 1, E_dec] for windows [B, N, D, F] and visible [B, N]."""
        tokens = self.tokenizer(windows, visible)
        encoded = self.to_decoder(self.encoder(tokens, visible))
        stocks = torch.where(
            visible[..., None], encoded[:, 1:], self.mask_token.to(encoded.dtype)
        )
        return torch.cat([encoded[:, :1], stocks], dim=1) + self.decoder_position

    def reconstruction_loss(
        self,
        windows: torch.Tensor,
        visible: torch.Tensor,
        available: torch.Tensor,
        rho: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the MSE of predicted windows over stocks masked but available.

        :param windows: normalised windows [B, N, D, F].
        :param visible: the training mask [B, N], True where a stock is kept.
        :param available: [B, N], True where a stock has a bar, so that its
            window is a valid target.
        :param rho: ``forward(windows, visible)`` if already computed.
        """
        if rho is None:
            rho = self(windows, visible)
        decoded = self.decoder_norm(self.decoder(rho))
        predicted = self.predict(decoded[:, 1:])  # [B, N, D * Fv]
        target = self.tokenizer.values(windows).flatten(2)
        error = (predicted - target).pow(2).mean(dim=-1)
        weight = (available & ~visible).to(error.dtype)
        return (error * weight).sum() / weight.sum().clamp(min=1.0)
