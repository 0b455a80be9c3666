"""Soft Retrace targets: a hand-computed case, reductions to SAC and n-step returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal

from finrl_lab.agents.trace_sac.agent import TraceSAC, TraceSACConfig
from finrl_lab.agents.trace_sac.networks import squashed_log_prob
from finrl_lab.agents.trace_sac.replay import ChunkBatch, ChunkReplay
from finrl_lab.agents.trace_sac.targets import (
    soft_retrace_returns,
    trace_coefficients,
)

LOOKBACK, FEATURES = 4, 3


class _MeanNormal(Normal):
    """A Normal whose sample() returns its mean."""

    def sample(self, sample_shape=()):
        return self.mean.expand(self._extended_shape(sample_shape))


def test_retrace_hand_computed():
    # gamma 0.5, n = 3: G2 = 3 + 0.5*30 = 18;
    # G1 = 2 + 0.5*(20 + 0.25*(18 - 21)) = 11.625;
    # G0 = 1 + 0.5*(10 + 0.5*(11.625 - 11)) = 6.15625.
    returns = soft_retrace_returns(
        rewards=torch.tensor([[1.0, 2.0, 3.0]]),
        terminated=torch.zeros(1, 3),
        chunk_end=torch.tensor([[0.0, 0.0, 1.0]]),
        next_value=torch.tensor([[10.0, 20.0, 30.0]]),
        next_q_logged=torch.tensor([[11.0, 21.0, 99.0]]),
        next_trace=torch.tensor([[0.5, 0.25, 99.0]]),
        gamma=0.5,
    )
    assert returns[0, 2].item() == pytest.approx(18.0)
    assert returns[0, 1].item() == pytest.approx(11.625)
    assert returns[0, 0].item() == pytest.approx(6.15625)


def test_retrace_stops_at_termination_and_chunk_end():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[10.0, 20.0, 30.0]])
    q_logged = torch.tensor([[11.0, 21.0, 0.0]])
    traces = torch.ones(1, 3)
    terminated = torch.tensor([[0.0, 1.0, 0.0]])
    ended = soft_retrace_returns(
        rewards,
        terminated,
        torch.tensor([[0.0, 1.0, 0.0]]),
        values,
        q_logged,
        traces,
        0.5,
    )
    # Step 1 terminates: G1 = r1; G0 = 1 + 0.5*(10 + 1*(2 - 11)) = 1.5.
    assert ended[0, 1].item() == pytest.approx(2.0)
    assert ended[0, 0].item() == pytest.approx(1.5)
    cut = soft_retrace_returns(
        rewards,
        torch.zeros(1, 3),
        torch.tensor([[1.0, 0.0, 0.0]]),
        values,
        q_logged,
        traces,
        0.5,
    )
    # The chunk ends after step 0 (truncation or replay gap): bootstrap on V1.
    assert cut[0, 0].item() == pytest.approx(1.0 + 0.5 * 10.0)


@settings(max_examples=200, deadline=None)
@given(
    log_pi=st.lists(st.floats(-30, 30), min_size=1, max_size=16),
    shift=st.floats(-30, 30),
    lam=st.floats(0.0, 1.0),
    c_bar=st.floats(0.1, 5.0),
)
def test_trace_never_exceeds_c_bar(log_pi, shift, lam, c_bar):
    pi = torch.tensor(log_pi)
    mu = pi + shift
    for kind in ("retrace", "treebackup"):
        c = trace_coefficients(kind, pi, mu, lam, c_bar)
        assert torch.all(c <= lam * c_bar + 1e-6)
        assert torch.all(c >= 0)


def test_trace_variants_values():
    log_pi = torch.log(torch.tensor([0.5, 2.0, 4.0]))
    log_mu = torch.log(torch.tensor([1.0, 1.0, 1.0]))
    retrace = trace_coefficients("retrace", log_pi, log_mu, lam=0.8, c_bar=1.0)
    assert torch.allclose(retrace, torch.tensor([0.4, 0.8, 0.8]))
    ratio = trace_coefficients("is", log_pi, log_mu)
    assert torch.allclose(ratio, torch.tensor([0.5, 2.0, 4.0]))
    assert torch.all(trace_coefficients("qlambda", log_pi, log_mu, lam=0.3) == 0.3)
    assert torch.all(trace_coefficients("nstep", log_pi, log_mu) == 1.0)
    tree = trace_coefficients("treebackup", log_pi, log_mu, lam=1.0, c_bar=1.0)
    assert torch.allclose(tree, torch.tensor([0.5, 1.0, 1.0]))


def _agent(n_step: int, trace: str = "retrace", lam: float = 1.0) -> TraceSAC:
    torch.manual_seed(0)
    config = TraceSACConfig(
        trace=trace, n_step=n_step, lam=lam, batch_size=8, hidden_sizes=[16]
    )
    agent = TraceSAC(config, LOOKBACK, FEATURES)
    # Make the policy's "samples" its mean, so targets are deterministic and the
    # sampled action equals the logged one in the on-policy batches below.
    distribution = agent.actor.distribution

    def mean_sampling(features, account):
        dist = distribution(features, account)
        return _MeanNormal(dist.mean, dist.stddev)

    agent.actor.distribution = mean_sampling
    return agent


def _on_policy_batch(agent: TraceSAC, n: int, batch: int = 5) -> ChunkBatch:
    """Chunks whose logged actions are the policy's own (pi = mu)."""
    generator = torch.Generator().manual_seed(1)
    states = torch.randn(batch, n + 1, LOOKBACK, FEATURES, generator=generator)
    accounts = torch.randn(batch, n + 1, 2, generator=generator)
    with torch.no_grad():
        dist = agent.actor.distribution(states.flatten(0, 1), accounts.flatten(0, 1))
        u = dist.mean
        log_mu = squashed_log_prob(dist, u).view(batch, n + 1)
    u = u.view(batch, n + 1, 1)
    return ChunkBatch(
        features=states[:, :n],
        account=accounts[:, :n],
        u=u[:, :n],
        log_mu=log_mu[:, :n],
        rewards=torch.randn(batch, n, generator=generator),
        terminated=torch.zeros(batch, n),
        chunk_end=torch.nn.functional.one_hot(torch.full((batch,), n - 1), n).float(),
        valid=torch.ones(batch, n),
        next_features=states[:, 1:],
        next_account=accounts[:, 1:],
    )


