"""Loss aggregation over tokens and the KL estimators: hand cases with unequal lengths."""

from __future__ import annotations

import math

import pytest
import torch

from pgrad.losses import AGGREGATIONS, kl_k1, kl_k3, sequence_policy_loss

# Two sequences of lengths 3 and 1; the second row's padding holds junk (nan, a large number).
LOG_PROBS = [[-1.0, -2.0, -3.0], [-4.0, float("nan"), 50.0]]
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])
ADVANTAGES = torch.tensor([2.0, 3.0])


@pytest.mark.parametrize(
    "aggregation,expected,grad",
    [
        # Sums per sequence -6 and -4, times A: -12 and -12.
        # seq_sum: -(-12 - 12) / 2 = 12; d/dl_it = -A_i / B.
        ("seq_sum", 12.0, [[-1.0, -1.0, -1.0], [-1.5, 0.0, 0.0]]),
        # seq_mean: means -2 and -4, times A: -4 and -12, mean -8; d/dl_it = -A_i / (B |o_i|).
        ("seq_mean", 8.0, [[-1 / 3, -1 / 3, -1 / 3], [-1.5, 0.0, 0.0]]),
        # token_mean: -(-24) / 4 tokens = 6; d/dl_it = -A_i / 4.
        ("token_mean", 6.0, [[-0.5, -0.5, -0.5], [-0.75, 0.0, 0.0]]),
        # token_sum_norm: -(-24) / (2 sequences * 3 positions) = 4; d/dl_it = -A_i / 6.
        ("token_sum_norm", 4.0, [[-1 / 3, -1 / 3, -1 / 3], [-0.5, 0.0, 0.0]]),
    ],
)
def test_aggregations_by_hand(aggregation, expected, grad):
    log_probs = torch.tensor(LOG_PROBS, requires_grad=True)
    loss = sequence_policy_loss(log_probs, ADVANTAGES, MASK, aggregation)
    torch.testing.assert_close(loss, torch.tensor(expected))
    loss.backward()
    torch.testing.assert_close(log_probs.grad, torch.tensor(grad))


def test_token_sum_norm_takes_the_generation_budget():
    log_probs = torch.tensor(LOG_PROBS)
    # Dr. GRPO's constant: the budget, not the batch's padded length. 24 / (2 * 4) = 3.
    loss = sequence_policy_loss(log_probs, ADVANTAGES, MASK, "token_sum_norm", max_length=4)
    torch.testing.assert_close(loss, torch.tensor(3.0))
    with pytest.raises(ValueError, match="max_length must be an integer >= L = 3, got 2"):
        sequence_policy_loss(log_probs, ADVANTAGES, MASK, "token_sum_norm", max_length=2)


def test_equal_lengths_make_the_aggregations_proportional():
    gen = torch.Generator().manual_seed(0)
    log_probs = -torch.rand(4, 5, generator=gen)
    advantages = torch.randn(4, generator=gen)
    seq_sum = sequence_policy_loss(log_probs, advantages, None, "seq_sum")
    # Without padding every sequence has L = 5 tokens: all four differ only by 1/5.
    for aggregation in ("seq_mean", "token_mean", "token_sum_norm"):
        torch.testing.assert_close(
            sequence_policy_loss(log_probs, advantages, None, aggregation), seq_sum / 5
        )
    torch.testing.assert_close(
        sequence_policy_loss(log_probs, advantages, torch.ones(4, 5), "seq_sum"), seq_sum
    )


def test_advantages_are_constants_and_empty_batches_are_zero():
    advantages = torch.tensor([1.0, -1.0], requires_grad=True)
    log_probs = torch.tensor([[-1.0, -1.0], [-2.0, -2.0]], requires_grad=True)
    sequence_policy_loss(log_probs, advantages, None, "seq_sum").backward()
    assert advantages.grad is None
    empty = torch.zeros(2, 2, dtype=torch.bool)
    for aggregation in AGGREGATIONS:
        loss = sequence_policy_loss(log_probs, advantages, empty, aggregation)
        assert loss.item() == 0.0 and math.isfinite(loss.item())


