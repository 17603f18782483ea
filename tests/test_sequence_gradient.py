"""Sequence-level estimators against the exact gradient of a tiny token MDP.

The MDP: a prompt ``q`` in {0, 1} drawn with probabilities ``rho``; a policy writes tokens from
{a, b, <eos>}, one at a time, until ``<eos>`` or three tokens, with a softmax over per-prefix
logits ``theta[q, prefix]`` (7 prefixes per prompt: "", a, b, aa, ab, ba, bb). That makes 15
sequences per prompt, each with a fixed reward ``R(q, o)``; prompt 1's rewards are five times
prompt 0's, the setting in which per-group normalisation reweights prompts. So

    J(theta) = sum_q rho_q sum_o pi(o | q) R(q, o)

is a finite sum and autograd gives ``grad J`` exactly. Estimators see groups of ``k``
sequences sampled for one prompt. Each of the estimators below is linear in the per-sequence
scores ``S(q, o) = grad log pi(o | q)`` with weights that depend on the group's rewards (and
lengths), so its *expectation* is also a finite sum, over the ``15^k`` ordered groups of each
prompt. That gives two kinds of test:

* exact: the enumerated expectation of RLOO with ``seq_sum`` equals ``grad J``, Dr. GRPO's
  equals ``(k - 1) / k * grad J``, and GRPO's (per-group std) and ``seq_mean`` (per-sequence
  length, lengths unequal) are not parallel to ``grad J``: their bias is measured and bounded;
* sampled: with a fixed seed, the batch estimates agree with those expectations within 4
  standard errors, and the same bound rejects a gradient scaled by 0.8 and GRPO's direction.

The weights (the gradient of :func:`pgrad.losses.sequence_policy_loss` with respect to the
token log-probabilities) are checked against autograd through that function on a sampled batch.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from pgrad.baselines import group_mean_advantage, group_normalize, leave_one_out
from pgrad.losses import sequence_policy_loss

A, B, EOS = 0, 1, 2
VOCAB, MAX_TOKENS, NUM_PROMPTS, NUM_PREFIXES = 3, 3, 2, 7
GROUP_SIZE = 4
NUM_GROUPS = 20_000
SIGMAS = 4.0
DTYPE = torch.float64


@dataclass(frozen=True)
class TokenMDP:
    theta: Tensor  # [Q, 7, V] per-prefix logits
    rho: Tensor  # [Q] prompt distribution
    rewards: Tensor  # [Q, O] reward of sequence o for prompt q
    prefixes: Tensor  # [O, L] the prefix index before each token (0 in padding)
    tokens: Tensor  # [O, L] the tokens (EOS in padding)
    mask: Tensor  # [O, L] real tokens
    lengths: Tensor  # [O]
    scores: Tensor  # [Q, O, P] grad_theta log pi(o | q), flattened over the P parameters


def prefix_index(prefix: tuple[int, ...]) -> int:
    """The empty prefix -> 0, a/b -> 1/2, aa/ab/ba/bb -> 3..6."""
    if not prefix:
        return 0
    if len(prefix) == 1:
        return 1 + prefix[0]
    return 3 + 2 * prefix[0] + prefix[1]


def all_sequences() -> list[tuple[int, ...]]:
    found: list[tuple[int, ...]] = []

    def grow(prefix: tuple[int, ...]) -> None:
        for token in (A, B, EOS):
            sequence = (*prefix, token)
            if token == EOS or len(sequence) == MAX_TOKENS:
                found.append(sequence)
            else:
                grow(sequence)

    grow(())
    return found


def make_mdp(seed: int = 0) -> TokenMDP:
    gen = torch.Generator().manual_seed(seed)
    sequences = all_sequences()
    num = len(sequences)
    prefixes = torch.zeros(num, MAX_TOKENS, dtype=torch.long)
    tokens = torch.full((num, MAX_TOKENS), EOS, dtype=torch.long)
    mask = torch.zeros(num, MAX_TOKENS, dtype=torch.bool)
    for o, sequence in enumerate(sequences):
        for t, token in enumerate(sequence):
            prefixes[o, t] = prefix_index(sequence[:t])
            tokens[o, t] = token
            mask[o, t] = True
    theta = 0.8 * torch.randn(NUM_PROMPTS, NUM_PREFIXES, VOCAB, generator=gen, dtype=DTYPE)
    rewards = torch.rand(NUM_PROMPTS, num, generator=gen, dtype=DTYPE)
    rewards[1] *= 5.0
    rho = torch.tensor([0.5, 0.5], dtype=DTYPE)
    # The score of a tabular softmax in closed form: for each real token, the one-hot prefix
    # times (one-hot token - pi(. | prefix)); autograd agrees (test_weights_are_the_gradient_...).
    pi = torch.softmax(theta, -1)  # [Q, 7, V]
    onehot_prefix = torch.nn.functional.one_hot(prefixes, NUM_PREFIXES).to(DTYPE)  # [O, L, 7]
    token_scores = torch.nn.functional.one_hot(tokens, VOCAB).to(DTYPE)[None] - pi[:, prefixes]
    scores = torch.einsum("ol,olp,qolv->qopv", mask.to(DTYPE), onehot_prefix, token_scores)
    per_prompt = scores.flatten(2)  # [Q, O, 7 * V]
    full = torch.zeros(NUM_PROMPTS, num, NUM_PROMPTS, per_prompt.shape[-1], dtype=DTYPE)
    for q in range(NUM_PROMPTS):
        full[q, :, q] = per_prompt[q]
    return TokenMDP(theta, rho, rewards, prefixes, tokens, mask, mask.sum(1), full.flatten(2))


def token_log_probs(mdp: TokenMDP, theta: Tensor, prompts: Tensor, sequences: Tensor) -> Tensor:
    """``[B, L]`` ``log pi(o_t | q, o_<t)`` of sequences ``[B]`` (indices) for prompts ``[B]``."""
    logits = theta[prompts[:, None], mdp.prefixes[sequences]]  # [B, L, V]
    picked = torch.log_softmax(logits, -1).gather(-1, mdp.tokens[sequences][..., None])
    return picked.squeeze(-1)


def sequence_log_probs(mdp: TokenMDP, theta: Tensor) -> Tensor:
    """``[Q, O]`` ``log pi(o | q)``."""
    num = mdp.tokens.shape[0]
    prompts = torch.arange(NUM_PROMPTS).repeat_interleave(num)
    sequences = torch.arange(num).repeat(NUM_PROMPTS)
    per_token = token_log_probs(mdp, theta, prompts, sequences)
    return torch.where(mdp.mask[sequences], per_token, 0.0).sum(1).view(NUM_PROMPTS, num)


def exact_gradient(mdp: TokenMDP) -> Tensor:
    theta = mdp.theta.clone().requires_grad_(True)
    objective = (mdp.rho[:, None] * sequence_log_probs(mdp, theta).exp() * mdp.rewards).sum()
    (grad,) = torch.autograd.grad(objective, theta)
    return grad.flatten()


# -- the estimators: per-sequence weights w_i, estimate = sum_i w_i S_i -------------------------
def advantages(name: str, returns: Tensor, k: int) -> Tensor:
    """``[..., N]`` advantages of groups of ``k`` along the last dimension."""
    if name == "rloo":
        return returns - leave_one_out(returns, k)
    if name == "dr_grpo":
        return group_mean_advantage(returns, k)
    if name == "grpo":
        return group_normalize(returns, k)
    raise AssertionError(name)


def group_weights(aggregation: str, adv: Tensor, lengths: Tensor) -> Tensor:
    """Per-sequence weights ``w_i`` of one group's estimate ``(1/k) sum_i w_i S_i``.

    ``seq_sum``: ``A_i``; ``seq_mean``: ``A_i / |o_i|``; ``token_sum_norm``: ``A_i / L``. Over
    ``G`` groups the batch loss's gradient is minus the mean of the group estimates; the check
    against autograd is :func:`test_weights_are_the_gradient_of_sequence_policy_loss`.
    """
    if aggregation == "seq_sum":
        return adv
    if aggregation == "seq_mean":
        return adv / lengths
    if aggregation == "token_sum_norm":
        return adv / MAX_TOKENS
    raise AssertionError(aggregation)


def enumerated_expectation(mdp: TokenMDP, name: str, aggregation: str, k: int) -> Tensor:
    """``E[estimate]`` over prompts and all ``15^k`` ordered groups, exactly."""
    score = mdp.scores
    probs = sequence_log_probs(mdp, mdp.theta).exp()
    num = probs.shape[1]
    groups = torch.tensor(list(itertools.product(range(num), repeat=k)))  # [15^k, k]
    expectation = torch.zeros(score.shape[-1], dtype=DTYPE)
    for q in range(NUM_PROMPTS):
        group_probs = probs[q][groups].prod(1)  # [15^k]
        adv = advantages(name, mdp.rewards[q][groups], k)
        weights = group_weights(aggregation, adv, mdp.lengths[groups].to(DTYPE))
        # Coefficient of each sequence's score, summed over the groups and positions it is in.
        coefficients = torch.zeros(num, dtype=DTYPE).index_add_(
            0, groups.flatten(), (group_probs[:, None] * weights).flatten() / k
        )
        expectation += mdp.rho[q] * coefficients @ score[q]
    return expectation


# -- sampling -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    prompts: Tensor  # [G * k]
    sequences: Tensor  # [G * k] sequence indices
    returns: Tensor  # [G * k]


def sample(mdp: TokenMDP, num_groups: int, k: int, gen: torch.Generator) -> Batch:
    """``num_groups`` prompts from ``rho``, then ``k`` sequences from ``pi(. | q)`` for each.

    Whole sequences are drawn from their exact probabilities, which is the same distribution as
    drawing them token by token.
    """
    probs = sequence_log_probs(mdp, mdp.theta).exp()
    prompts = torch.multinomial(mdp.rho, num_groups, replacement=True, generator=gen)
    draws = torch.stack(
        [
            torch.multinomial(probs[q], num_groups * k, replacement=True, generator=gen)
            for q in range(NUM_PROMPTS)
        ]
    ).view(NUM_PROMPTS, num_groups, k)
    sequences = draws[prompts, torch.arange(num_groups)].flatten()  # [G * k]
    prompts = prompts.repeat_interleave(k)
    return Batch(prompts, sequences, mdp.rewards[prompts, sequences])


def group_estimates(mdp: TokenMDP, batch: Batch, name: str, aggregation: str, k: int) -> Tensor:
    """``[G, P]`` one estimate per group; their mean is the batch estimate."""
    score = mdp.scores[batch.prompts, batch.sequences]  # [G * k, P]
    adv = advantages(name, batch.returns, k)
    weights = group_weights(aggregation, adv, mdp.lengths[batch.sequences].to(DTYPE))
    return (weights[:, None] * score).unflatten(0, (-1, k)).mean(1)


def z_scores(estimates: Tensor, target: Tensor) -> Tensor:
    errors = estimates.std(0) / math.sqrt(estimates.shape[0])
    return (estimates.mean(0) - target) / errors


@pytest.fixture(scope="module")
def mdp() -> TokenMDP:
    return make_mdp()


@pytest.fixture(scope="module")
def expectation(mdp):
    """``expectation(name, aggregation, k)``: :func:`enumerated_expectation`, computed once."""
    return functools.cache(lambda *args: enumerated_expectation(mdp, *args))


@pytest.fixture(scope="module")
def batch(mdp) -> Batch:
    return sample(mdp, NUM_GROUPS, GROUP_SIZE, torch.Generator().manual_seed(1))


# -- tests ------------------------------------------------------------------------------------
def test_the_mdp_is_what_the_docstring_says(mdp):
    assert mdp.tokens.shape[0] == 15
    assert sorted(mdp.lengths.tolist()) == [1, 2, 2] + [3] * 12
    probs = sequence_log_probs(mdp, mdp.theta).exp()
    torch.testing.assert_close(probs.sum(1), torch.ones(NUM_PROMPTS, dtype=DTYPE))


@pytest.mark.parametrize("name", ["rloo", "dr_grpo", "grpo"])
@pytest.mark.parametrize("aggregation", ["seq_sum", "seq_mean", "token_mean", "token_sum_norm"])
def test_weights_are_the_gradient_of_sequence_policy_loss(mdp, batch, name, aggregation):
    num = 64 * GROUP_SIZE
    prompts, sequences, returns = batch.prompts[:num], batch.sequences[:num], batch.returns[:num]
    theta = mdp.theta.clone().requires_grad_(True)
    adv = advantages(name, returns, GROUP_SIZE)
    loss = sequence_policy_loss(
        token_log_probs(mdp, theta, prompts, sequences), adv, mdp.mask[sequences], aggregation
    )
    (grad,) = torch.autograd.grad(loss, theta)
    score = mdp.scores[prompts, sequences]
    lengths = mdp.lengths[sequences].to(DTYPE)
    if aggregation == "token_mean":
        # The one aggregation whose weight depends on the whole batch: sum of lengths.
        expected = (adv * num / lengths.sum())[:, None] * score
    else:
        expected = group_weights(aggregation, adv, lengths)[:, None] * score
    torch.testing.assert_close(-grad.flatten(), expected.mean(0))


def test_rloo_and_dr_grpo_expectations_are_exact(mdp, expectation):
    exact = exact_gradient(mdp)
    for k in (2, 3, 4):
        torch.testing.assert_close(expectation("rloo", "seq_sum", k), exact)
        # Each sample is in its own group mean: the right direction, scaled by (k - 1) / k.
        torch.testing.assert_close(expectation("dr_grpo", "seq_sum", k), (k - 1) / k * exact)
    # Dr. GRPO's token_sum_norm divides by the constant L = 3: a scale only.
    torch.testing.assert_close(
        expectation("dr_grpo", "token_sum_norm", 4), 0.75 / MAX_TOKENS * exact
    )


def direction_error(expectation: Tensor, exact: Tensor) -> tuple[float, float]:
    """``(relative residual, cosine)`` of ``expectation`` against its best multiple of ``exact``."""
    scale = expectation @ exact / (exact @ exact)
    residual = (expectation - scale * exact).norm() / expectation.norm()
    cosine = expectation @ exact / (expectation.norm() * exact.norm())
    return float(residual), float(cosine)


@pytest.mark.parametrize(
    "name,aggregation,low,high",
    [
        # GRPO's per-group std reweights the prompts (and, within a prompt, the groups).
        ("grpo", "seq_sum", 0.2, 0.6),
        # Dividing by the sampled length favours short sequences.
        ("rloo", "seq_mean", 0.2, 0.6),
    ],
)
def test_biased_estimators_point_elsewhere_by_a_bounded_angle(
    mdp, expectation, name, aggregation, low, high
):
    exact = exact_gradient(mdp)
    residual, cosine = direction_error(expectation(name, aggregation, 4), exact)
    # No rescaling makes them unbiased: a part of the expectation is orthogonal to grad J ...
    assert low < residual < high, residual
    # ... and yet they still ascend: the angle to grad J is bounded well below 90 degrees.
    assert cosine > math.sqrt(1 - high**2) - 1e-9 and cosine > 0.8, cosine


def test_sampled_estimates_agree_with_the_exact_expectations(mdp, expectation, batch):
    exact = exact_gradient(mdp)
    k = GROUP_SIZE
    targets = {
        ("rloo", "seq_sum"): exact,
        ("dr_grpo", "seq_sum"): (k - 1) / k * exact,
        ("dr_grpo", "token_sum_norm"): (k - 1) / k / MAX_TOKENS * exact,
        ("grpo", "seq_sum"): expectation("grpo", "seq_sum", k),
        ("rloo", "seq_mean"): expectation("rloo", "seq_mean", k),
    }
    for (name, aggregation), target in targets.items():
        z = z_scores(group_estimates(mdp, batch, name, aggregation, k), target)
        assert z.abs().max() <= SIGMAS, f"{name}/{aggregation}: z {z}"


def test_the_bound_rejects_a_scaled_gradient_and_the_biased_directions(mdp, batch):
    exact = exact_gradient(mdp)
    # A gradient scaled by 0.8 is rejected ...
    rloo = group_estimates(mdp, batch, "rloo", "seq_sum", GROUP_SIZE)
    assert z_scores(rloo, 0.8 * exact).abs().max() > SIGMAS
    # ... so is Dr. GRPO's estimate as an estimate of grad J itself (it is 3/4 of it) ...
    dr_grpo = group_estimates(mdp, batch, "dr_grpo", "seq_sum", GROUP_SIZE)
    assert z_scores(dr_grpo, exact).abs().max() > SIGMAS
    # ... and GRPO and seq_mean are rejected even against their best multiple of grad J.
    for name, aggregation in [("grpo", "seq_sum"), ("rloo", "seq_mean")]:
        estimates = group_estimates(mdp, batch, name, aggregation, GROUP_SIZE)
        mean = estimates.mean(0)
        best = (mean @ exact) / (exact @ exact) * exact
        assert z_scores(estimates, best).abs().max() > SIGMAS, (name, aggregation)
