"""ShrinkAdam: closed-form steps, reduction to AdamW, robustness, state round trip."""

import copy
import io
import math

import pytest
import torch

from finrl_lab.optim import ShrinkAdam


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run this module's small-tensor tests on one torch thread, then restore.

    On a busy 2-core machine, two threads per op made these tests 10x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _run(optimizer_factory, grads, shape=(6, 5), seed=0):
    """Apply the given gradients in order; return the final parameter."""
    torch.manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64))
    optimizer = optimizer_factory([p])
    for g in grads:
        p.grad = g.clone()
        optimizer.step()
    return p.detach().clone()


def _gradients(steps=20, shape=(6, 5), seed=1, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=generator, dtype=torch.float64) * scale
        for _ in range(steps)
    ]


def test_first_step_closed_form():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    g = torch.tensor([0.3, -4.0, 1e-3], dtype=torch.float64)
    lr, wd, eps = 0.1, 0.5, 1e-8
    optimizer = ShrinkAdam([p], lr=lr, weight_decay=wd, eps=eps)
    p.grad = g.clone()
    optimizer.step()
    # Step 1 skips shrinkage; m_hat = g and v_hat = g^2.
    expected = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * (1 - lr * wd)
    expected -= lr * g / (g.abs() + eps)
    torch.testing.assert_close(p.detach(), expected)


def test_second_step_clips_outlier_closed_form():
    lr, eps, beta1, beta2 = 0.1, 1e-12, 0.9, 0.999
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = ShrinkAdam(
        [p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=0.0, shrink="hard"
    )
    p.grad = torch.tensor([1.0], dtype=torch.float64)
    optimizer.step()
    p.grad = torch.tensor([100.0], dtype=torch.float64)
    optimizer.step()
    # s = sqrt(v_hat_1) = 1, so the second gradient is clipped to 3.
    m = (1 - beta1) * beta1 * 1.0 + (1 - beta1) * 3.0
    v = (1 - beta2) * beta2 * 1.0 + (1 - beta2) * 9.0
    m_hat, v_hat = m / (1 - beta1**2), v / (1 - beta2**2)
    expected = -lr * 1.0 - lr * m_hat / (math.sqrt(v_hat) + eps)
    assert float(p.detach()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_shrink_none_equals_adamw(weight_decay):
    grads = _gradients()

    def shrink_adam(params):
        return ShrinkAdam(params, lr=1e-2, weight_decay=weight_decay, shrink="none")

    def adamw(params):
        return torch.optim.AdamW(
            params, lr=1e-2, weight_decay=weight_decay, foreach=True
        )

    torch.testing.assert_close(
        _run(shrink_adam, grads), _run(adamw, grads), rtol=0, atol=1e-15
    )


@pytest.mark.parametrize(
    "options",
    [
        {"shrink": "bayes", "contamination": 0.0},
        {"shrink": "hard", "threshold": math.inf},
        {"shrink": "soft", "threshold": math.inf},
    ],
)
def test_shrinkage_limit_equals_adamw(options):
    grads = _gradients()
    result = _run(lambda ps: ShrinkAdam(ps, lr=1e-2, **options), grads)
    reference = _run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=True), grads)
    torch.testing.assert_close(result, reference, rtol=0, atol=1e-15)


def test_shrinkage_changes_trajectory():
    grads = _gradients()
    grads[10][2, 3] = 1e4
    result = _run(lambda ps: ShrinkAdam(ps, lr=1e-2, shrink="hard"), grads)
    reference = _run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=True), grads)
    assert not torch.allclose(result, reference)


@pytest.mark.parametrize("mode", ["bayes", "soft", "tanh", "hard"])
def test_outlier_barely_moves_other_steps(mode):
    # Adam's v remembers an outlier for ~1/(1-beta2) steps, shrinking the entry's
    # later steps; shrinkage keeps it out of v.
    clean = _gradients(steps=30, shape=(4,))
    corrupted = [g.clone() for g in clean]
    corrupted[5][0] = 1e4

    def factory(params):
        return ShrinkAdam(params, lr=1e-2, weight_decay=0.0, shrink=mode)

    start = _run(factory, [], shape=(4,))
    moved_clean = (_run(factory, clean, shape=(4,)) - start)[0]
    moved_corrupted = (_run(factory, corrupted, shape=(4,)) - start)[0]
    adam = _run(lambda ps: torch.optim.Adam(ps, lr=1e-2), corrupted, shape=(4,))
    moved_adam = (adam - start)[0]
    assert abs(float(moved_corrupted - moved_clean)) < 0.05
    assert abs(float(moved_adam - moved_clean)) > 0.05


