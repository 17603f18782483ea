"""Tests for pgrad.baselines: hand cases, independence from the current batch, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgrad.baselines import (
    EMABaseline,
    GreedyRolloutBaseline,
    group_mean_advantage,
    group_normalize,
    leave_one_out,
    paired_t_test,
    reinforce_pp_advantage,
)

# --- EMABaseline ------------------------------------------------------------------------------


def test_ema_is_zero_before_any_update():
    baseline = EMABaseline()
    assert baseline.value == 0.0
    torch.testing.assert_close(baseline(torch.ones(2, 3)), torch.zeros(2, 3))


def test_ema_first_update_sets_the_value_then_averages():
    baseline = EMABaseline(decay=0.5)
    baseline.update(torch.tensor([[1.0, 3.0]]))  # mean 2, set directly
    assert baseline.value == pytest.approx(2.0)
    baseline.update(torch.tensor([[6.0, 6.0]]))  # 0.5 * 2 + 0.5 * 6
    assert baseline.value == pytest.approx(4.0)
    assert baseline.num_updates == 2


def test_ema_uses_only_previous_batches():
    baseline = EMABaseline(decay=0.9)
    baseline.update(torch.full((4, 2), 5.0))
    current = torch.full((4, 2), 100.0)
    # The batch it is applied to does not move it: that is what keeps it unbiased.
    torch.testing.assert_close(baseline(current), torch.full((4, 2), 5.0))
    assert baseline.value == 5.0
    baseline.update(current)
    assert baseline.value == pytest.approx(0.9 * 5.0 + 0.1 * 100.0)


def test_ema_masked_update():
    baseline = EMABaseline(decay=0.5)
    returns = torch.tensor([[1.0, 100.0], [3.0, float("nan")]])
    mask = torch.tensor([[True, False], [True, False]])
    baseline.update(returns, mask)
    assert baseline.value == pytest.approx(2.0)
    baseline.update(returns, torch.zeros(2, 2))  # nothing masked in: unchanged
    assert baseline.value == pytest.approx(2.0)
    assert baseline.num_updates == 1


def test_ema_output_is_a_constant_like_returns():
    baseline = EMABaseline()
    baseline.update(torch.tensor([1.0, 2.0]))
    returns = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out = baseline(returns)
    assert out.shape == (3, 4) and out.dtype == torch.float64 and not out.requires_grad


def test_ema_state_dict_round_trip():
    baseline = EMABaseline(decay=0.8)
    baseline.update(torch.tensor([1.0, 2.0]))
    baseline.update(torch.tensor([4.0]))
    restored = EMABaseline()
    restored.load_state_dict(baseline.state_dict())
    assert restored.state_dict() == baseline.state_dict()
    restored.update(torch.tensor([0.0]))
    baseline.update(torch.tensor([0.0]))
    assert restored.value == baseline.value


def test_ema_load_rejects_incomplete_state():
    with pytest.raises(ValueError, match=r"missing \['num_updates'\]"):
        EMABaseline().load_state_dict({"decay": 0.9, "value": 1.0})


@pytest.mark.parametrize("decay", [1.0, -0.1, float("nan"), "0.9"])
def test_ema_decay_validation(decay):
    with pytest.raises(ValueError, match=r"decay must be a number in \[0, 1\)"):
        EMABaseline(decay)


def test_ema_rejects_non_finite_returns():
    with pytest.raises(ValueError, match="non-finite"):
        EMABaseline().update(torch.tensor([1.0, float("inf")]))


def test_ema_mask_shape_must_match():
    with pytest.raises(ValueError, match=r"mask has shape \(3,\) but returns has shape \(2, 3\)"):
        EMABaseline().update(torch.zeros(2, 3), torch.ones(3, dtype=torch.bool))


# --- leave_one_out ----------------------------------------------------------------------------


def test_leave_one_out_by_hand():
    returns = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    # Groups of 2: (1, 2) and (3, 6); each sample gets the other one's return.
    torch.testing.assert_close(leave_one_out(returns, 2), torch.tensor([[2.0, 1.0, 6.0, 3.0]]))
    # One group of 4, total 12: b_i = (12 - R_i) / 3.
    torch.testing.assert_close(
        leave_one_out(returns, 4), torch.tensor([[11 / 3, 10 / 3, 3.0, 2.0]])
    )


def test_leave_one_out_per_time_step():
    returns = torch.tensor([[1.0, 3.0], [10.0, 20.0]])
    torch.testing.assert_close(leave_one_out(returns, 2), torch.tensor([[3.0, 1.0], [20.0, 10.0]]))


def test_leave_one_out_masked_entries_count_as_zero():
    returns = torch.tensor([[1.0, 50.0, 3.0, 6.0]])
    mask = torch.tensor([[True, False, True, True]])
    # Masked returns (1, 0, 3, 6), total 10: b_i = (10 - R_i) / 3, denominator still k - 1.
    expected = torch.tensor([[3.0, 10 / 3, 7 / 3, 4 / 3]])
    torch.testing.assert_close(leave_one_out(returns, 4, mask), expected)
    torch.testing.assert_close(leave_one_out(returns, 4, mask.float()), expected)


def test_leave_one_out_masked_over_time_and_groups():
    # [T, N] = [2, 4], groups of 2: each entry's baseline is its partner's return at that step,
    # or 0 where the partner is masked out.
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    mask = torch.tensor([[True, True, False, True], [True, False, True, True]])
    expected = torch.tensor([[2.0, 1.0, 4.0, 0.0], [0.0, 5.0, 8.0, 7.0]])
    torch.testing.assert_close(leave_one_out(returns, 2, mask), expected)
    # one dimension: [N]
    torch.testing.assert_close(leave_one_out(returns[0], 2, mask[0]), expected[0])


def test_leave_one_out_names_itself_and_a_bad_mask_in_its_errors():
    with pytest.raises(ValueError, match=r"^leave_one_out needs an integer group_size >= 2"):
        leave_one_out(torch.zeros(4), 1)
    with pytest.raises(ValueError, match=r"mask must be bool or 0/1, got values such as \[2.0\]"):
        leave_one_out(torch.zeros(2), 2, torch.tensor([1.0, 2.0]))


def test_leave_one_out_baseline_ignores_own_return():
    gen = torch.Generator().manual_seed(0)
    returns = torch.randn(5, 12, generator=gen)
    changed = returns.clone()
    changed[:, 7] += 100.0
    before, after = leave_one_out(returns, 3), leave_one_out(changed, 3)
    torch.testing.assert_close(before[:, 7], after[:, 7])
    # Its group mates (6 and 8) see the change; the other groups do not.
    assert not torch.allclose(before[:, 6], after[:, 6])
    torch.testing.assert_close(before[:, :6], after[:, :6])
    torch.testing.assert_close(before[:, 9:], after[:, 9:])


def test_leave_one_out_is_a_constant():
    returns = torch.randn(2, 4, requires_grad=True)
    assert not leave_one_out(returns, 2).requires_grad


@pytest.mark.parametrize(
    ("shape", "group_size", "message"),
    [
        ((3, 5), 2, r"5 samples, not a multiple of group_size=2"),
        ((3, 4), 1, r"integer group_size >= 2, got 1"),
        ((3, 4), 2.0, r"integer group_size >= 2, got 2.0"),
        ((), 2, r"0-d tensor"),
    ],
)
def test_group_validation(shape, group_size, message):
    with pytest.raises(ValueError, match=message):
        leave_one_out(torch.zeros(shape), group_size)
    for estimator in (group_normalize, group_mean_advantage, reinforce_pp_advantage):
        with pytest.raises(ValueError, match=message):
            estimator(torch.zeros(shape), group_size)


def test_numpy_integer_group_size_is_accepted():
    torch.testing.assert_close(
        leave_one_out(torch.tensor([1.0, 2.0]), np.int64(2)), torch.tensor([2.0, 1.0])
    )


def test_leave_one_out_mask_shape_must_match():
    with pytest.raises(ValueError, match=r"mask has shape \(4,\) but returns has shape \(2, 4\)"):
        leave_one_out(torch.zeros(2, 4), 2, torch.ones(4, dtype=torch.bool))


# --- group_normalize ----------------------------------------------------------------------------


def test_group_normalize_by_hand():
    returns = torch.tensor([[1.0, 3.0, 2.0, 2.0]])
    # Group (1, 3): mean 2, population std 1 -> (-1, 1). Group (2, 2): std 0 -> zeros, not nan.
    out = group_normalize(returns, 2)
    torch.testing.assert_close(out, torch.tensor([[-1.0, 1.0, 0.0, 0.0]]))
    # One group of 3: (0, 0, 3) has mean 1 and population std sqrt(2).
    out = group_normalize(torch.tensor([0.0, 0.0, 3.0]), 3, eps=0.0)
    torch.testing.assert_close(out, torch.tensor([-1.0, -1.0, 2.0]) / math.sqrt(2.0))


def test_group_normalize_groups_have_zero_mean_unit_variance():
    gen = torch.Generator().manual_seed(1)
    out = group_normalize(torch.randn(3, 20, generator=gen) * 7 + 3, 5).unflatten(-1, (4, 5))
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.std(-1, correction=0), torch.ones(3, 4), atol=1e-6, rtol=0)


def test_group_normalize_eps_is_added_to_the_std():
    # Group (1, 3): mean 2, population std 1; eps = 0.5 divides by 1.5.
    out = group_normalize(torch.tensor([1.0, 3.0]), 2, eps=0.5)
    torch.testing.assert_close(out, torch.tensor([-1.0, 1.0]) / 1.5)


def test_group_normalize_names_itself_in_its_errors():
    with pytest.raises(ValueError, match=r"^group_normalize needs an integer group_size >= 2"):
        group_normalize(torch.zeros(4), 1)
    with pytest.raises(ValueError, match=r"^group_normalize: the last dimension"):
        group_normalize(torch.zeros(5), 2)


def test_group_normalize_rejects_negative_eps():
    with pytest.raises(ValueError, match="eps must be >= 0, got -1"):
        group_normalize(torch.zeros(4), 2, eps=-1.0)


# --- group_mean_advantage (Dr. GRPO) ------------------------------------------------------------


def test_group_mean_advantage_by_hand():
    returns = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 4.0, 8.0]])
    # Groups of 2 per row: means 1.5, 4.5 and 0, 6; no std anywhere.
    expected = torch.tensor([[-0.5, 0.5, -1.5, 1.5], [0.0, 0.0, -2.0, 2.0]])
    torch.testing.assert_close(group_mean_advantage(returns, 2), expected)
    # One group of 4 in row 0: mean 3.
    torch.testing.assert_close(
        group_mean_advantage(returns[0], 4), torch.tensor([-2.0, -1.0, 0.0, 3.0])
    )


def test_group_mean_advantage_is_scaled_leave_one_out():
    # R_i - mean = (k - 1) / k * (R_i - b_i): the same direction as RLOO, a constant scale.
    gen = torch.Generator().manual_seed(2)
    returns = torch.randn(3, 12, generator=gen, dtype=torch.float64)
    rloo = returns - leave_one_out(returns, 4)
    torch.testing.assert_close(group_mean_advantage(returns, 4), 0.75 * rloo)
    assert not group_mean_advantage(returns.requires_grad_(), 4).requires_grad


# --- reinforce_pp_advantage ---------------------------------------------------------------------


def test_reinforce_pp_advantage_by_hand():
    returns = torch.tensor([1.0, 3.0, 0.0, 4.0])
    # Centred per group: (-1, 1, -2, 2); population std over the batch sqrt(10 / 4).
    expected = torch.tensor([-1.0, 1.0, -2.0, 2.0]) / math.sqrt(2.5)
    torch.testing.assert_close(reinforce_pp_advantage(returns, 2, eps=0.0), expected)
    # The std is the whole batch's, over leading dimensions too: a second row with 10x the spread
    # shrinks the first row's advantages.
    both = torch.stack([returns, 10 * returns])
    scale = math.sqrt((10 + 1000) / 8)
    torch.testing.assert_close(
        reinforce_pp_advantage(both, 2, eps=0.0)[0], torch.tensor([-1.0, 1.0, -2.0, 2.0]) / scale
    )
    # Unlike GRPO, groups keep their relative size: (1, 3) gets half the weight of (0, 4).
    grpo = group_normalize(returns, 2)
    torch.testing.assert_close(grpo, torch.tensor([-1.0, 1.0, -1.0, 1.0]))


def test_reinforce_pp_equal_returns_give_zeros():
    torch.testing.assert_close(reinforce_pp_advantage(torch.full((6,), 3.0), 3), torch.zeros(6))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        reinforce_pp_advantage(torch.zeros(4), 2, eps=-1.0)


# --- paired_t_test and GreedyRolloutBaseline -----------------------------------------------------


def test_paired_t_test_by_hand():
    # d = (1, 2, 3): mean 2, sample std 1, t = 2 sqrt(3); for 2 degrees of freedom
    # P(T >= t) = (1 - t / sqrt(2 + t^2)) / 2 in closed form.
    t = 2 * math.sqrt(3)
    expected = (1 - t / math.sqrt(2 + t * t)) / 2
    p = paired_t_test(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    assert p == pytest.approx(expected, rel=1e-12)
    # One degree of freedom is the Cauchy distribution: P(T >= t) = 1/2 - atan(t) / pi.
    # d = (1, 3): mean 2, std sqrt(2), t = 2 / (sqrt(2) / sqrt(2)) = 2.
    p = paired_t_test(torch.tensor([1.0, 3.0]), torch.zeros(2))
    assert p == pytest.approx(0.5 - math.atan(2.0) / math.pi, rel=1e-12)
    # The sign matters: the test is one-sided.
    assert paired_t_test(torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(
        1 - expected, rel=1e-12
    )
    # No spread: certain.
    assert paired_t_test(torch.ones(4), torch.zeros(4)) == 0.0
    assert paired_t_test(torch.zeros(4), torch.zeros(4)) == 1.0


@pytest.mark.parametrize("m", [2, 3, 4, 7, 30, 501, 10_000])
def test_paired_t_test_matches_scipy(m):
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(m)
    first = torch.randn(m, generator=gen, dtype=torch.float64) + 0.3 / math.sqrt(m)
    second = torch.randn(m, generator=gen, dtype=torch.float64)
    expected = stats.ttest_rel(first.numpy(), second.numpy(), alternative="greater").pvalue
    assert paired_t_test(first, second) == pytest.approx(expected, rel=1e-9, abs=1e-14)


class Scale(torch.nn.Module):
    """A stand-in policy whose greedy reward on instance x is ``weight * x``."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weight))