def _first_step(batch: ChunkBatch) -> ChunkBatch:
    return ChunkBatch(
        features=batch.features[:, :1],
        account=batch.account[:, :1],
        u=batch.u[:, :1],
        log_mu=batch.log_mu[:, :1],
        rewards=batch.rewards[:, :1],
        terminated=batch.terminated[:, :1],
        chunk_end=torch.ones_like(batch.rewards[:, :1]),
        valid=batch.valid[:, :1],
        next_features=batch.next_features[:, :1],
        next_account=batch.next_account[:, :1],
    )


def test_n1_target_is_sac_target():
    agent = _agent(1)
    batch = _first_step(_on_policy_batch(agent, 1))
    targets = agent.compute_targets(batch)[:, 0]
    with torch.no_grad():
        s1, acc1 = batch.next_features[:, 0], batch.next_account[:, 0]
        dist = agent.actor.distribution(s1, acc1)
        u = dist.mean
        q = agent.critic_target(s1, acc1, torch.tanh(u)).min(0)[0]
        value = q - agent.alpha * squashed_log_prob(dist, u)
        expected = batch.rewards[:, 0] + agent.config.gamma * value
    assert torch.allclose(targets, expected, rtol=1e-5, atol=1e-4)


def test_zero_trace_reduces_to_one_step():
    agent = _agent(4, trace="qlambda", lam=0.0)
    batch = _on_policy_batch(agent, 4)
    chunked = agent.compute_targets(batch)[:, 0]
    one_step = agent.compute_targets(_first_step(batch))[:, 0]
    assert torch.allclose(chunked, one_step, rtol=1e-5, atol=1e-4)


def test_on_policy_retrace_is_nstep_return():
    n = 4
    agent = _agent(n, trace="retrace", lam=1.0)
    batch = _on_policy_batch(agent, n)
    targets = agent.compute_targets(batch)[:, 0]
    gamma, alpha = agent.config.gamma, agent.alpha
    with torch.no_grad():
        last_s, last_acc = batch.next_features[:, -1], batch.next_account[:, -1]
        dist = agent.actor.distribution(last_s, last_acc)
        q_last = agent.critic_target(last_s, last_acc, torch.tanh(dist.mean)).min(0)[0]
        bootstrap = q_last - alpha * squashed_log_prob(dist, dist.mean)
    # Sum of gamma^k r_k, minus alpha gamma^k log pi(a_k) for k >= 1, plus gamma^n V.
    expected = gamma**n * bootstrap
    for k in range(n):
        expected = expected + gamma**k * batch.rewards[:, k]
        if k >= 1:
            expected = expected - alpha * gamma**k * batch.log_mu[:, k]
    assert torch.allclose(targets, expected, rtol=1e-4, atol=1e-3)


def test_replay_chunks_stop_at_episode_end():
    replay = ChunkReplay(10, LOOKBACK, FEATURES)
    obs = {
        "features": np.zeros((LOOKBACK, FEATURES), np.float32),
        "account": np.zeros(2, np.float32),
    }
    for i in range(6):
        replay.add(obs, np.zeros(1), 0.0, float(i), False, i == 2, obs)
    batch = replay.sample(200, 4, np.random.default_rng(0))
    first = batch.rewards[:, 0].long()
    valid_steps = batch.valid.sum(1).long()
    for start, steps in zip(first.tolist(), valid_steps.tolist(), strict=True):
        # Episode ends after reward 2; the newest slot is 5.
        expected = min(4, 3 - start) if start <= 2 else min(4, 6 - start)
        assert steps == expected
    assert torch.all(batch.chunk_end.sum(1) == 1)
