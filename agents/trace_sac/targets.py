"""Soft Retrace targets over n-step chunks, and the trace coefficients of its variants.

Retrace (Munos et al. 2016) is applied to the soft value Q - alpha log pi and
converted back to Q, so the entropy terms of logged actions cancel. For a chunk
of transitions k = 0..n-1 with rewards r_k, termination flags d_k and chunk-end
flags e_k (the chunk stops after step k: its last step, an episode end, or a gap
in the replay):

    G_k = r_k + gamma (1 - d_k) [ V_{k+1}
                                  + (1 - e_k) c_{k+1} (G_{k+1} - Q(s_{k+1}, a_{k+1})) ]

where V_{k+1} = Q'(s_{k+1}, a~) - alpha log pi(a~ | s_{k+1}) with a~ ~ pi, Q' is
the target critic, and a_{k+1} is the logged action. With n = 1 or c = 0 this is
the SAC target; with pi = mu and c = 1 it is the n-step soft return.
"""

from __future__ import annotations

import torch
from torch import Tensor

from finrl_lab.errors import ConfigError

TRACES = ("retrace", "qlambda", "nstep", "treebackup", "is")
# Log importance ratios are clipped here for the unclipped ``is`` trace so that
# exp() stays finite in float32.
MAX_LOG_RATIO = 20.0


def trace_coefficients(
    kind: str,
    log_pi: Tensor,
    log_mu: Tensor,
    lam: float = 1.0,
    c_bar: float = 1.0,
) -> Tensor:
    """Return the trace coefficients c at logged actions, same shape as ``log_pi``.

    :param kind: ``retrace`` (lam * min(c_bar, pi/mu)), ``qlambda`` (lam),
        ``nstep`` (1: the uncorrected n-step return), ``treebackup``
        (lam * min(c_bar, pi(a)), a density of the squashed action) or ``is``
        (pi/mu, unclipped).
    :param log_pi: log pi(a_k | s_k) under the current policy at the logged action.
    :param log_mu: log mu(a_k | s_k) stored at acting time.
    """
    if kind == "retrace":
        ratio = torch.exp(torch.clamp(log_pi - log_mu, max=MAX_LOG_RATIO))
        return lam * torch.clamp(ratio, max=c_bar)
    if kind == "qlambda":
        return torch.full_like(log_pi, lam)
    if kind == "nstep":
        return torch.ones_like(log_pi)
    if kind == "treebackup":
        # NOTE: for continuous actions pi(a) is a density that can exceed 1, so it
        # is clipped at c_bar; tree-backup is defined for discrete actions.
        density = torch.exp(torch.clamp(log_pi, max=MAX_LOG_RATIO))
        return lam * torch.clamp(density, max=c_bar)
    if kind == "is":
        return torch.exp(torch.clamp(log_pi - log_mu, max=MAX_LOG_RATIO))
    raise ConfigError(f"unknown trace {kind!r}", f"use one of {', '.join(TRACES)}")


def soft_retrace_returns(
    rewards: Tensor,
    terminated: Tensor,
    chunk_end: Tensor,
    next_value: Tensor,
    next_q_logged: Tensor,
    next_trace: Tensor,
    gamma: float,
) -> Tensor:
    """Compute the targets G_k of every step of a batch of chunks.

    Every argument is [B, n] and float; entry k of the ``next_*`` tensors belongs
    to state s_{k+1} (the state after step k). Entries past a chunk end are ignored.

    :param rewards: r_k.
    :param terminated: d_k, 1 where the episode terminated at step k.
    :param chunk_end: e_k, 1 where the chunk stops after step k (forced at k = n-1).
    :param next_value: V_{k+1}, the soft value of the state after step k.
    :param next_q_logged: Q'(s_{k+1}, a_{k+1}) at the next logged action.
    :param next_trace: c_{k+1} at the next logged action.
    :return: G [B, n]; G[:, 0] trains Q(s_0, a_0).
    """
    n = rewards.shape[1]
    not_done = 1.0 - terminated
    carry = 1.0 - chunk_end
    returns = torch.empty_like(rewards)
    g = rewards[:, n - 1] + gamma * not_done[:, n - 1] * next_value[:, n - 1]
    returns[:, n - 1] = g
    for k in range(n - 2, -1, -1):
        correction = carry[:, k] * next_trace[:, k] * (g - next_q_logged[:, k])
        g = rewards[:, k] + gamma * not_done[:, k] * (next_value[:, k] + correction)
        returns[:, k] = g
    return returns