def greedy_reward(module: Scale, instances: torch.Tensor) -> torch.Tensor:
    return module.weight * instances


def test_greedy_rollout_baseline_is_a_frozen_copy():
    policy = Scale(1.0)
    baseline = GreedyRolloutBaseline(policy, greedy_reward)
    instances = torch.tensor([1.0, 2.0, 4.0])
    out = baseline(instances)
    torch.testing.assert_close(out, instances)
    assert not out.requires_grad
    assert not any(p.requires_grad for p in baseline.module.parameters())
    with torch.no_grad():
        policy.weight += 1.0
    # Training the policy does not move the baseline.
    torch.testing.assert_close(baseline(instances), instances)


def test_greedy_rollout_baseline_replaced_only_when_significantly_better():
    gen = torch.Generator().manual_seed(0)
    instances = 1.0 + torch.rand(100, generator=gen)
    policy = Scale(1.0)
    baseline = GreedyRolloutBaseline(policy, greedy_reward, alpha=0.05)
    # Equal: no evidence, keep the copy.
    result = baseline.update(policy, instances)
    assert not result.replaced and result.p_value == 1.0
    # Worse: keep.
    with torch.no_grad():
        policy.weight.fill_(0.9)
    assert not baseline.update(policy, instances).replaced

    # Better on every instance, with noise so that the t statistic is finite.
    def noisy(module, x):
        return greedy_reward(module, x) + 0.01 * torch.randn(x.shape, generator=gen)

    baseline.rollout = noisy
    with torch.no_grad():
        policy.weight.fill_(1.1)
    result = baseline.update(policy, instances)
    assert result.replaced and result.p_value < 1e-6 and baseline.num_replacements == 1
    assert result.policy_mean > result.baseline_mean
    baseline.rollout = greedy_reward
    torch.testing.assert_close(baseline(instances), 1.1 * instances)
    # The new copy is again frozen and separate from the policy.
    with torch.no_grad():
        policy.weight.fill_(5.0)
    torch.testing.assert_close(baseline(instances), 1.1 * instances)


