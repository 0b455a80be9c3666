"""EarnMore's network, policy, masks, replay and training episodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from finrl_lab.agents.earnmore.episodes import TrainingEpisodes
from finrl_lab.agents.earnmore.masks import sample_mask_ratios, sample_visible
from finrl_lab.agents.earnmore.model import EarnMoreModel, gather_windows
from finrl_lab.agents.earnmore.policy import Actor, reweight
from finrl_lab.agents.earnmore.replay import IndexReplay
from finrl_lab.agents.earnmore.settings import EarnMoreSettings
from finrl_lab.errors import ConfigError
from finrl_lab.ledger import simulate

FEATURES = ["f0", "f1", "f2", "f3", "weekday", "day", "month"]
N_STOCKS, LOOKBACK = 7, 10


def small_model(seed: int = 0, **changes) -> EarnMoreModel:
    torch.manual_seed(seed)
    settings = EarnMoreSettings(dim=16, decoder_dim=16, hidden=16, heads=4, **changes)
    return EarnMoreModel(FEATURES, N_STOCKS, settings).eval()


def random_windows(batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    windows = torch.randn(batch, N_STOCKS, LOOKBACK, len(FEATURES), generator=generator)
    windows[..., 4] = 2.0  # weekday
    windows[..., 5] = 17.0  # day of month
    windows[..., 6] = 5.0  # month
    return windows


def masks(batch: int) -> torch.Tensor:
    visible = torch.zeros(batch, N_STOCKS, dtype=torch.bool)
    visible[0, [0, 3]] = True
    visible[1, [1, 2, 4, 5, 6]] = True
    if batch > 2:
        visible[2, :] = True
    return visible


def uniform_weights(batch: int) -> torch.Tensor:
    return torch.full((batch, N_STOCKS + 1), 1.0 / (N_STOCKS + 1))


def test_masked_stocks_get_exactly_zero_weight():
    model = small_model()
    visible = masks(3)
    weights = model.portfolio_weights(random_windows(3), visible, uniform_weights(3))
    assert torch.all(weights[:, 1:][~visible] == 0.0)
    assert torch.all(weights[:, 1:][visible] > 0.0)
    assert torch.allclose(weights.sum(dim=1), torch.ones(3))


def test_representation_ignores_masked_prices():
    model = small_model()
    visible = masks(3)
    windows = random_windows(3)
    changed = windows.clone()
    noise = torch.randn_like(changed) * 1e3
    changed[~visible] = changed[~visible] + noise[~visible]
    with torch.no_grad():
        rho = model.representation(windows, visible)
        rho_changed = model.representation(changed, visible)
    assert torch.allclose(rho, rho_changed, atol=1e-6)


def test_representation_reads_visible_prices():
    model = small_model()
    visible = masks(3)
    windows = random_windows(3)
    changed = windows.clone()
    changed[0, 0, :, :4] += 1.0  # stock 0 is visible in sample 0
    with torch.no_grad():
        rho = model.representation(windows, visible)
        rho_changed = model.representation(changed, visible)
    assert not torch.allclose(rho[0], rho_changed[0], atol=1e-4)
    assert torch.equal(rho[1:], rho_changed[1:])


def test_batch_with_mixed_masks_matches_one_by_one():
    model = small_model()
    visible = masks(3)
    windows = random_windows(3)
    weights = uniform_weights(3)
    with torch.no_grad():
        rho = model.representation(windows, visible)
        batch = model.portfolio_weights(windows, visible, weights)
        for i in range(3):
            one = slice(i, i + 1)
            rho_one = model.representation(windows[one], visible[one])
            weights_one = model.portfolio_weights(
                windows[one], visible[one], weights[one]
            )
            assert torch.allclose(rho[one], rho_one, atol=1e-5)
            assert torch.allclose(batch[one], weights_one, atol=1e-6)


def test_reconstruction_counts_masked_stocks_only():
    model = small_model().train()
    visible = masks(3)
    windows = random_windows(3)
    available = torch.ones_like(visible)
    loss = model.representation.reconstruction_loss(windows, visible, available)
    assert loss.item() > 0.0
    # With every stock visible nothing is masked, so nothing is reconstructed.
    everyone = torch.ones_like(visible)
    empty = model.representation.reconstruction_loss(windows, everyone, available)
    assert empty.item() == 0.0
    loss.backward()
    assert model.representation.mask_token.grad is not None
    assert model.representation.mask_token.grad.abs().sum() > 0


def test_reweight_matches_hand_computed_softmax():
    logits = torch.tensor([[0.0, 0.5 * math.log(3.0), 5.0]])
    allowed = torch.tensor([[True, True, False]])
    weights = reweight(logits, 0.5, allowed)
    assert torch.allclose(weights, torch.tensor([[0.25, 0.75, 0.0]]))
    assert weights[0, 2].item() == 0.0


def test_lower_temperature_concentrates_weights():
    logits = torch.tensor([[0.1, 0.3, 0.2, 0.0]])
    sharp = reweight(logits, 0.01)
    flat = reweight(logits, 10.0)
    assert sharp[0, 1] > 0.99
    assert flat.max() - flat.min() < 0.01


def test_log_prob_is_taken_at_the_sample():
    torch.manual_seed(0)
    actor = Actor(8, 8)
    rho = torch.randn(4, 5, 8)
    weights = torch.full((4, 5), 0.2)
    logits, log_prob = actor.sample(rho, weights)
    mean, log_std = actor(rho, weights)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(logits)
    assert torch.allclose(log_prob, expected.sum(dim=1), atol=1e-5)
    at_mean = torch.distributions.Normal(mean, log_std.exp()).log_prob(mean)
    assert not torch.allclose(log_prob, at_mean.sum(dim=1), atol=1e-3)


def test_encoder_attention_has_the_configured_heads():
    model = small_model()
    layer = model.representation.encoder.blocks.layers[0]
    assert layer.self_attn.num_heads == 4
    assert layer.self_attn.head_dim == 4


def test_mask_ratios_stay_in_truncation():
    rng = np.random.default_rng(0)
    ratios = sample_mask_ratios(rng, 20_000, 0.7, 0.1, 0.6, 0.8)
    assert ratios.min() >= 0.6
    assert ratios.max() <= 0.8
    assert abs(ratios.mean() - 0.7) < 0.005


def test_sample_visible_keeps_available_subset():
    rng = np.random.default_rng(0)
    available = np.ones((50, 28), dtype=bool)
    available[:, :3] = False
    ratios = np.full(50, 0.7)
    visible = sample_visible(rng, available, ratios)
    assert not visible[:, :3].any()
    assert np.all(visible.sum(axis=1) == int(25 * 0.3))
    # Different rows get different subsets.
    assert len({tuple(row) for row in visible}) > 40


def test_gather_windows_reads_the_lookback():
    features = torch.arange(20 * 3 * 2, dtype=torch.float32).reshape(20, 3, 2)
    windows = gather_windows(features, torch.tensor([9, 15]), 4)
    assert windows.shape == (2, 3, 4, 2)
    assert torch.equal(windows[0], features[6:10].permute(1, 0, 2))
    assert torch.equal(windows[1, 2, -1], features[15, 2])


def test_replay_stores_indices_not_windows():
    replay = IndexReplay(capacity=1000, n_stocks=500)
    # Day, mask and three weight vectors: about 6.5 kB per transition.
    assert replay.nbytes() < 1000 * 7_000
    rng = np.random.default_rng(0)
    rows = 1200
    replay.add(
        np.arange(rows),
        rng.random((rows, 500)) < 0.3,
        np.zeros((rows, 501)),
        np.zeros((rows, 501)),
        np.arange(rows, dtype=float),
        np.zeros((rows, 501)),
    )
    assert replay.size == 1000
    batch = replay.sample(rng, 64)
    # The ring buffer overwrote the 200 oldest transitions.
    assert batch["day"].min() >= 200
    assert np.array_equal(batch["reward"], batch["day"].astype(np.float32))


def test_episode_rewards_follow_the_ledger():
    rng = np.random.default_rng(3)
    steps, n = 6, 3
    relatives = rng.uniform(0.95, 1.05, size=(steps + 1, n))
    available = np.ones((steps + 2, n), dtype=bool)
    settings = EarnMoreSettings(n_envs=1, episode_length=steps, masking=False)
    episodes = TrainingEpisodes(relatives, available, 0, steps, settings, 0.001, rng)
    assert episodes.day[0] == 0
    targets = rng.dirichlet(np.ones(n + 1), size=steps)
    rewards = []
    for target in targets:
        reward, _ = episodes.step(target[None])
        rewards.append(reward[0])
    path = simulate(targets, relatives[:steps], 0.001)
    expected = np.log(path.values[1:] / path.values[:-1]) * settings.reward_scale
    assert np.allclose(rewards, expected)


def test_episode_holds_masked_weight_as_cash():
    rng = np.random.default_rng(0)
    relatives = np.full((10, 2), 2.0)
    available = np.ones((11, 2), dtype=bool)
    settings = EarnMoreSettings(n_envs=1, episode_length=5)
    episodes = TrainingEpisodes(relatives, available, 0, 9, settings, 0.0, rng)
    episodes.pool[:] = [[True, False]]
    reward, drifted = episodes.step(np.array([[0.0, 0.5, 0.5]]))
    # Half in the pool's stock doubles; the other half sits in cash.
    assert np.isclose(reward[0], np.log(1.5) * settings.reward_scale)
    assert np.allclose(drifted, [[0.5 / 1.5, 1.0 / 1.5, 0.0]])


def test_settings_reject_bad_values():
    with pytest.raises(ConfigError, match="temperature"):
        EarnMoreSettings.from_dict({"temperature": 0})
    with pytest.raises(ConfigError, match="mask ratios"):
        EarnMoreSettings.from_dict({"mask_ratio_min": 0.9})
    with pytest.raises(ConfigError, match="unknown EarnMore setting"):
        EarnMoreSettings.from_dict({"temprature": 0.1})
    settings = EarnMoreSettings.from_dict({"reweighting": False})
    assert settings.effective_temperature == 1.0
