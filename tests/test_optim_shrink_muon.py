"""ShrinkMuon: reduction to torch's Muon, clipping before orthogonalisation."""

import io

import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz

from finrl_lab.optim import ShrinkMuon


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run this module's small-tensor tests on one torch thread, then restore.

    On a busy 2-core machine, two threads per op made these tests 10x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


NS = (3.4445, -4.775, 2.0315)


def _gradients(steps=8, shape=(16, 24), seed=1, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) * scale for _ in range(steps)]


def _run(factory, grads, shape=(16, 24)):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape))
    optimizer = factory([p])
    for g in grads:
        p.grad = g.clone()
        optimizer.step()
    return p.detach().clone(), optimizer


@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
def test_shrink_none_equals_torch_muon(adjust_lr_fn):
    grads = _gradients()
    options = {"lr": 0.02, "weight_decay": 0.1, "adjust_lr_fn": adjust_lr_fn}
    result, _ = _run(lambda ps: ShrinkMuon(ps, shrink="none", **options), grads)
    reference, _ = _run(lambda ps: torch.optim.Muon(ps, **options), grads)
    assert torch.equal(result, reference)


def test_infinite_threshold_equals_torch_muon():
    grads = _gradients()
    result, _ = _run(lambda ps: ShrinkMuon(ps, lr=0.02, threshold=float("inf")), grads)
    reference, _ = _run(lambda ps: torch.optim.Muon(ps, lr=0.02), grads)
    assert torch.equal(result, reference)


def test_first_step_closed_form():
    g = _gradients(steps=1)[0]
    lr, momentum = 0.02, 0.95
    result, _ = _run(
        lambda ps: ShrinkMuon(ps, lr=lr, weight_decay=0.0, momentum=momentum), [g]
    )
    torch.manual_seed(0)
    start = torch.randn(16, 24)
    # Step 1: buffer = (1-mu) g, Nesterov mix = (1-mu) g (1 + mu) and no clipping.
    mixed = (1 - momentum) * g * (1 + momentum)
    expected = start - lr * _zeropower_via_newtonschulz(mixed, NS, 5, 1e-7).float()
    torch.testing.assert_close(result, expected)


# The "rms" scale is left out on purpose: one outlier of 1e4 in 32 x 32 entries
# raises the RMS to about 300, so clipping at 3 RMS leaves it dominant.
@pytest.mark.parametrize("scale", ["ema", "mad"])
def test_outlier_does_not_steer_update(scale):
    torch.manual_seed(0)
    grads = _gradients(steps=6, shape=(32, 32))
    grads[-1] = grads[-1].clone()
    grads[-1][3, 7] = 1e4

    def direction(factory):
        before, _ = _run(factory, grads[:-1], shape=(32, 32))
        after, _ = _run(factory, grads, shape=(32, 32))
        return after - before

    clipped = direction(
        lambda ps: ShrinkMuon(ps, lr=0.02, weight_decay=0.0, shrink_scale=scale)
    )
    plain = direction(lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.0))
    # Without clipping, msign of a momentum dominated by the outlier is close to
    # e_i e_j^T plus a flat rest, so the outlier's entry is far above the RMS.
    plain_ratio = plain[3, 7].abs() / plain.square().mean().sqrt()
    clipped_ratio = clipped[3, 7].abs() / clipped.square().mean().sqrt()
    assert float(plain_ratio) > 4.0
    assert float(clipped_ratio) < 3.0


def test_invariant_to_gradient_scale():
    grads = _gradients()
    # A power of two keeps the bf16 rounding inside Newton-Schulz identical.
    scaled = [g * 1024.0 for g in grads]

    def factory(ps):
        return ShrinkMuon(ps, lr=0.02, shrink="bayes")

    result, _ = _run(factory, grads)
    result_scaled, _ = _run(factory, scaled)
    torch.testing.assert_close(result, result_scaled, atol=1e-5, rtol=0)


def test_orthogonal_update_singular_values_in_range():
    torch.manual_seed(0)
    x = torch.randn(64, 64) + 0.1 * torch.eye(64)
    q, _ = torch.linalg.qr(torch.randn(64, 64))
    well_conditioned = q @ torch.diag(torch.linspace(1.0, 3.0, 64)) @ q.T
    for matrix in (x[:, :48], well_conditioned):
        singular = torch.linalg.svdvals(
            _zeropower_via_newtonschulz(matrix, NS, 5, 1e-7).float()
        )
        assert float(singular.max()) < 1.25
        assert float(singular.min()) > 0.5


def test_grad_is_not_modified():
    p = torch.nn.Parameter(torch.randn(8, 8))
    optimizer = ShrinkMuon([p], lr=0.02)
    for _ in range(3):
        p.grad = torch.randn(8, 8)
        p.grad[0, 0] = 1e5
        before = p.grad.clone()
        optimizer.step()
        assert torch.equal(p.grad, before)


def test_state_dict_round_trip_continues_identically():
    grads = _gradients(steps=10)
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(16, 24))
    optimizer = ShrinkMuon([p], lr=0.02)
    for g in grads[:4]:
        p.grad = g.clone()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({"p": p.detach().clone(), "opt": optimizer.state_dict()}, buffer)
    for g in grads[4:]:
        p.grad = g.clone()
        optimizer.step()

    buffer.seek(0)
    saved = torch.load(buffer)
    q = torch.nn.Parameter(saved["p"])
    resumed = ShrinkMuon([q], lr=0.02)
    resumed.load_state_dict(saved["opt"])
    for g in grads[4:]:
        q.grad = g.clone()
        resumed.step()
    assert torch.equal(q.detach(), p.detach())


def test_rejects_vectors():
    with pytest.raises(ValueError, match="2D"):
        ShrinkMuon([torch.nn.Parameter(torch.zeros(4))])


def test_invalid_scale_raises():
    with pytest.raises(ValueError, match="invalid shrink_scale"):
        ShrinkMuon([torch.nn.Parameter(torch.zeros(4, 4))], shrink_scale="max")


@pytest.mark.parametrize("shrink", ["hard", "bayes"])
def test_fused_compiled_ema_matches_eager(shrink):
    """The compiled ``ema`` scale and shrinkage equal the eager foreach ops."""
    pytest.importorskip("torch._inductor")
    grads = _gradients(steps=5)
    grads[3][2, 5] = 40.0
    eager, _ = _run(lambda ps: ShrinkMuon(ps, lr=1e-2, shrink=shrink), grads)
    compiled, optimizer = _run(
        lambda ps: ShrinkMuon(ps, lr=1e-2, shrink=shrink, compile=True), grads
    )
    if optimizer._compiled_ema is None:
        pytest.skip("torch.compile is unavailable here; ShrinkMuon fell back")
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
