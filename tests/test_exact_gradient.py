"""The policy gradient is exact: sampled estimates against autograd through a linear solve.

A small random episodic MDP with a tabular softmax policy ``pi(a|s) = softmax(theta[s])``. Its
discounted objective has a closed form,

    J(theta) = rho . V,    (I - gamma * P_pi) V = r_pi,

over the non-terminal states (``P_pi`` the transition matrix under ``pi`` without the terminal
state, ``r_pi`` the expected reward), so ``torch.linalg.solve`` plus autograd gives the exact
``grad J``. The score-function theorem (Williams, 1992) says that, per episode,

    g = sum_t gamma^t * grad log pi(a_t | s_t) * (G_t - b_t)

has expectation ``grad J`` for any baseline ``b_t`` independent of ``a_t`` and what followed.
``reinforce_loss`` takes a mean over the ``mask.sum()`` real steps of ``M`` episodes, so the batch
mean of ``g`` is ``-(mask.sum() / M) * grad reinforce_loss(log_prob, gamma^t * (G - b), mask)``:
that is the scaling used below, and the minus sign is because the loss is minimised.

Each estimate must be within 4 standard errors of the exact gradient in every component, and
every baseline must cut the total variance (the trace of the gradient's covariance) to at most
0.8 of no baseline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from pgrad.baselines import EMABaseline, leave_one_out
from pgrad.losses import reinforce_loss
from pgrad.returns import discounted_returns, gae

NUM_STATES, NUM_ACTIONS = 3, 2
GAMMA = 0.9
# Each step ends the episode with probability >= 0.2, so an episode survives MAX_STEPS steps with
# probability <= 0.8^40 ~ 1e-4; the few that do are truncated and bootstrap from the exact V,
# which leaves a bias of at most gamma^40 * 1e-4 * |grad V|, far below the standard errors.
MAX_STEPS = 40
GROUP_SIZE = 4
NUM_GROUPS = 8192  # 32768 episodes
SIGMAS = 4.0
DTYPE = torch.float64


@dataclass(frozen=True)
class MDP:
    transitions: Tensor  # [S, A, S + 1]; the last next state is the terminal one
    rewards: Tensor  # [S, A]
    start: Tensor  # [S]
    theta: Tensor  # [S, A] policy logits


@dataclass(frozen=True)
class Episodes:
    """``M`` episodes as time-major ``[T, M]`` tensors; group ``g`` is episodes ``gk .. gk+k-1``."""

    states: Tensor
    actions: Tensor
    next_states: Tensor  # NUM_STATES where the episode terminated, and in padding
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    mask: Tensor  # the step belongs to the episode (False in the padding after its end)


def make_mdp(seed: int = 0) -> MDP:
    gen = torch.Generator().manual_seed(seed)
    p_end = 0.2 + 0.3 * torch.rand(NUM_STATES, NUM_ACTIONS, generator=gen, dtype=DTYPE)
    moves = torch.rand(NUM_STATES, NUM_ACTIONS, NUM_STATES, generator=gen, dtype=DTYPE) + 0.1
    moves = moves / moves.sum(-1, keepdim=True)
    transitions = torch.cat([(1 - p_end)[..., None] * moves, p_end[..., None]], dim=-1)
    # Rewards well away from zero: the regime where a baseline matters.
    rewards = 1.0 + torch.rand(NUM_STATES, NUM_ACTIONS, generator=gen, dtype=DTYPE)
    start = torch.rand(NUM_STATES, generator=gen, dtype=DTYPE) + 0.2
    theta = 0.7 * torch.randn(NUM_STATES, NUM_ACTIONS, generator=gen, dtype=DTYPE)
    return MDP(transitions, rewards, start / start.sum(), theta)


def exact_values(mdp: MDP, theta: Tensor) -> Tensor:
    """``V_pi`` over the non-terminal states, differentiable in ``theta``."""
    pi = torch.softmax(theta, dim=-1)
    p_pi = torch.einsum("sa,sat->st", pi, mdp.transitions[..., :NUM_STATES])
    r_pi = (pi * mdp.rewards).sum(-1)
    return torch.linalg.solve(torch.eye(NUM_STATES, dtype=DTYPE) - GAMMA * p_pi, r_pi)


def exact_gradient(mdp: MDP) -> Tensor:
    theta = mdp.theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mdp.start @ exact_values(mdp, theta), theta)
    return grad


def sample_episodes(mdp: MDP, num_groups: int, gen: torch.Generator) -> Episodes:
    """Groups of ``GROUP_SIZE`` episodes sharing a start state drawn from ``rho`` per group."""
    num = num_groups * GROUP_SIZE
    policy_cdf = torch.softmax(mdp.theta, dim=-1).cumsum(-1)  # rows: states
    transition_cdf = mdp.transitions.flatten(0, 1).cumsum(-1)  # rows: state * A + action
    rewards = mdp.rewards.flatten()
    state = categorical(mdp.start.cumsum(-1)[None], torch.zeros(num_groups, dtype=torch.long), gen)
    state = state.repeat_interleave(GROUP_SIZE)
    alive = torch.ones(num, dtype=torch.bool)
    fields: dict[str, list[Tensor]] = {name: [] for name in Episodes.__dataclass_fields__}
    for t in range(MAX_STEPS):
        action = categorical(policy_cdf, state, gen)
        pair = state * NUM_ACTIONS + action
        following = categorical(transition_cdf, pair, gen)
        terminated = alive & (following == NUM_STATES)
        truncated = alive & ~terminated if t == MAX_STEPS - 1 else torch.zeros_like(alive)
        fields["states"].append(state)
        fields["actions"].append(action)
        fields["next_states"].append(torch.where(alive, following, NUM_STATES))
        fields["rewards"].append(torch.where(alive, rewards.take(pair), 0.0))
        fields["terminated"].append(terminated)
        fields["truncated"].append(truncated)
        fields["mask"].append(alive)
        alive = alive & ~terminated
        # Padding steps keep sampling from state 0; they are masked out everywhere.
        state = torch.where(alive, following, 0)
    return Episodes(**{name: torch.stack(values) for name, values in fields.items()})


def categorical(cdf: Tensor, rows: Tensor, gen: torch.Generator) -> Tensor:
    """One sample from each distribution ``cdf[rows[m]]`` (``cdf``: ``[R, K]`` cumulative sums).

    Inverts the CDF one column at a time with ``take``: with K this small that is several times
    faster than ``torch.multinomial`` or fancy indexing of ``[M, K]`` rows on a CPU.
    """
    uniform = torch.rand(rows.shape[0], generator=gen, dtype=cdf.dtype)
    sample = torch.zeros_like(rows)
    # The last column is 1 up to rounding; skipping it keeps the sample in range.
    for column in cdf.T[:-1]:
        sample += uniform > column.contiguous().take(rows)
    return sample


def scores(mdp: MDP, episodes: Episodes) -> tuple[Tensor, Tensor]:
    """The score ``grad_theta log pi(a_t|s_t)`` in closed form, as one-hot factors.

    For a tabular softmax, ``d log pi(a|s) / d theta[s', :] = [s' = s] * (onehot(a) - pi(s, :))``;
    returned as ``([T, M, S], [T, M, A])`` so that an einsum builds the per-episode sums.
    """
    pi = torch.softmax(mdp.theta, dim=-1)
    onehot_states = torch.nn.functional.one_hot(episodes.states, NUM_STATES).to(DTYPE)
    onehot_actions = torch.nn.functional.one_hot(episodes.actions, NUM_ACTIONS).to(DTYPE)
    return onehot_states, onehot_actions - pi[episodes.states]


def per_episode_gradients(mdp: MDP, episodes: Episodes, weights: Tensor) -> Tensor:
    """``[M, S, A]``: ``sum_t mask * weights[t] * grad log pi(a_t|s_t)`` for each episode."""
    onehot_states, action_scores = scores(mdp, episodes)
    return torch.einsum("tm,tms,tma->msa", weights * episodes.mask, onehot_states, action_scores)


def estimate_through_reinforce_loss(mdp: MDP, episodes: Episodes, weights: Tensor) -> Tensor:
    """The batch-mean gradient estimate via autograd through ``reinforce_loss``."""
    theta = mdp.theta.clone().requires_grad_(True)
    log_prob = torch.log_softmax(theta, dim=-1)[episodes.states, episodes.actions]
    loss = reinforce_loss(log_prob, weights, episodes.mask)
    (grad,) = torch.autograd.grad(loss, theta)
    num_episodes = episodes.states.shape[1]
    # reinforce_loss averages over mask.sum() steps; the estimator sums per episode.
    return -grad * episodes.mask.sum() / num_episodes


def advantages_for(name: str, mdp: MDP, episodes: Episodes, gen: torch.Generator) -> Tensor:
    values_table = exact_values(mdp, mdp.theta)
    # V of the terminal state is 0: the terminal index maps onto the appended zero.
    values_ext = torch.cat([values_table, torch.zeros(1, dtype=DTYPE)])
    next_values = values_ext[episodes.next_states]
    returns = discounted_returns(
        episodes.rewards, episodes.terminated, episodes.truncated, GAMMA, next_values
    )
    if name == "none":
        return returns
    if name == "ema":
        # Warmed up on earlier, independent batches only: a constant for this batch.
        baseline = EMABaseline(decay=0.5)
        for _ in range(3):
            earlier = sample_episodes(mdp, 512, gen)
            earlier_returns = discounted_returns(
                earlier.rewards, earlier.terminated, earlier.truncated, GAMMA
            )
            baseline.update(earlier_returns, earlier.mask)
        return returns - baseline(returns)
    if name == "value":
        return returns - values_table[episodes.states]
    if name.startswith("gae"):
        lam = float(name.split("_")[1])
        advantages, _ = gae(
            episodes.rewards,
            values_table[episodes.states],
            next_values,
            episodes.terminated,
            episodes.truncated,
            GAMMA,
            lam,
        )
        return advantages
    if name == "leave_one_out":
        return returns - leave_one_out(returns, GROUP_SIZE, episodes.mask)
    raise AssertionError(name)


@pytest.fixture(scope="module")
def setting() -> tuple[MDP, Episodes, Tensor, torch.Generator]:
    mdp = make_mdp()
    gen = torch.Generator().manual_seed(1)
    episodes = sample_episodes(mdp, NUM_GROUPS, gen)
    return mdp, episodes, exact_gradient(mdp), gen


@pytest.fixture(scope="module")
def no_baseline_variance(setting) -> float:
    mdp, episodes, _, gen = setting
    weights = discounting(episodes) * advantages_for("none", mdp, episodes, gen)
    return total_variance(per_episode_gradients(mdp, episodes, weights))


def discounting(episodes: Episodes) -> Tensor:
    """``gamma^t`` as ``[T, 1]``: the policy gradient theorem weighs step ``t`` by it."""
    steps = torch.arange(episodes.states.shape[0], dtype=DTYPE)
    return (GAMMA**steps)[:, None]


def total_variance(gradients: Tensor) -> float:
    return float(gradients.flatten(1).var(dim=0).sum())


def standard_errors(gradients: Tensor) -> Tensor:
    # Episodes of one group share a start state, so groups, not episodes, are independent.
    group_means = gradients.unflatten(0, (NUM_GROUPS, GROUP_SIZE)).mean(dim=1)
    return group_means.std(dim=0) / math.sqrt(NUM_GROUPS)


def test_episodes_are_sound(setting):
    mdp, episodes, _, _ = setting
    num_episodes = episodes.states.shape[1]
    ended = episodes.terminated.sum(0) + episodes.truncated.sum(0)
    assert torch.equal(ended, torch.ones(num_episodes, dtype=ended.dtype))
    assert episodes.truncated.sum() <= 1e-3 * num_episodes
    # Sampled discounted returns from the start agree with rho . V (a check of the sampler).
    returns = discounted_returns(episodes.rewards, episodes.terminated, episodes.truncated, GAMMA)
    group_means = returns[0].unflatten(0, (NUM_GROUPS, GROUP_SIZE)).mean(1)
    exact = mdp.start @ exact_values(mdp, mdp.theta)
    assert abs(group_means.mean() - exact) <= SIGMAS * group_means.std() / math.sqrt(NUM_GROUPS)


@pytest.mark.parametrize("baseline", ["none", "ema", "value", "gae_0.5", "gae_0", "leave_one_out"])
def test_policy_gradient_is_unbiased(setting, no_baseline_variance, baseline):
    mdp, episodes, exact, gen = setting
    weights = discounting(episodes) * advantages_for(baseline, mdp, episodes, gen)
    gradients = per_episode_gradients(mdp, episodes, weights)
    estimate = gradients.mean(dim=0)
    # The closed-form scores agree with autograd through reinforce_loss.
    torch.testing.assert_close(estimate_through_reinforce_loss(mdp, episodes, weights), estimate)
    errors = standard_errors(gradients)
    z = (estimate - exact) / errors
    assert z.abs().max() <= SIGMAS, f"z-scores {z}, estimate {estimate}, exact {exact}"
    if baseline != "none":
        ratio = total_variance(gradients) / no_baseline_variance
        assert ratio <= 0.8, f"{baseline}: variance {ratio:.3f} x no baseline's"


@pytest.mark.parametrize("bias", ["own_return_in_baseline", "action_dependent_baseline"])
def test_biased_baselines_are_detected(setting, bias):
    # The 4-standard-error bound must be able to fail, or passing it would mean little.
    mdp, episodes, exact, _ = setting
    returns = discounted_returns(episodes.rewards, episodes.terminated, episodes.truncated, GAMMA)
    if bias == "own_return_in_baseline":
        # The group mean with each sample in it, as GRPO uses: shrinks the gradient by (k-1)/k.
        grouped = returns.unflatten(-1, (NUM_GROUPS, GROUP_SIZE))
        baseline = grouped.mean(-1, keepdim=True).expand_as(grouped).flatten(-2)
    else:
        # The reward of the very action being scored.
        baseline = episodes.rewards
    weights = discounting(episodes) * (returns - baseline)
    gradients = per_episode_gradients(mdp, episodes, weights)
    z = (gradients.mean(dim=0) - exact) / standard_errors(gradients)
    assert z.abs().max() > SIGMAS