def test_greedy_rollout_baseline_needs_a_significant_improvement():
    # A mean improvement that the test cannot tell from noise leaves the copy in place.
    instances = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.2])
    policy = Scale(1.0)
    baseline = GreedyRolloutBaseline(policy, greedy_reward)
    with torch.no_grad():
        policy.weight.fill_(1.5)
    result = baseline.update(policy, instances)
    # d = 0.5 * x: mean 0.12, sample std ~ 0.57, t ~ 0.47 on 4 degrees of freedom.
    assert result.policy_mean > result.baseline_mean
    assert not result.replaced and 0.2 < result.p_value < 0.5


def test_greedy_rollout_baseline_state_round_trip_and_validation():
    baseline = GreedyRolloutBaseline(Scale(2.0), greedy_reward, alpha=0.1)
    restored = GreedyRolloutBaseline(Scale(0.0), greedy_reward)
    restored.load_state_dict(baseline.state_dict())
    torch.testing.assert_close(restored(torch.ones(2)), torch.full((2,), 2.0))
    assert restored.alpha == 0.1
    for alpha in (0.0, 1.0, "0.05"):
        with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\)"):
            GreedyRolloutBaseline(Scale(1.0), greedy_reward, alpha=alpha)
    with pytest.raises(ValueError, match="rewards \\[B\\] with B >= 2"):
        baseline.update(Scale(1.0), torch.ones(1))


def test_ema_with_decay_zero_keeps_only_the_last_batch():
    baseline = EMABaseline(decay=0.0)
    baseline.update(torch.tensor([1.0]))
    baseline.update(torch.tensor([3.0, 5.0]))
    assert baseline.value == 4.0


def test_ema_names_a_mask_that_is_not_zero_or_one():
    with pytest.raises(ValueError, match=r"mask must be bool or 0/1, got values such as \[2.0\]"):
        EMABaseline().update(torch.ones(2), torch.tensor([1.0, 2.0]))
