"""Entry-wise shrinkage of gradients against heavy-tailed noise.

Each shrinkage function psi(g; s) maps a gradient entry g with noise scale s to a
tamed entry. All of them are odd, never grow an entry (|psi(g)| <= |g|), stay close
to the identity for |g/s| below about 2, and are homogeneous:
psi(c*g; c*s) = c*psi(g; s) for c > 0.

Modes:

- ``bayes``: g * w(z) with z = g/s and
  w(z) = 1 / (1 + A*exp(z^2/2) / (1 + z^2/kappa^2)),
  A = (eps/(1-eps)) * sqrt(2/pi) / kappa. This is the posterior probability that
  the entry is clean when the noise is Gaussian with a fraction eps
  (``contamination``) of Cauchy outliers of scale kappa*s (``cauchy_scale``), with
  the Gaussian-Cauchy convolution replaced by a plain Cauchy density. It
  redescends to 0 for large z. The arXiv paper 2605.27733 derives a surrogate of
  this kind; only its abstract was available, so this exact form is our reading.
- ``soft``: g / sqrt(1 + (z/lambda)^2), bounded by lambda*s.
- ``tanh``: lambda*s * tanh(g / (lambda*s)).
- ``hard``: clamp(g, -lambda*s, lambda*s), entry-wise clipping.
- ``none``: the identity.

lambda is ``threshold``. The functions work on lists of tensors with foreach ops
and never read a tensor value on the host, so they run on CUDA without a sync.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SHRINK_MODES = ("none", "bayes", "soft", "tanh", "hard")

# exp(z^2/2) overflows float32 near z^2 = 177; the weight is already below 1e-30
# at z^2 = 160 for any contamination above 1e-9, so clamping there changes nothing.
_MAX_Z_SQUARED = 160.0


def bayes_prior_odds(contamination: float, cauchy_scale: float) -> float:
    """Return A = (eps/(1-eps)) * sqrt(2/pi) / kappa, the outlier prior odds term.

    ``contamination`` is the outlier fraction eps in [0, 1); ``cauchy_scale`` is the
    Cauchy scale kappa in units of the noise scale s.
    """
    odds = contamination / (1.0 - contamination)
    return odds * math.sqrt(2.0 / math.pi) / cauchy_scale


def shrink_foreach(
    grads: list[Tensor],
    scales: list[Tensor] | float,
    mode: str,
    threshold: float = 3.0,
    contamination: float = 1e-3,
    cauchy_scale: float = 1.0,
) -> list[Tensor]:
    """Apply psi(g; s) entry-wise to each tensor and return new tensors.

    ``grads`` are tensors of any shape. ``scales`` are tensors broadcastable to
    them (the same shape, or a 0-d or size-1 tensor per matrix), or one positive
    float for all. The inputs are not modified. See the module docstring for the modes.
    """
    if mode not in SHRINK_MODES:
        raise ValueError(f"unknown shrink mode {mode!r}; valid modes: {SHRINK_MODES}")
    if mode == "none" or not grads:
        return [g.clone() for g in grads]

    if mode == "hard":
        if isinstance(scales, float):
            bound = threshold * scales
            return [g.clamp(-bound, bound) for g in grads]
        return clip_foreach(grads, torch._foreach_mul(scales, threshold))

    z = torch._foreach_div(grads, scales)

    if mode == "tanh":
        # lambda*s*tanh(z/lambda) = g * tanh(y)/y with y = z/lambda. The second
        # form stays finite for s = inf, which the first does not.
        torch._foreach_div_(z, threshold)
        ratio = torch._foreach_tanh(z)
        torch._foreach_div_(ratio, z)
        # tanh(y)/y at y = 0 is 0/0; its limit there is 1.
        ratio = [torch.nan_to_num(r, nan=1.0) for r in ratio]
        return torch._foreach_mul(grads, ratio)

    z_squared = torch._foreach_mul(z, z)
    del z
    if mode == "soft":
        torch._foreach_div_(z_squared, threshold * threshold)
        torch._foreach_add_(z_squared, 1.0)
        torch._foreach_sqrt_(z_squared)
        return torch._foreach_div(grads, z_squared)

    # mode == "bayes": divide by 1 + A*exp(z^2/2) / (1 + z^2/kappa^2).
    prior_odds = bayes_prior_odds(contamination, cauchy_scale)
    torch._foreach_clamp_max_(z_squared, _MAX_Z_SQUARED)
    cauchy_density = torch._foreach_div(z_squared, cauchy_scale * cauchy_scale)
    torch._foreach_add_(cauchy_density, 1.0)
    torch._foreach_mul_(z_squared, 0.5)
    torch._foreach_exp_(z_squared)
    torch._foreach_mul_(z_squared, prior_odds)
    torch._foreach_div_(z_squared, cauchy_density)
    torch._foreach_add_(z_squared, 1.0)
    return torch._foreach_div(grads, z_squared)


def shrink_elementwise(
    grad: Tensor,
    scale: Tensor | float,
    mode: str,
    threshold: float = 3.0,
    contamination: float = 1e-3,
    cauchy_scale: float = 1.0,
) -> Tensor:
    """Apply psi(g; s) to one tensor with plain tensor ops, for ``torch.compile``.

    The same arithmetic, step for step, as :func:`shrink_foreach`, whose foreach
    ops inductor runs as separate eager calls (``exp`` and ``tanh`` among them),
    which splits a fused pass in two. ``scale`` broadcasts to ``grad``, in
    gradient units.
    """
    if mode not in SHRINK_MODES:
        raise ValueError(f"unknown shrink mode {mode!r}; valid modes: {SHRINK_MODES}")
    if mode == "none":
        return grad.clone()
    if mode == "hard":
        bound = threshold * scale
        return torch.clamp(grad, min=-bound, max=bound)
    z = grad / scale
    if mode == "tanh":
        # tanh(y)/y with y = z/lambda, and its limit 1 at y = 0 (see above).
        z = z / threshold
        ratio = torch.tanh(z) / z
        # ratio != ratio marks NaN as nan_to_num does, since tanh(y)/y is never
        # infinite, and inductor vectorises it (nan_to_num ran a scalar loop).
        ratio = torch.where(ratio != ratio, 1.0, ratio)
        return grad * ratio
    z_squared = z * z
    if mode == "soft":
        return grad / (z_squared / (threshold * threshold) + 1.0).sqrt()
    prior_odds = bayes_prior_odds(contamination, cauchy_scale)
    z_squared = z_squared.clamp_max(_MAX_Z_SQUARED)
    cauchy_density = z_squared / (cauchy_scale * cauchy_scale) + 1.0
    odds = (z_squared * 0.5).exp() * prior_odds / cauchy_density
    return grad / (odds + 1.0)


def clip_foreach(grads: list[Tensor], bounds: list[Tensor]) -> list[Tensor]:
    """Return clamp(g, -b, b) for each gradient g and its bound b (b >= 0).

    ``bounds`` are tensors broadcastable to the gradients, in gradient units.
    """
    negative_bounds = torch._foreach_neg(bounds)
    return [
        torch.clamp(g, min=low, max=high)
        for g, low, high in zip(grads, negative_bounds, bounds, strict=True)
    ]


def shrink(
    grad: Tensor,
    scale: Tensor | float,
    mode: str,
    threshold: float = 3.0,
    contamination: float = 1e-3,
    cauchy_scale: float = 1.0,
) -> Tensor:
    """Apply psi(g; s) to one tensor; a one-tensor form of :func:`shrink_foreach`."""
    scales = scale if isinstance(scale, float) else [scale]
    return shrink_foreach([grad], scales, mode, threshold, contamination, cauchy_scale)[
        0
    ]
