"""DeVA: vector and matrix rules, reductions to Adam and Muon, basis refresh."""

import io
import math

import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz

from finrl_lab.optim import DeVAFactored, DeVAMatrix, DeVAVector


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


def _gradients(steps=12, shape=(12, 20), seed=1, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) * scale for _ in range(steps)]


def _run(factory, grads, shape=(12, 20), dtype=torch.float32):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape, dtype=dtype))
    optimizer = factory([p])
    for g in grads:
        p.grad = g.clone().to(dtype)
        optimizer.step()
    return p.detach().clone(), optimizer


# Vector rule


def test_vector_first_step_is_lr_sign():
    g = torch.tensor([0.3, -4.0, 2e-4, -1e-3])
    p = torch.nn.Parameter(torch.zeros(4))
    optimizer = DeVAVector([p], lr=0.1)
    p.grad = g.clone()
    optimizer.step()
    # m_hat = g, v_hat = g^2, so gamma is 1 up to eps and the step is lr sign(g).
    torch.testing.assert_close(p.detach(), -0.1 * torch.sign(g), rtol=1e-4, atol=0)


def test_vector_first_step_without_bias_correction():
    beta1, beta2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    g = torch.tensor([0.3, -4.0, 1e-3], dtype=torch.float64)
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = DeVAVector(
        [p], lr=lr, betas=(beta1, beta2), eps=eps, correct_bias=False
    )
    p.grad = g.clone()
    optimizer.step()
    # m = (1-b1) g and v = (1-b2) m^2, with eps outside the root.
    m = (1 - beta1) * g
    expected = -lr * m / (math.sqrt(1 - beta2) * m.abs() + eps)
    torch.testing.assert_close(p.detach(), expected)


def test_vector_with_grad_source_equals_adam():
    grads = _gradients(steps=25, shape=(7, 3))
    options = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8}
    result, _ = _run(
        lambda ps: DeVAVector(ps, v_source="grad", **options), grads, shape=(7, 3)
    )
    reference, _ = _run(
        lambda ps: torch.optim.Adam(ps, foreach=True, **options), grads, shape=(7, 3)
    )
    torch.testing.assert_close(result, reference, rtol=0, atol=1e-6)


def test_vector_with_beta1_zero_is_rmsprop():
    grads = _gradients(steps=10, shape=(5,))
    lr, beta2, eps = 1e-2, 0.99, 1e-8
    result, _ = _run(
        lambda ps: DeVAVector(ps, lr=lr, betas=(0.0, beta2), eps=eps),
        grads,
        shape=(5,),
    )
    torch.manual_seed(0)
    p = torch.randn(5)
    v = torch.zeros(5)
    for t, g in enumerate(grads, start=1):
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr * g / ((v / (1 - beta2**t)).sqrt() + eps)
    torch.testing.assert_close(result, p)


@pytest.mark.parametrize("nesterov", [False, True])
def test_vector_invariant_to_gradient_scale(nesterov):
    grads = _gradients(shape=(9,))
    scaled = [g * 1e3 for g in grads]

    def factory(ps):
        return DeVAVector(ps, lr=1e-2, eps=1e-12, nesterov=nesterov)

    result, _ = _run(factory, grads, shape=(9,))
    result_scaled, _ = _run(factory, scaled, shape=(9,))
    torch.testing.assert_close(result, result_scaled)


def test_vector_nesterov_uses_mixed_sign():
    p = torch.nn.Parameter(torch.zeros(2))
    optimizer = DeVAVector([p], lr=1.0, betas=(0.9, 0.999), nesterov=True)
    p.grad = torch.tensor([1.0, 1.0])
    optimizer.step()
    p.grad = torch.tensor([-5.0, 0.5])
    optimizer.step()
    # Entry 0: m = 0.09 - 0.5 < 0 and the mix 0.1*(-5) + 0.9*m < 0, so the second
    # step moves up by gamma > 0.
    assert float(p.detach()[0]) > -1.0


# Matrix rule


def _muon_scaled_reference(grads, lr, momentum, shape):
    """Muon with the 0.2*sqrt(max(n, m)) scale, written out by hand."""
    torch.manual_seed(0)
    p = torch.randn(shape)
    buffer = torch.zeros(shape)
    scale = 0.2 * math.sqrt(max(shape))
    for g in grads:
        buffer = momentum * buffer + (1 - momentum) * g
        mixed = (1 - momentum) * g + momentum * buffer
        p = p - lr * scale * _zeropower_via_newtonschulz(mixed, NS, 5, 1e-7).float()
    return p


