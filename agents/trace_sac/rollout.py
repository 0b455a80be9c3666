"""Lockstep rollouts of a Trace-SAC policy over every segment of a crypto env.

One copy of the env runs per segment, and the policy acts on all active copies
as one batch, so evaluation and value diagnostics cost one forward pass per bar
rather than one per bar and segment.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from finrl_lab.agents.trace_sac.agent import TraceSAC
from finrl_lab.agents.trace_sac.networks import squashed_log_prob
from finrl_lab.envs.crypto import CryptoTradingEnv


@dataclass
class SegmentRollout:
    """What one episode over one segment recorded, step by step (S steps).

    ``values`` [S + 1] is wealth from the segment's start; ``rewards``,
    ``log_pi`` (of the action taken), ``q`` (min of the online critics at the
    action taken), ``turnover`` and ``positions`` are [S]; ``terminated`` is True
    when the episode ended by ruin.
    """

    values: np.ndarray
    rewards: np.ndarray
    log_pi: np.ndarray
    q: np.ndarray
    turnover: np.ndarray
    positions: np.ndarray
    terminated: bool


@torch.no_grad()
def rollout_segments(
    agent: TraceSAC,
    env: CryptoTradingEnv,
    *,
    deterministic: bool,
    seed: int = 0,
    with_q: bool = False,
) -> list[SegmentRollout]:
    """Run the policy once from the start of every segment of ``env`` to its end.

    :param deterministic: act with tanh of the mean (evaluation) or sample
        (value diagnostics).
    :param seed: seeds the torch generator used for sampling.
    :param with_q: also record the critics' estimates (one more forward pass).
    """
    envs = [copy.copy(env) for _ in env.segments]
    observations = [e.reset(options={"segment": i})[0] for i, e in enumerate(envs)]
    records: list[dict[str, list]] = [
        {k: [] for k in ("values", "rewards", "log_pi", "q", "turnover", "pos")}
        for _ in envs
    ]
    for record, e in zip(records, envs, strict=True):
        record["values"].append(e.value)
    terminated = [False] * len(envs)
    active = list(range(len(envs)))
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    while active:
        features = torch.as_tensor(
            np.stack([observations[i]["features"] for i in active]), device=agent.device
        )
        account = torch.as_tensor(
            np.stack([observations[i]["account"] for i in active]), device=agent.device
        )
        dist = agent.actor.distribution(features, account)
        if deterministic:
            u = dist.mean
        else:
            noise = torch.randn(
                dist.mean.shape, generator=generator, device=agent.device
            )
            u = dist.mean + dist.stddev * noise
        log_pi = squashed_log_prob(dist, u).cpu().numpy()
        actions = torch.tanh(u)
        q = None
        if with_q:
            q = agent.critic(features, account, actions).min(0)[0].cpu().numpy()
        actions = actions.cpu().numpy()
        still_active = []
        for j, i in enumerate(active):
            obs, reward, term, trunc, info = envs[i].step(actions[j])
            observations[i] = obs
            record = records[i]
            record["values"].append(info["value"] if not term else 0.0)
            record["rewards"].append(reward)
            record["log_pi"].append(log_pi[j])
            record["q"].append(np.nan if q is None else q[j])
            record["turnover"].append(info["turnover"])
            record["pos"].append(info["target_position"])
            terminated[i] = term
            if not (term or trunc):
                still_active.append(i)
        active = still_active
    return [
        SegmentRollout(
            values=np.asarray(r["values"], float),
            rewards=np.asarray(r["rewards"], float),
            log_pi=np.asarray(r["log_pi"], float),
            q=np.asarray(r["q"], float),
            turnover=np.asarray(r["turnover"], float),
            positions=np.asarray(r["pos"], float),
            terminated=terminated[i],
        )
        for i, r in enumerate(records)
    ]


def chain_values(paths: list[np.ndarray]) -> np.ndarray:
    """Join value paths of consecutive segments into one path starting at 1.

    Each path is rescaled to start where the previous one ended, so the result
    compounds the per-segment growth in segment order.
    """
    chained = [np.array([1.0])]
    level = 1.0
    for path in paths:
        growth = path[1:] / path[0]
        chained.append(level * growth)
        level = level * growth[-1] if len(growth) else level
    return np.concatenate(chained)
