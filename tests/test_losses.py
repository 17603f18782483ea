"""Tests for pgrad.losses: hand cases, masks, gradients, validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

from pgrad.losses import (
    LossParts,
    entropy_bonus,
    explained_variance,
    normalize_advantages,
    reinforce_loss,
    value_loss,
)

# --- reinforce_loss -----------------------------------------------------------------------------


def test_reinforce_loss_by_hand():
    log_prob = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    advantages = torch.tensor([[2.0, 3.0]])
    # -((-1)(2) + (-2)(3)) / 2 = 4
    loss = reinforce_loss(log_prob, advantages)
    torch.testing.assert_close(loss, torch.tensor(4.0))
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([[-1.0, -1.5]]))


def test_reinforce_loss_masked_mean():
    log_prob = torch.tensor([[-1.0, -2.0], [-4.0, float("nan")]], requires_grad=True)
    advantages = torch.tensor([[2.0, 3.0], [1.0, 5.0]])
    mask = torch.tensor([[True, False], [True, False]])
    # Over the two masked-in entries: -((-1)(2) + (-4)(1)) / 2 = 3; the nan does not leak in.
    loss = reinforce_loss(log_prob, advantages, mask)
    torch.testing.assert_close(loss, torch.tensor(3.0))
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([[-1.0, 0.0], [-0.5, 0.0]]))
    torch.testing.assert_close(reinforce_loss(log_prob, advantages, mask.float()), loss)


def test_reinforce_loss_all_masked_is_zero():
    log_prob = torch.randn(3, 2, requires_grad=True)
    loss = reinforce_loss(log_prob, torch.randn(3, 2), torch.zeros(3, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(log_prob.grad, torch.zeros(3, 2))


def test_reinforce_loss_detaches_advantages():
    log_prob = torch.randn(3, 2, requires_grad=True)
    critic = torch.randn(3, 2, requires_grad=True)
    reinforce_loss(log_prob, 2.0 * critic).backward()
    assert critic.grad is None
    assert log_prob.grad is not None


def test_reinforce_loss_rejects_broadcasting_shapes():
    message = (
        r"^shapes must match exactly, got log_prob \(4, 3\), advantages \(4, 3, 1\) "
        r"\(broadcasting them would silently pair the wrong entries\)$"
    )
    with pytest.raises(ValueError, match=message):
        reinforce_loss(torch.zeros(4, 3), torch.zeros(4, 3, 1))
    with pytest.raises(ValueError, match=r"mask \(4,\)"):
        reinforce_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(4, dtype=torch.bool))


# --- entropy_bonus ------------------------------------------------------------------------------


class NoEntropyCategorical(Categorical):
    """A Categorical that pretends to have no closed-form entropy."""

    def entropy(self) -> torch.Tensor:
        raise NotImplementedError


def test_entropy_bonus_closed_form():
    logits = torch.zeros(2, 3, 2)  # uniform over 2 actions: entropy log 2 everywhere
    logits[1, 0] = torch.tensor([0.0, math.log(3.0)])  # probabilities (1/4, 3/4)
    dist = Categorical(logits=logits)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(entropy_bonus(dist), torch.tensor((5 * math.log(2.0) + h) / 6))
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[1, 0] = True
    torch.testing.assert_close(entropy_bonus(dist, mask=mask), torch.tensor(h))


def test_entropy_bonus_fallback_value_is_minus_log_prob():
    dist = NoEntropyCategorical(logits=torch.randn(4, 3, 5))
    log_prob = dist.log_prob(dist.sample())
    torch.testing.assert_close(entropy_bonus(dist, log_prob), -log_prob.mean())
    mask = torch.rand(4, 3) < 0.5
    mask[0, 0] = True
    torch.testing.assert_close(entropy_bonus(dist, log_prob, mask), -log_prob[mask].mean())


def test_entropy_bonus_fallback_gradient_is_unbiased():
    # Against the exact entropy gradient of a 4-action softmax, within 4 standard errors.
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.5, -1.0, 1.5, 0.0], dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(Categorical(logits=logits).entropy(), logits)
    probs = torch.softmax(logits.detach(), -1)
    n = 200_000
    actions = torch.multinomial(probs, n, replacement=True, generator=gen)
    dist = NoEntropyCategorical(logits=logits.expand(n, 4))
    (estimate,) = torch.autograd.grad(entropy_bonus(dist, dist.log_prob(actions)), logits)
    # Per-sample gradients in closed form: -log p(a) * (onehot(a) - p).
    log_p = probs.log()[actions]
    per_sample = -log_p[:, None] * (torch.nn.functional.one_hot(actions, 4) - probs)
    torch.testing.assert_close(estimate, per_sample.mean(0))
    standard_error = per_sample.std(0) / math.sqrt(n)
    assert torch.all((estimate - exact).abs() <= 4 * standard_error), (estimate, exact)
    # The naive -log_prob surrogate would estimate zero, far from the exact gradient.
    assert exact.abs().max() > 20 * standard_error.max()


def test_entropy_bonus_fallback_needs_log_prob():
    message = (
        "^NoEntropyCategorical has no closed-form entropy; pass log_prob of sampled actions for "
        "the single-sample estimate$"
    )
    with pytest.raises(ValueError, match=message):
        entropy_bonus(NoEntropyCategorical(logits=torch.zeros(3, 2)))


def test_entropy_bonus_catches_normal_without_independent():
    loc = torch.zeros(4, 3, 2)
    log_prob = Independent(Normal(loc, 1.0), 1).log_prob(loc)
    entropy_bonus(Independent(Normal(loc, 1.0), 1), log_prob)  # fine: [4, 3] both
    with pytest.raises(ValueError, match=r"entropy \(4, 3, 2\), log_prob \(4, 3\)"):
        entropy_bonus(Normal(loc, 1.0), log_prob)
    with pytest.raises(ValueError, match=r"mask \(4,\)"):
        entropy_bonus(Independent(Normal(loc, 1.0), 1), mask=torch.ones(4, dtype=torch.bool))


# --- value_loss -----------------------------------------------------------------------------------


def test_value_loss_by_hand():
    values = torch.tensor([[1.0, 2.0], [3.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[3.0, 2.0], [0.0, 100.0]], requires_grad=True)
    # 0.5 * (4 + 0 + 9 + 10000) / 4
    torch.testing.assert_close(value_loss(values, targets), torch.tensor(10013 / 8))
    mask = torch.tensor([[True, True], [True, False]])
    loss = value_loss(values, targets, mask)  # 0.5 * (4 + 0 + 9) / 3
    torch.testing.assert_close(loss, torch.tensor(13 / 6))
    loss.backward()
    assert targets.grad is None
    torch.testing.assert_close(values.grad, torch.tensor([[-2.0, 0.0], [3.0, 0.0]]) / 3)


def test_value_loss_rejects_broadcasting_shapes():
    with pytest.raises(ValueError, match=r"values \(5, 2, 1\), targets \(5, 2\)"):
        value_loss(torch.zeros(5, 2, 1), torch.zeros(5, 2))


def test_value_loss_rejects_a_mask_of_another_shape():
    with pytest.raises(ValueError, match=r"mask \(3,\)"):
        value_loss(torch.zeros(2), torch.zeros(2), torch.ones(3, dtype=torch.bool))


# --- normalize_advantages ---------------------------------------------------------------------


def test_normalize_advantages_by_hand():
    out = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), eps=0.0)
    # Mean 2.5, population std sqrt(1.25).
    torch.testing.assert_close(out, (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / math.sqrt(1.25))


def test_normalize_advantages_masked():
    advantages = torch.tensor([[1.0, 100.0, 3.0]], requires_grad=True)
    mask = torch.tensor([[True, False, True]])
    # Over (1, 3): mean 2, std 1; the masked-out entry becomes 0.
    out = normalize_advantages(advantages, mask, eps=0.0)
    torch.testing.assert_close(out, torch.tensor([[-1.0, 0.0, 1.0]]))
    assert not out.requires_grad


def test_normalize_advantages_constant_and_validation():
    torch.testing.assert_close(normalize_advantages(torch.full((3,), 7.0)), torch.zeros(3))
    with pytest.raises(ValueError, match=r"advantages \(3,\), mask \(2,\)"):
        normalize_advantages(torch.zeros(3), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        normalize_advantages(torch.zeros(3), eps=-1e-3)


def test_normalize_advantages_eps_is_added_to_the_std():
    advantages = torch.tensor([1.0, 2.0, 3.0, 4.0])
    centred = advantages - 2.5
    out = normalize_advantages(advantages, eps=0.5)
    torch.testing.assert_close(out, centred / (math.sqrt(1.25) + 0.5))
    # the default eps is tiny: next to eps = 0 it changes nothing visible
    torch.testing.assert_close(
        normalize_advantages(advantages), centred / math.sqrt(1.25), rtol=1e-6, atol=0
    )


@pytest.mark.parametrize(
    "loss",
    [
        lambda mask: reinforce_loss(torch.zeros(2), torch.zeros(2), mask),
        lambda mask: value_loss(torch.zeros(2), torch.zeros(2), mask),
        lambda mask: normalize_advantages(torch.zeros(2), mask),
        lambda mask: explained_variance(torch.zeros(2), torch.ones(2), mask),
    ],
    ids=["reinforce_loss", "value_loss", "normalize_advantages", "explained_variance"],
)
def test_a_mask_that_is_not_zero_or_one_is_named(loss):
    with pytest.raises(ValueError, match=r"mask must be bool or 0/1, got values such as \[2.0\]"):
        loss(torch.tensor([1.0, 2.0]))


# --- explained_variance ---------------------------------------------------------------------------


def test_explained_variance():
    targets = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(targets, targets) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), targets) == pytest.approx(0.0)
    # Residuals (1, -1, 1, -1): variance 1 against Var[targets] = 1.25.
    values = targets + torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert explained_variance(values, targets) == pytest.approx(1.0 - 1.0 / 1.25)
    assert math.isnan(explained_variance(torch.zeros(3), torch.ones(3)))


def test_explained_variance_masked():
    targets = torch.tensor([1.0, 3.0, 50.0])
    values = torch.tensor([1.0, 3.0, -50.0])
    mask = torch.tensor([True, True, False])
    result = explained_variance(values, targets, mask)
    assert isinstance(result, float) and result == pytest.approx(1.0)
    assert math.isnan(explained_variance(values, targets, torch.zeros(3)))


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((3,), (4,), None), r"values \(3,\), targets \(4,\)"),
        (((4,), (3,), None), r"values \(4,\), targets \(3,\)"),
        (((4,), (4,), (5,)), r"values \(4,\), targets \(4,\), mask \(5,\)"),
    ],
)
def test_explained_variance_names_mismatched_shapes(shapes, message):
    values, targets, mask = (None if shape is None else torch.ones(shape) for shape in shapes)
    with pytest.raises(ValueError, match=message):
        explained_variance(values, targets, mask)


# --- LossParts ------------------------------------------------------------------------------------


def test_loss_parts_scalars():
    parts = LossParts(
        total=torch.tensor(1.5, requires_grad=True),
        policy=torch.tensor(1.0),
        entropy=torch.tensor(0.5),
        value=torch.tensor(2.0),
    )
    assert parts.scalars() == {
        "total_loss": 1.5,
        "policy_loss": 1.0,
        "entropy": 0.5,
        "value_loss": 2.0,
    }
    no_critic = LossParts(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0))
    assert "value_loss" not in no_critic.scalars()