@pytest.mark.parametrize(
    "log_probs,advantages,mask,aggregation,match",
    [
        (torch.zeros(2, 3), torch.zeros(2), None, "sum", "aggregation must be one of"),
        (torch.zeros(2, 3), torch.zeros(3), None, "seq_sum", r"advantages \[B\], got \(2, 3\)"),
        (torch.zeros(6), torch.zeros(6), None, "seq_sum", r"must be \[B, L\]"),
        (torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 2), "seq_sum", "shapes must match"),
        (torch.zeros(2, 3), torch.zeros(2), torch.full((2, 3), 2), "seq_mean", "bool or 0/1"),
    ],
)
def test_sequence_loss_validation(log_probs, advantages, mask, aggregation, match):
    with pytest.raises(ValueError, match=match):
        sequence_policy_loss(log_probs, advantages, mask, aggregation)


# --- KL estimators ------------------------------------------------------------------------------


def test_kl_estimators_by_hand():
    log_prob = torch.log(torch.tensor([0.5, 0.25]))
    ref_log_prob = torch.log(torch.tensor([0.25, 0.5]))
    # k1 = log(p / p_ref) = (log 2, -log 2); k3 = r - log r - 1 with r = p_ref / p = (1/2, 2).
    torch.testing.assert_close(
        kl_k1(log_prob, ref_log_prob), torch.tensor([1.0, -1.0]) * math.log(2)
    )
    expected = torch.tensor([0.5 + math.log(2) - 1, 2 - math.log(2) - 1])
    torch.testing.assert_close(kl_k3(log_prob, ref_log_prob), expected)
    assert (kl_k3(log_prob, ref_log_prob) >= 0).all()
    torch.testing.assert_close(kl_k3(log_prob, log_prob), torch.zeros(2))
    with pytest.raises(ValueError, match="shapes must match"):
        kl_k3(log_prob, ref_log_prob[:1])


def test_kl_estimators_expectations_and_gradients_by_enumeration():
    # Over a categorical pi, E_pi[k] is a p-weighted sum over outcomes, computed exactly.
    theta = torch.tensor([0.3, -0.2, 1.1, 0.0], dtype=torch.float64, requires_grad=True)
    ref = torch.log_softmax(torch.tensor([0.0, 0.5, -0.5, 0.2], dtype=torch.float64), 0)
    log_p = torch.log_softmax(theta, 0)
    p = log_p.exp().detach()  # sampling weights: no gradient flows through the sampling
    forward_kl = (log_p.exp() * (log_p - ref)).sum()  # KL(pi || pi_ref)
    reverse_kl = (ref.exp() * (ref - log_p)).sum()  # KL(pi_ref || pi)
    # Both are unbiased for KL(pi || pi_ref) in value.
    torch.testing.assert_close((p * kl_k1(log_p, ref)).sum(), forward_kl)
    torch.testing.assert_close((p * kl_k3(log_p, ref)).sum(), forward_kl)
    # The k3 loss's mean gradient is that of KL(pi_ref || pi), not of KL(pi || pi_ref) ...
    (k3_grad,) = torch.autograd.grad((p * kl_k3(log_p, ref)).sum(), theta, retain_graph=True)
    (reverse_grad,) = torch.autograd.grad(reverse_kl, theta, retain_graph=True)
    (forward_grad,) = torch.autograd.grad(forward_kl, theta, retain_graph=True)
    torch.testing.assert_close(k3_grad, reverse_grad)
    assert not torch.allclose(k3_grad, forward_grad, atol=1e-3)
    # ... and k1's is zero: it belongs in the reward, not in the loss.
    (k1_grad,) = torch.autograd.grad((p * kl_k1(log_p, ref)).sum(), theta)
    torch.testing.assert_close(k1_grad, torch.zeros(4, dtype=torch.float64))


# --- PPO's clipped ratio per token (seq_clip) ---------------------------------------------------


class _GivenLogProbs:
    """A distribution whose log-probabilities are given: ``log_prob`` returns them as they are."""

    def __init__(self, log_probs: torch.Tensor) -> None:
        self.log_probs = log_probs

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.log_probs

    def entropy(self) -> torch.Tensor:
        return torch.zeros_like(self.log_probs)