@pytest.mark.parametrize("sides", ["both", "shorter", "none"])
def test_matrix_without_adaptation_equals_scaled_muon(sides):
    # Refreshes at steps 3, 6, 9 exercise the basis change as well.
    grads = _gradients()
    result, _ = _run(
        lambda ps: DeVAMatrix(
            ps,
            lr=0.01,
            variance_adaptation=False,
            precondition_frequency=3,
            precondition_sides=sides,
        ),
        grads,
    )
    reference = _muon_scaled_reference(grads, 0.01, 0.95, (12, 20))
    torch.manual_seed(0)
    start = torch.randn(12, 20)
    moved = (reference - start).abs().max()
    # msign in the eigenbasis equals the rotated msign up to bf16 rounding.
    assert float((result - reference).abs().max()) < 0.03 * float(moved)


def test_matrix_equals_torch_muon_match_rms():
    grads = _gradients(steps=5)
    result, _ = _run(
        lambda ps: DeVAMatrix(ps, lr=0.01, variance_adaptation=False), grads
    )
    reference, _ = _run(
        lambda ps: torch.optim.Muon(
            ps, lr=0.01, weight_decay=0.0, adjust_lr_fn="match_rms_adamw"
        ),
        grads,
    )
    torch.manual_seed(0)
    moved = (reference - torch.randn(12, 20)).abs().max()
    assert float((result - reference).abs().max()) < 0.03 * float(moved)


def test_matrix_first_step_has_unit_gamma():
    # At t = 1, V_hat = r c^T, so gamma = 1 and the step is the scaled Muon step.
    grads = _gradients(steps=1)
    result, _ = _run(lambda ps: DeVAMatrix(ps, lr=0.01), grads)
    reference = _muon_scaled_reference(grads, 0.01, 0.95, (12, 20))
    torch.manual_seed(0)
    moved = (reference - torch.randn(12, 20)).abs().max()
    assert float((result - reference).abs().max()) < 0.03 * float(moved)


def test_matrix_constant_gradient_keeps_gamma_one():
    g = _gradients(steps=1)[0]
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(12, 20))
    optimizer = DeVAMatrix([p], lr=0.01, precondition_sides="none")
    steps = []
    for _ in range(6):
        before = p.detach().clone()
        p.grad = g.clone()
        optimizer.step()
        steps.append(p.detach() - before)
    # The reference's bias correction made the first step 20x the later ones.
    sizes = torch.stack([s.norm() for s in steps])
    torch.testing.assert_close(sizes, sizes[-1].expand(6), rtol=0.02, atol=0)


@pytest.mark.parametrize("cls", [DeVAMatrix, DeVAFactored])
def test_matrix_invariant_to_gradient_scale(cls):
    grads = _gradients()
    scaled = [g * 1024.0 for g in grads]

    def factory(ps):
        return cls(ps, lr=0.01, precondition_frequency=4, eps=1e-20)

    result, _ = _run(factory, grads)
    result_scaled, _ = _run(factory, scaled)
    torch.testing.assert_close(result, result_scaled, atol=1e-4, rtol=0)


@pytest.mark.parametrize("cls", [DeVAMatrix, DeVAFactored])
def test_matrix_update_singular_values_bounded(cls):
    grads = _gradients(steps=3, shape=(16, 16))
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(16, 16))
    optimizer = cls([p], lr=1.0, variance_adaptation=False)
    for g in grads:
        before = p.detach().clone()
        p.grad = g
        optimizer.step()
    singular = torch.linalg.svdvals((before - p.detach()) / (0.2 * 4.0))
    assert float(singular.max()) < 1.25
    assert float(singular.min()) > 0.5


def test_basis_refresh_keeps_momentum_in_parameter_space():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(6, 6))
    optimizer = DeVAMatrix([p], lr=0.01, precondition_frequency=1000)
    for g in _gradients(steps=3, shape=(6, 6)):
        p.grad = g
        optimizer.step()
    state = optimizer.state[p]

    def momentum_in_parameter_space():
        return state["left_basis"] @ state["exp_avg"] @ state["right_basis"].T

    before = momentum_in_parameter_space()
    optimizer._refresh_bases(state)
    torch.testing.assert_close(momentum_in_parameter_space(), before)
    identity = torch.eye(6)
    basis = state["left_basis"]
    torch.testing.assert_close(basis.T @ basis, identity, atol=1e-5, rtol=0)


def test_basis_refresh_permutes_second_moment():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 5))
    optimizer = DeVAMatrix([p], lr=0.01, precondition_sides="both")
    p.grad = torch.randn(5, 5)
    optimizer.step()
    state = optimizer.state[p]
    # Reverse the left basis: its Rayleigh quotients are then ascending, so the
    # sort reverses it back and must reverse the rows of V with it. The right
    # basis is already sorted and keeps V's columns in place.
    state["left_basis"] = state["left_basis"].flip(-1).contiguous()
    marker = torch.arange(25.0).reshape(5, 5)
    state["exp_avg_sq"] = marker.clone()
    optimizer._refresh_bases(state)
    assert torch.equal(state["exp_avg_sq"], marker.flip(0))


