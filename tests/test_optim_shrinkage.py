"""Properties of the entry-wise shrinkage functions psi(g; s)."""

import math

import pytest
import torch

from finrl_lab.optim.shrinkage import (
    SHRINK_MODES,
    bayes_prior_odds,
    shrink,
    shrink_elementwise,
    shrink_foreach,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run this module's small-tensor tests on one torch thread, then restore.

    On a busy 2-core machine, two threads per op made these tests 10x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


MODES = ["bayes", "soft", "tanh", "hard"]


def _grid() -> torch.Tensor:
    return torch.linspace(-50.0, 50.0, 2001, dtype=torch.float64)


@pytest.mark.parametrize("mode", MODES)
def test_shrink_is_odd(mode):
    g = _grid()
    s = torch.full_like(g, 1.3)
    torch.testing.assert_close(shrink(-g, s, mode), -shrink(g, s, mode))


@pytest.mark.parametrize("mode", MODES)
def test_shrink_never_grows_an_entry(mode):
    g = _grid()
    s = torch.full_like(g, 0.7)
    assert torch.all(shrink(g, s, mode).abs() <= g.abs() + 1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_shrink_is_near_identity_for_small_z(mode):
    s = torch.full((101,), 2.0, dtype=torch.float64)
    g = torch.linspace(-2.0, 2.0, 101, dtype=torch.float64) * s
    relative = (shrink(g, s, mode) - g).abs() / g.abs().clamp(min=1e-12)
    # soft and tanh bend smoothly from the start: at z = 2, lambda = 3 they keep
    # 83% and 87% of the entry. bayes keeps 99.9% and hard keeps it whole.
    limit = {"bayes": 2e-3, "hard": 0.0, "soft": 0.17, "tanh": 0.13}[mode]
    assert relative.max() <= limit + 1e-12


@pytest.mark.parametrize("mode", MODES)
def test_shrink_is_homogeneous(mode):
    g = torch.randn(500, dtype=torch.float64) * 4
    s = torch.rand(500, dtype=torch.float64) + 0.5
    c = 1e3
    torch.testing.assert_close(shrink(c * g, c * s, mode), c * shrink(g, s, mode))


def test_bayes_weight_matches_closed_form():
    # w(z) = 1/(1 + A exp(z^2/2)/(1 + z^2/kappa^2)), computed here independently.
    eps, kappa = 1e-2, 2.0
    a = eps / (1 - eps) * math.sqrt(2 / math.pi) / kappa
    z_values = [0.0, 1.0, 3.0, 4.5, 6.0]
    expected = [
        z / (1 + a * math.exp(z * z / 2) / (1 + z * z / kappa**2)) for z in z_values
    ]
    g = torch.tensor(z_values, dtype=torch.float64)
    result = shrink(
        g, torch.ones_like(g), "bayes", contamination=eps, cauchy_scale=kappa
    )
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))
    assert bayes_prior_odds(eps, kappa) == pytest.approx(a)


def test_bayes_weight_half_near_z_4_5():
    # With eps = 1e-3 and kappa = 1 the clean-entry probability is 0.5 near z = 4.5.
    z = torch.linspace(4.0, 5.0, 1001, dtype=torch.float64)
    weight = shrink(z, torch.ones_like(z), "bayes") / z
    crossing = z[(weight - 0.5).abs().argmin()]
    assert 4.3 < float(crossing) < 4.7


def test_bayes_redescends_to_zero():
    g = torch.tensor([1e3, 1e6], dtype=torch.float64)
    assert torch.all(shrink(g, torch.ones_like(g), "bayes").abs() < 1e-20)


@pytest.mark.parametrize("mode", ["bayes", "soft", "hard"])
def test_shrink_off_limits_are_identity(mode):
    g = torch.randn(1000) * 10
    s = torch.rand(1000) + 0.1
    if mode == "bayes":
        result = shrink(g, s, mode, contamination=0.0)
    else:
        result = shrink(g, s, mode, threshold=math.inf)
    assert torch.equal(result, g)


@pytest.mark.parametrize("mode", MODES)
def test_outlier_moves_result_by_bounded_amount(mode):
    torch.manual_seed(0)
    g = torch.randn(32, 48)
    s = torch.ones_like(g)
    corrupted = g.clone()
    corrupted[3, 7] += 1e4
    change = torch.linalg.vector_norm(shrink(corrupted, s, mode) - shrink(g, s, mode))
    # max |psi| is about 3.6 s for bayes (eps 1e-3) and lambda s = 3 s otherwise.
    assert float(change) <= 2 * 3.7


def test_shrink_leaves_input_unchanged():
    g = torch.randn(10, 10)
    before = g.clone()
    shrink(g, torch.ones_like(g), "bayes")
    assert torch.equal(g, before)


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="unknown shrink mode"):
        shrink(torch.ones(3), 1.0, "median")


@pytest.mark.parametrize("mode", SHRINK_MODES)
def test_elementwise_form_equals_foreach(mode):
    """The plain-op form used under torch.compile equals the foreach form."""
    generator = torch.Generator().manual_seed(2)
    grad = torch.randn(7, 5, generator=generator, dtype=torch.float64) * 4.0
    grad[0, 0] = 0.0
    scale = torch.rand(7, 5, generator=generator, dtype=torch.float64) + 0.1
    for s in (scale, 0.7):
        expected = shrink_foreach([grad], s if isinstance(s, float) else [s], mode)
        torch.testing.assert_close(shrink_elementwise(grad, s, mode), expected[0])
