"""Unit tests for ``pgrad.estimators`` and ``pgrad.nn.BinaryLinear``: hand values, statistics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgrad.baselines import leave_one_out
from pgrad.estimators import gumbel_softmax, round_ste, score_function, sign_ste
from pgrad.nn import BinaryLinear

finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


# --------------------------------------------------------------------------- round_ste


def test_round_ste_hand_values() -> None:
    x = torch.tensor([0.4, 0.6, -1.5, 2.5, -0.4], requires_grad=True)
    y = round_ste(x)
    # torch.round sends halves to the even neighbour: -1.5 -> -2, 2.5 -> 2.
    assert y.tolist() == [0.0, 1.0, -2.0, 2.0, -0.0]
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights)


def test_round_without_ste_has_no_gradient() -> None:
    # The reason round_ste exists: autograd's derivative of round is zero everywhere.
    x = torch.tensor([0.4, 0.6], requires_grad=True)
    torch.round(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(2))


@settings(max_examples=50, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=16))
def test_round_ste_value_is_exactly_torch_round(values: list[float]) -> None:
    x = torch.tensor(values, requires_grad=True)
    y = round_ste(x)
    assert torch.equal(y.detach(), torch.round(x.detach()))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_round_ste_quantises_to_grid_and_keeps_dtype() -> None:
    x = torch.tensor([0.30, -0.07, 0.999], dtype=torch.float64, requires_grad=True)
    y = round_ste(x * 8) / 8
    assert y.dtype == torch.float64
    assert torch.equal(y.detach(), torch.tensor([0.25, -0.125, 1.0], dtype=torch.float64))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3, dtype=torch.float64))


# --------------------------------------------------------------------------- sign_ste


def test_sign_ste_hand_values_without_clip() -> None:
    x = torch.tensor([-3.0, -0.1, 0.0, -0.0, 0.2, 5.0], requires_grad=True)
    y = sign_ste(x)
    # sign(0) = +1 (torch.sign would give 0), for both zeros.
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    weights = torch.arange(1.0, 7.0)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights)


def test_sign_ste_clip_zeroes_gradient_beyond_clip() -> None:
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.01, 3.0], requires_grad=True)
    y = sign_ste(x, clip=1.0)
    assert y.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    # |x| <= clip passes (the boundary included), |x| > clip is cancelled.
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_sign_ste_other_clip_and_dtype() -> None:
    x = torch.tensor([[-0.3, 0.1], [0.25, -0.2]], dtype=torch.float64, requires_grad=True)
    y = sign_ste(x, clip=0.25)
    assert y.dtype == torch.float64 and y.shape == (2, 2)
    y.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0], [1.0, 1.0]]


@settings(max_examples=50, deadline=None)
@given(st.lists(finite_floats, min_size=1, max_size=16))
def test_sign_ste_output_is_binary(values: list[float]) -> None:
    y = sign_ste(torch.tensor(values))
    assert bool(((y == 1) | (y == -1)).all())
    assert torch.equal(y, torch.where(torch.tensor(values) >= 0, 1.0, -1.0))


@pytest.mark.parametrize("clip", [0.0, -1.0, float("nan")])
def test_sign_ste_rejects_bad_clip(clip: float) -> None:
    with pytest.raises(ValueError, match="clip"):
        sign_ste(torch.zeros(2), clip=clip)


# --------------------------------------------------------------------------- gumbel_softmax


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gumbel_softmax_soft_rows_on_simplex() -> None:
    logits = torch.randn(64, 5, generator=_seeded(0))
    y = gumbel_softmax(logits, tau=0.7, generator=_seeded(1))
    assert y.shape == logits.shape
    assert bool((y >= 0).all())
    torch.testing.assert_close(y.sum(-1), torch.ones(64))


def test_gumbel_softmax_hard_is_one_hot_argmax_of_soft() -> None:
    logits = torch.randn(256, 6, generator=_seeded(0))
    soft = gumbel_softmax(logits, tau=0.5, generator=_seeded(7))
    hard = gumbel_softmax(logits, tau=0.5, hard=True, generator=_seeded(7))
    assert bool(((hard == 0) | (hard == 1)).all())
    assert torch.equal(hard.sum(-1), torch.ones(256))
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))


def test_gumbel_softmax_hard_gradient_equals_soft_gradient() -> None:
    weights = torch.randn(32, 4, generator=_seeded(3))
    grads = []
    for hard in (False, True):
        logits = torch.randn(32, 4, generator=_seeded(0)).requires_grad_()
        y = gumbel_softmax(logits, tau=0.8, hard=hard, generator=_seeded(11))
        (y * weights).sum().backward()
        grads.append(logits.grad)
    assert grads[0].abs().sum() > 0
    assert torch.equal(grads[0], grads[1])


def test_gumbel_softmax_default_temperature_is_one() -> None:
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    default = gumbel_softmax(logits, generator=_seeded(5))
    torch.testing.assert_close(default, gumbel_softmax(logits, tau=1.0, generator=_seeded(5)))


def test_gumbel_softmax_divides_by_the_temperature() -> None:
    # The same generator state gives the same noise g, so log y_i - log y_j = (l_i + g_i - l_j -
    # g_j) / tau: halving tau doubles every log-ratio.
    logits = torch.randn(8, 4, generator=_seeded(0), dtype=torch.float64)
    log_ratios = {}
    for tau in (1.0, 0.5):
        y = gumbel_softmax(logits, tau=tau, generator=_seeded(3)).log()
        log_ratios[tau] = y - y[:, :1]
    torch.testing.assert_close(log_ratios[0.5], 2 * log_ratios[1.0])


def test_gumbel_softmax_is_soft_unless_asked_to_be_hard() -> None:
    y = gumbel_softmax(torch.zeros(64, 3), generator=_seeded(2))
    assert bool((y.max(-1).values < 1).all()), "the default sample must be soft"


def test_gumbel_softmax_sample_does_not_depend_on_memory_layout() -> None:
    # The noise is drawn in a fixed (row-major) order, so a transposed view of the same logits
    # gets the same sample from the same seed.
    logits = torch.randn(5, 3, generator=_seeded(0))
    transposed_view = logits.T.contiguous().T
    assert not transposed_view.is_contiguous()
    torch.testing.assert_close(
        gumbel_softmax(transposed_view, generator=_seeded(4)),
        gumbel_softmax(logits, generator=_seeded(4)),
    )


def test_gumbel_softmax_other_dim() -> None:
    logits = torch.randn(4, 3, 2, generator=_seeded(0))
    hard = gumbel_softmax(logits, hard=True, dim=1, generator=_seeded(1))
    assert torch.equal(hard.sum(1), torch.ones(4, 2))
    soft = gumbel_softmax(logits, dim=1, generator=_seeded(1))
    assert torch.equal(hard.argmax(1), soft.argmax(1))


def test_gumbel_softmax_is_reproducible_and_leaves_global_rng_alone() -> None:
    logits = torch.randn(8, 5, generator=_seeded(0))
    state = torch.random.get_rng_state()
    first = gumbel_softmax(logits, generator=_seeded(42))
    second = gumbel_softmax(logits, generator=_seeded(42))
    assert torch.equal(first, second)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(first, gumbel_softmax(logits, generator=_seeded(43)))


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_gumbel_softmax_extreme_logits_stay_finite(hard: bool, tau: float) -> None:
    rows = torch.tensor(
        [
            [1e4, -1e4, 0.0],
            [-1e4, -1e4, -1e4],
            [1e4, 1e4, -1e4],
            [-1e4, 1e4, 1e4],
            [0.0, 0.0, 0.0],
        ]
    )
    logits = rows.repeat(2000, 1).requires_grad_()
    y = gumbel_softmax(logits, tau=tau, hard=hard, generator=_seeded(0))
    weights = torch.randn(y.shape, generator=_seeded(1))
    (y * weights).sum().backward()
    assert bool(torch.isfinite(y).all()), "forward produced NaN/inf"
    assert bool(torch.isfinite(logits.grad).all()), "backward produced NaN/inf"
    torch.testing.assert_close(y.sum(-1), torch.ones(len(y)))
    # A logit 2e4 above the rest wins every time (the Gumbel noise is bounded in practice).
    assert bool((y[0::5].argmax(-1) == 0).all())


def test_gumbel_softmax_argmax_frequencies_match_softmax() -> None:
    """Gumbel-max trick: argmax(logits + Gumbel) ~ Categorical(softmax(logits)), at any tau."""
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    probs = logits.softmax(-1)
    n = 100_000
    for tau in (0.1, 1.0, 5.0):
        hard = gumbel_softmax(logits.expand(n, -1), tau=tau, hard=True, generator=_seeded(5))
        frequencies = hard.mean(0)
        standard_errors = (probs * (1 - probs) / n).sqrt()
        z = (frequencies - probs) / standard_errors
        assert bool((z.abs() < 4).all()), f"tau={tau}: z-scores {z.tolist()}"


@pytest.mark.parametrize("tau", [0.0, -0.5, float("inf"), float("nan")])
def test_gumbel_softmax_rejects_bad_tau(tau: float) -> None:
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(torch.zeros(3), tau=tau)


# --------------------------------------------------------------------------- score_function


def test_score_function_value_equals_cost() -> None:
    logits = torch.randn(10, 4, generator=_seeded(0), requires_grad=True)
    dist = torch.distributions.Categorical(logits=logits)
    actions = dist.sample()
    cost = torch.randn(10, generator=_seeded(1))
    surrogate = score_function(dist.log_prob(actions), cost, baseline=0.3)
    assert torch.equal(surrogate.detach(), cost)


def test_score_function_categorical_gradient_by_hand() -> None:
    logits = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    dist = torch.distributions.Categorical(logits=logits)
    action = torch.tensor(1)
    cost, baseline = torch.tensor(3.0), 0.5
    score_function(dist.log_prob(action), cost, baseline).backward()
    # d log softmax(l)_a / dl = onehot(a) - softmax(l)
    expected = (3.0 - 0.5) * (torch.tensor([0.0, 1.0, 0.0]) - logits.detach().softmax(-1))
    torch.testing.assert_close(logits.grad, expected)


def test_score_function_bernoulli_gradient_by_hand() -> None:
    theta = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    samples = torch.tensor([1.0, 0.0, 0.0])
    log_prob = torch.distributions.Bernoulli(logits=theta).log_prob(samples)
    cost = torch.tensor([0.2, 0.7, -1.0])
    baseline = torch.tensor([0.1, 0.1, 0.4], requires_grad=True)
    score_function(log_prob, cost, baseline).sum().backward()
    # d log Bernoulli(b; sigmoid(theta)) / dtheta = b - sigmoid(theta)
    expected = (cost - baseline.detach()) * (samples - theta.detach().sigmoid())
    torch.testing.assert_close(theta.grad, expected)
    assert baseline.grad is None, "the baseline must be detached"


def test_score_function_adds_pathwise_gradient() -> None:
    # x ~ Normal(mu, 1); cost (x - mu)^2 depends on mu through the density and directly.
    mu = torch.tensor(0.3, requires_grad=True)
    x = torch.tensor(1.1)
    log_prob = torch.distributions.Normal(mu, 1.0).log_prob(x)
    cost = (x - mu) ** 2
    score_function(log_prob, cost, baseline=0.25).backward()
    residual = 1.1 - 0.3
    expected = (residual**2 - 0.25) * residual + (-2 * residual)
    assert mu.grad.item() == pytest.approx(expected, rel=1e-6)


def test_score_function_pathwise_only_parameter() -> None:
    logits = torch.zeros(3, requires_grad=True)
    scale = torch.tensor(2.0, requires_grad=True)
    log_prob = torch.distributions.Categorical(logits=logits).log_prob(torch.tensor(0))
    score_function(log_prob, scale**2).backward()
    assert scale.grad.item() == pytest.approx(4.0)
    torch.testing.assert_close(logits.grad, 4.0 * torch.tensor([2 / 3, -1 / 3, -1 / 3]))


def test_score_function_accepts_a_baseline_that_broadcasts() -> None:
    # One baseline per row of a [2, 3] cost: shape [2, 1] broadcasts, and the gradient uses it.
    logits = torch.zeros(2, 3, requires_grad=True)
    cost = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    baseline = torch.tensor([[2.0], [5.0]])
    log_prob = torch.distributions.Bernoulli(logits=logits).log_prob(torch.ones(2, 3))
    score_function(log_prob, cost, baseline=baseline).sum().backward()
    # d log p(1) / d logit = 1 - sigmoid(0) = 1/2
    torch.testing.assert_close(logits.grad, (cost - baseline) / 2)


def test_score_function_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4,\).*\(4, 1\)"):
        score_function(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="baseline"):
        score_function(torch.zeros(4), torch.zeros(4), baseline=torch.zeros(3))
    with pytest.raises(ValueError, match="baseline"):
        score_function(torch.zeros(4), torch.zeros(4), baseline=torch.zeros(2, 4))


# --------------------------------------------------------------------------- REBAR toy problem
#
# minimise E[(b - t)^2], b ~ Bernoulli(p), p = sigmoid(theta)  (Tucker et al., 2017)
# E = p (1 - t)^2 + (1 - p) t^2,  dE/dp = (1 - t)^2 - t^2 = 1 - 2t,  dp/dtheta = p (1 - p).

TARGET = 0.45


def _exact_gradient(theta: float) -> float:
    p = 1.0 / (1.0 + math.exp(-theta))
    return p * (1 - p) * (1 - 2 * TARGET)


@pytest.mark.parametrize("theta", [-1.0, 0.0, 1.5])
def test_rebar_exact_gradient_derivation(theta: float) -> None:
    theta_t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    p = theta_t.sigmoid()
    expected_cost = p * (1 - TARGET) ** 2 + (1 - p) * TARGET**2
    (autograd_gradient,) = torch.autograd.grad(expected_cost, theta_t)
    assert autograd_gradient.item() == pytest.approx(_exact_gradient(theta), rel=1e-12)


def _per_sample_gradients(
    theta: float, shape: tuple[int, ...], seed: int, baseline: str
) -> torch.Tensor:
    """Score-function gradient estimates, one per row of ``shape`` (``[N]`` or ``[N, k]``)."""
    generator = _seeded(seed)
    # One copy of theta per estimate, so autograd returns every estimate separately.
    thetas = torch.full(shape[:1], theta, dtype=torch.float64, requires_grad=True)
    logits = thetas.view(-1, *([1] * (len(shape) - 1))).expand(shape)
    samples = torch.bernoulli(logits.detach().sigmoid(), generator=generator)
    log_prob = torch.distributions.Bernoulli(logits=logits).log_prob(samples)
    cost = (samples - TARGET) ** 2
    if baseline == "none":
        surrogate = score_function(log_prob, cost)
    elif baseline == "constant":
        surrogate = score_function(log_prob, cost, baseline=0.25)
    elif baseline == "leave_one_out":
        # Each row is one group of k samples: the mean cost of the other k - 1.
        surrogate = score_function(log_prob, cost, baseline=leave_one_out(cost, shape[1]))
    else:
        raise AssertionError(baseline)
    if surrogate.dim() == 2:
        surrogate = surrogate.mean(1)
    (gradients,) = torch.autograd.grad(surrogate.sum(), thetas)
    return gradients


@pytest.mark.parametrize("theta", [-1.0, 0.5])
@pytest.mark.parametrize(
    ("baseline", "shape"),
    [("none", (200_000,)), ("constant", (200_000,)), ("leave_one_out", (50_000, 4))],
)
def test_rebar_score_function_is_unbiased(
    theta: float, baseline: str, shape: tuple[int, ...]
) -> None:
    gradients = _per_sample_gradients(theta, shape, seed=123, baseline=baseline)
    exact = _exact_gradient(theta)
    standard_error = gradients.std().item() / math.sqrt(len(gradients))
    z = (gradients.mean().item() - exact) / standard_error
    assert abs(z) < 4, (
        f"{baseline}: mean {gradients.mean().item():.5f} vs exact {exact:.5f}, z={z:.2f}"
    )


def test_rebar_baselines_reduce_variance() -> None:
    """Variance per function evaluation: a baseline must do more than average its k samples.

    Leave-one-out spends k = 2 evaluations per estimate, so averaging alone (a baseline of 0)
    would halve its variance; ``var * k`` removes that share. Measured at theta = 0.5: no
    baseline 1.36e-2, leave-one-out 1.25e-3 (0.09x), the constant 0.25 (about E[f]) 2.2e-5.
    """
    per_evaluation = {
        baseline: _per_sample_gradients(0.5, shape, seed=7, baseline=baseline).var().item()
        * math.prod(shape[1:])
        for baseline, shape in [
            ("none", (50_000,)),
            ("constant", (50_000,)),
            ("leave_one_out", (50_000, 2)),
        ]
    }
    # Without a baseline the estimate is (b - t)^2 (b - p), whose spread is driven by the cost
    # level; subtracting the other sample's cost, or a constant near E[f], removes most of it.
    assert per_evaluation["leave_one_out"] <= 0.2 * per_evaluation["none"], per_evaluation
    assert per_evaluation["constant"] <= 0.01 * per_evaluation["none"], per_evaluation


# --------------------------------------------------------------------------- BinaryLinear


def test_binary_linear_forward_uses_exact_signs() -> None:
    torch.manual_seed(0)
    layer = BinaryLinear(5, 3)
    with torch.no_grad():
        layer.weight[0, 0] = 0.0
    binary = layer.binary_weight()
    assert bool(((binary == 1) | (binary == -1)).all())
    assert binary[0, 0].item() == 1.0, "sign(0) must be +1"
    x = torch.randn(7, 5)
    expected = x @ torch.where(layer.weight >= 0, 1.0, -1.0).T + layer.bias
    torch.testing.assert_close(layer(x), expected)


def test_binary_linear_gradient_reaches_latent_weights() -> None:
    torch.manual_seed(0)
    layer = BinaryLinear(4, 2)
    x = torch.randn(6, 4)
    grad_out = torch.randn(6, 2)
    layer(x).backward(grad_out)
    # Straight through: dL/dW = dL/dsign(W) = grad_out^T x.
    torch.testing.assert_close(layer.weight.grad, grad_out.T @ x)
    torch.testing.assert_close(layer.bias.grad, grad_out.sum(0))


def test_binary_linear_without_bias() -> None:
    layer = BinaryLinear(3, 2, bias=False)
    assert layer.bias is None
    assert layer(torch.ones(1, 3)).shape == (1, 2)


def test_binary_linear_latent_weights_stay_clipped_during_training() -> None:
    torch.manual_seed(0)
    layer = BinaryLinear(8, 4)
    optimizer = torch.optim.SGD(layer.parameters(), lr=5.0)
    initial_signs = layer.binary_weight().detach().clone()
    for _ in range(20):
        optimizer.zero_grad()
        layer(torch.randn(16, 8)).pow(2).mean().backward()
        optimizer.step()
        layer.clip_weights_()
        assert layer.weight.abs().max().item() <= 1.0
    assert not torch.equal(layer.binary_weight(), initial_signs), "no weight ever flipped"


@pytest.mark.parametrize(("in_features", "out_features"), [(0, 3), (3, 0)])
def test_binary_linear_rejects_bad_sizes(in_features: int, out_features: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        BinaryLinear(in_features, out_features)