@pytest.mark.parametrize("where", ["grad", "update"])
def test_invariant_to_gradient_scale(where):
    grads = _gradients()
    scaled = [g * 1e3 for g in grads]

    def factory(params):
        return ShrinkAdam(params, lr=1e-2, eps=1e-12, shrink_where=where)

    torch.testing.assert_close(_run(factory, grads), _run(factory, scaled))


def test_shrink_update_bounds_each_step():
    p = torch.nn.Parameter(torch.zeros(3))
    optimizer = ShrinkAdam(
        [p], lr=1.0, shrink="hard", threshold=0.5, shrink_where="update"
    )
    p.grad = torch.tensor([1.0, -2.0, 3.0])
    optimizer.step()
    # The unclipped first update is sign(g); clipping at 0.5 halves it.
    torch.testing.assert_close(p.detach(), torch.tensor([-0.5, 0.5, -0.5]))


def test_grad_is_not_modified():
    p = torch.nn.Parameter(torch.randn(5, 5))
    optimizer = ShrinkAdam([p], lr=1e-2)
    for _ in range(3):
        p.grad = torch.randn(5, 5) * 100
        before = p.grad.clone()
        optimizer.step()
        assert torch.equal(p.grad, before)


def test_state_dict_round_trip_continues_identically():
    grads = _gradients(steps=12)
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(6, 5, dtype=torch.float64))
    optimizer = ShrinkAdam([p], lr=1e-2)
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
    resumed = ShrinkAdam([q], lr=1e-2)
    resumed.load_state_dict(saved["opt"])
    for g in grads[5:]:
        q.grad = g.clone()
        resumed.step()
    assert torch.equal(q.detach(), p.detach())


def test_compiled_step_matches_eager():
    pytest.importorskip("torch._inductor")
    grads = _gradients(steps=4, shape=(8,))
    eager = _run(lambda ps: ShrinkAdam(ps, lr=1e-2), grads, shape=(8,))
    try:
        compiled = _run(
            lambda ps: ShrinkAdam(ps, lr=1e-2, compile=True), grads, shape=(8,)
        )
    except Exception as error:  # a missing C++ compiler or inductor skips
        pytest.skip(f"torch.compile is unavailable here: {error}")
    torch.testing.assert_close(compiled, eager)


@pytest.mark.parametrize(
    "options",
    [
        {"shrink": "bayes"},
        {"shrink": "soft"},
        {"shrink": "tanh"},
        {"shrink": "hard"},
        {"shrink": "none"},
        {"shrink": "soft", "shrink_where": "update"},
    ],
    ids=["bayes", "soft", "tanh", "hard", "none", "soft-update"],
)
def test_fused_compiled_step_matches_eager(options):
    """The fused compiled step equals the eager step on two float32 tensors.

    The learning rate changes every step, as under a scheduler. One gradient
    entry is an outlier, so the shrinkage acts.
    """
    pytest.importorskip("torch._inductor")
    generator = torch.Generator().manual_seed(3)
    shapes = [(4, 3), (5,)]
    grads = [
        [torch.randn(shape, generator=generator) for shape in shapes] for _ in range(5)
    ]
    grads[3][0][1, 1] = 50.0

    def run(compile):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
        optimizer = ShrinkAdam(params, lr=1e-2, compile=compile, **options)
        for step, step_grads in enumerate(grads):
            optimizer.param_groups[0]["lr"] = 1e-2 / (1 + step)
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
        return [p.detach() for p in params], optimizer._compiled_update

    eager, _ = run(False)
    compiled, compiled_update = run(True)
    if compiled_update is None:
        pytest.skip("torch.compile is unavailable here; ShrinkAdam fell back")
    for fast, slow in zip(compiled, eager, strict=True):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


def test_compile_failure_falls_back_to_eager():
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler")

    grads = _gradients(steps=3, shape=(4,))
    eager = _run(lambda ps: ShrinkAdam(ps, lr=1e-2), grads, shape=(4,))

    def factory(ps):
        optimizer = ShrinkAdam(ps, lr=1e-2)
        optimizer._compiled_update = broken
        return optimizer

    torch.testing.assert_close(_run(factory, grads, shape=(4,)), eager)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"shrink": "median"}, "invalid shrink"),
        ({"shrink_where": "momentum"}, "invalid shrink_where"),
        ({"threshold": 0.0}, "invalid threshold"),
        ({"betas": (1.0, 0.9)}, "invalid betas"),
    ],
)
def test_invalid_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        ShrinkAdam([torch.nn.Parameter(torch.zeros(2))], **options)


def test_deepcopy_keeps_state():
    p = torch.nn.Parameter(torch.randn(3))
    optimizer = ShrinkAdam([p], lr=1e-2)
    p.grad = torch.ones(3)
    optimizer.step()
    copied = copy.deepcopy(optimizer.state_dict())
    assert float(copied["state"][0]["step"]) == 1.0