def test_first_step_builds_orthogonal_bases():
    p = torch.nn.Parameter(torch.randn(8, 8))
    optimizer = DeVAMatrix([p], lr=0.01, precondition_sides="both")
    p.grad = torch.randn(8, 8)
    optimizer.step()
    state = optimizer.state[p]
    for key in ("left_basis", "right_basis"):
        basis = state[key]
        torch.testing.assert_close(basis.T @ basis, torch.eye(8), atol=1e-5, rtol=0)


def test_shorter_side_only_is_rotated():
    p = torch.nn.Parameter(torch.randn(4, 16))
    optimizer = DeVAMatrix([p], lr=0.01)
    p.grad = torch.randn(4, 16)
    optimizer.step()
    state = optimizer.state[p]
    assert "left_basis" in state
    assert "right_basis" not in state


def test_conv_kernel_equals_flattened_matrix():
    grads = _gradients(steps=6, shape=(8, 3, 2, 2))
    flat = [g.reshape(8, 12) for g in grads]
    conv, _ = _run(lambda ps: DeVAMatrix(ps, lr=0.01), grads, shape=(8, 3, 2, 2))
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(8, 3, 2, 2).reshape(8, 12))
    optimizer = DeVAMatrix([p], lr=0.01)
    for g in flat:
        p.grad = g.clone()
        optimizer.step()
    torch.testing.assert_close(conv.reshape(8, 12), p.detach())


@pytest.mark.parametrize("cls", [DeVAMatrix, DeVAFactored])
def test_matrix_rejects_vectors(cls):
    with pytest.raises(ValueError, match="at least 2 axes"):
        cls([torch.nn.Parameter(torch.zeros(5))])


@pytest.mark.parametrize("cls", [DeVAVector, DeVAMatrix, DeVAFactored])
def test_grad_is_not_modified(cls):
    p = torch.nn.Parameter(torch.randn(6, 6))
    optimizer = cls([p], lr=0.01)
    for _ in range(3):
        p.grad = torch.randn(6, 6)
        before = p.grad.clone()
        optimizer.step()
        assert torch.equal(p.grad, before)


def test_factored_state_is_smaller_than_full():
    p = torch.nn.Parameter(torch.randn(16, 64))
    full = DeVAMatrix([p], lr=0.01)
    factored = DeVAFactored([p], lr=0.01)
    p.grad = torch.randn(16, 64)
    full.step()
    factored.step()

    def state_bytes(optimizer):
        state = optimizer.state[p]
        return sum(v.numel() * v.element_size() for v in state.values() if v.ndim)

    assert state_bytes(factored) < state_bytes(full) - p.numel() * 4 * 0.9


def test_trace_quadratic_converges():
    # A 9 x 9 matrix variable, f(X) = 0.5 tr(X^T H X) with block eigenvalues
    # {1,2,3}, {99,100,101}, {4998,4999,5000}: DeVA must cut f more than 10x.
    torch.manual_seed(0)
    eigenvalues = torch.tensor([1, 2, 3, 99, 100, 101, 4998, 4999, 5000.0])
    blocks = []
    for start in (0, 3, 6):
        q, _ = torch.linalg.qr(torch.randn(3, 3))
        blocks.append(q @ torch.diag(eigenvalues[start : start + 3]) @ q.T)
    hessian = torch.block_diag(*blocks)
    x = torch.nn.Parameter(torch.randn(9, 9))
    optimizer = DeVAMatrix([x], lr=0.1, betas=(0.9, 0.99))

    def objective():
        return 0.5 * torch.trace(x.T @ hessian @ x)

    initial = float(objective().detach())
    steps = 400
    for step in range(steps):
        fraction = max(0.0, (step - steps / 2) / (steps / 2))
        optimizer.param_groups[0]["lr"] = 0.1 * (1.0 - fraction)
        optimizer.zero_grad()
        objective().backward()
        optimizer.step()
    assert float(objective().detach()) < initial / 10


@pytest.mark.parametrize("cls", [DeVAVector, DeVAMatrix, DeVAFactored])
def test_state_dict_round_trip_continues_identically(cls):
    grads = _gradients(steps=14)
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(12, 20))
    optimizer = cls([p], lr=0.01, **_refresh_often(cls))
    for g in grads[:5]:
        p.grad = g.clone()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({"p": p.detach().clone(), "opt": optimizer.state_dict()}, buffer)
    for g in grads[5:]:
        p.grad = g.clone()
        optimizer.step()

    buffer.seek(0)
    saved = torch.load(buffer)
    q = torch.nn.Parameter(saved["p"])
    resumed = cls([q], lr=0.01, **_refresh_often(cls))
    resumed.load_state_dict(saved["opt"])
    for g in grads[5:]:
        q.grad = g.clone()
        resumed.step()
    assert torch.equal(q.detach(), p.detach())


def _refresh_often(cls):
    if cls is DeVAVector:
        return {}
    return {"precondition_frequency": 3}