class _TablePolicy(torch.nn.Module):
    """``log pi(o_it)`` is a parameter ``[T, N]``: the loss's gradient is d loss / d l_it."""

    def __init__(self, log_probs: torch.Tensor) -> None:
        super().__init__()
        self.log_probs = torch.nn.Parameter(log_probs.clone())

    def forward(self, obs: torch.Tensor) -> _GivenLogProbs:
        return _GivenLogProbs(self.log_probs)


NAN = float("nan")
# Time-major [T=3, N=2]: sequence 0 has 3 tokens (A = +2), sequence 1 has 2 (A = -3), then junk.
CLIP_MASK = torch.tensor([[1, 1], [1, 1], [1, 0]], dtype=torch.bool)
CLIP_RATIOS = [[1.5, 0.5], [1.0, 1.5], [0.5, NAN]]
CLIP_OLD = torch.tensor([[-1.0, -0.5], [-2.0, -1.5], [-0.3, NAN]])


def _clipped_batch(old_log_probs: torch.Tensor):
    from pgrad.algos.sequence import SequenceBatch

    advantages = torch.tensor([2.0, -3.0]).expand(3, -1)
    return SequenceBatch(
        obs=torch.zeros(3, 2),
        actions=torch.zeros(3, 2, dtype=torch.long),
        mask=CLIP_MASK,
        advantages=advantages,
        old_log_probs=old_log_probs,
    )


@pytest.mark.parametrize(
    "aggregation,expected,grad",
    [
        # eps = 0.2. Per-token objectives min(r A, clip(r) A):
        #   A = +2: r 1.5 -> 2.4 (clipped above, no gradient); r 1.0 -> 2 (d/dl = r A = 2);
        #           r 0.5 -> 1.0 (below 1 - eps, worse: kept, d/dl = 1)
        #   A = -3: r 0.5 -> -2.4 (clipped below, no gradient); r 1.5 -> -4.5 (above 1 + eps,
        #           worse: kept, d/dl = -4.5)
        # sums 5.4 and -6.9; loss = -aggregate.
        ("seq_sum", 0.75, [[0.0, 0.0], [-1.0, 2.25], [-0.5, 0.0]]),
        # -(5.4 / 3 - 6.9 / 2) / 2; d/dl_it = -r A / (B |o_i|)
        ("seq_mean", 0.825, [[0.0, 0.0], [-1 / 3, 1.125], [-1 / 6, 0.0]]),
        # -(5.4 - 6.9) / 5 tokens
        ("token_mean", 0.3, [[0.0, 0.0], [-0.4, 0.9], [-0.2, 0.0]]),
        # -(5.4 - 6.9) / (2 sequences * 3 positions)
        ("token_sum_norm", 0.25, [[0.0, 0.0], [-1 / 3, 0.75], [-1 / 6, 0.0]]),
    ],
)
def test_clipped_sequence_loss_by_hand_on_both_sides_of_the_clip(aggregation, expected, grad):
    from pgrad.algos.sequence import SequenceAlgorithm
    from pgrad.config import Config

    config = Config(
        rollout="episodes", baseline="none", seq_clip=True, clip_coef=0.2, aggregation=aggregation
    )
    ratios = torch.tensor(CLIP_RATIOS)
    policy = _TablePolicy(torch.where(CLIP_MASK, CLIP_OLD + ratios.log(), NAN))
    # old log-probs that could carry a gradient: the loss must treat them as constants
    old = CLIP_OLD.clone().requires_grad_(True)
    algorithm = SequenceAlgorithm(policy, None, config)
    parts = algorithm.loss(_clipped_batch(old), entropy_coef=0.0)
    torch.testing.assert_close(parts.policy, torch.tensor(expected))
    parts.total.backward()
    torch.testing.assert_close(policy.log_probs.grad, torch.tensor(grad))
    assert old.grad is None
    # PPO's diagnostics over the 5 real tokens: 4 of them have |r - 1| > 0.2
    real = ratios[CLIP_MASK]
    assert float(parts.extras["diagnostics/clip_fraction"]) == pytest.approx(0.8)
    approx_kl = ((real - 1) - real.log()).mean()
    torch.testing.assert_close(parts.extras["diagnostics/approx_kl"], approx_kl)
