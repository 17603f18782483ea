"""The policy gradient is exact: sampled estimates against autograd through a linear solve.

A small random episodic MDP with a tabular softmax policy ``pi(a|s) = softmax(theta[s])``. Its
discounted value has a closed form over the non-terminal states,

    (I - gamma * P_pi) V = r_pi,

(``P_pi`` the transition matrix under ``pi`` without the terminal state, ``r_pi`` the expected
reward). Episodes last about ten steps, longer than their time limits: each episode draws a limit
``h`` uniformly from ``LIMITS``, and about two thirds of them are cut by it, most of them before
the last row of the ``[T, M]`` tensors, and bootstrap from ``V(s_h)``, the true value of the state
they were cut in. The score-function theorem (Williams, 1992) then says that, per episode,

    g = sum_{t < h} gamma^t * grad log pi(a_t | s_t) * (G_t - b_t),
    G_t = r_t + ... + gamma^(h-1-t) r_{h-1} + gamma^(h-t) V(s_h)   (V(terminal) = 0)

has expectation ``grad J_lim``, the gradient of the time-limited objective with the bootstrap
value held fixed::

    J_lim(theta) = E_h[ sum_{t < h} gamma^t d_t . r_pi + gamma^h d_h . stop_grad(V) ],

``d_t`` the (sub-)distribution of the non-terminal state at step ``t`` (``d_0 = rho``, ``d_{t+1} =
d_t P_pi``), for any baseline ``b_t`` independent of ``a_t`` and what followed. Its value equals
``rho . V``; its gradient lacks ``grad V``'s share beyond the limit, which no sampled episode sees.
``reinforce_loss`` takes a mean over the ``mask.sum()`` real steps of ``M`` episodes, so the batch
mean of ``g`` is ``-(mask.sum() / M) * grad reinforce_loss(log_prob, gamma^t * (G - b), mask)``:
that is the scaling used below, and the minus sign is because the loss is minimised.

Each estimate must be within 4 standard errors of the exact gradient in every component, and
every baseline must cut the total variance (the trace of the gradient's covariance) to at most
0.8 of no baseline's. The bound has power: estimates that drop a discount, treat truncation as
termination, put the sample's own return in its baseline, or are scaled by 0.8 are rejected.
(Using ``grad J`` itself as the target is rejected too, by 19 standard errors or more.) One bug
this test cannot see: GAE that keeps accumulating across a truncation adds the TD errors of
what follows, which have mean zero under the true ``V`` and do not depend on the episode's
actions; the hand-computed cases in ``test_returns.py`` catch it.
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
GAMMA = 0.85
LIMITS = range(3, 11)  # per-episode time limits h, uniform; the tensors have max(LIMITS) rows
GROUP_SIZE = 4
NUM_GROUPS = 32768  # 131072 episodes
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
    # Each step ends the episode with probability 0.05 to 0.15: about ten steps, past most limits.
    p_end = 0.05 + 0.1 * torch.rand(NUM_STATES, NUM_ACTIONS, generator=gen, dtype=DTYPE)
    moves = torch.rand(NUM_STATES, NUM_ACTIONS, NUM_STATES, generator=gen, dtype=DTYPE) + 0.1
    moves = moves / moves.sum(-1, keepdim=True)
    transitions = torch.cat([(1 - p_end)[..., None] * moves, p_end[..., None]], dim=-1)
    # Rewards in [0, 2]: a mean of 1 that a baseline removes, and actions that differ enough
    # for the gradient to stand well clear of its standard errors.
    rewards = 2.0 * torch.rand(NUM_STATES, NUM_ACTIONS, generator=gen, dtype=DTYPE)
    start = torch.rand(NUM_STATES, generator=gen, dtype=DTYPE) + 0.2
    theta = 0.7 * torch.randn(NUM_STATES, NUM_ACTIONS, generator=gen, dtype=DTYPE)
    return MDP(transitions, rewards, start / start.sum(), theta)


def policy_matrices(mdp: MDP, theta: Tensor) -> tuple[Tensor, Tensor]:
    """``(P_pi [S, S], r_pi [S])`` over the non-terminal states, differentiable in ``theta``."""
    pi = torch.softmax(theta, dim=-1)
    p_pi = torch.einsum("sa,sat->st", pi, mdp.transitions[..., :NUM_STATES])
    return p_pi, (pi * mdp.rewards).sum(-1)


def exact_values(mdp: MDP, theta: Tensor) -> Tensor:
    """``V_pi`` over the non-terminal states, differentiable in ``theta``."""
    p_pi, r_pi = policy_matrices(mdp, theta)
    return torch.linalg.solve(torch.eye(NUM_STATES, dtype=DTYPE) - GAMMA * p_pi, r_pi)


def time_limited_objective(mdp: MDP, theta: Tensor) -> Tensor:
    """``J_lim(theta)``: rewards up to a limit ``h ~ U(LIMITS)``, then the fixed true ``V``."""
    p_pi, r_pi = policy_matrices(mdp, theta)
    bootstrap = exact_values(mdp, mdp.theta).detach()
    reached = mdp.start  # d_t: probability of being in each non-terminal state at step t
    rewards_so_far = torch.zeros((), dtype=DTYPE)
    total = torch.zeros((), dtype=DTYPE)
    for t in range(max(LIMITS) + 1):
        if t in LIMITS:
            total = total + rewards_so_far + GAMMA**t * reached @ bootstrap
        rewards_so_far = rewards_so_far + GAMMA**t * reached @ r_pi
        reached = reached @ p_pi
    return total / len(LIMITS)


def exact_gradient(mdp: MDP) -> Tensor:
    theta = mdp.theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(time_limited_objective(mdp, theta), theta)
    return grad


def sample_episodes(mdp: MDP, num_groups: int, gen: torch.Generator) -> Episodes:
    """Groups of ``GROUP_SIZE`` episodes sharing a start state drawn from ``rho`` per group.

    Each episode draws its own time limit from ``LIMITS``; at step ``limit - 1`` it is truncated
    unless it terminated there, and ``next_states`` holds the state it was cut in.
    """
    num = num_groups * GROUP_SIZE
    policy_cdf = torch.softmax(mdp.theta, dim=-1).cumsum(-1)  # rows: states
    transition_cdf = mdp.transitions.flatten(0, 1).cumsum(-1)  # rows: state * A + action
    rewards = mdp.rewards.flatten()
    state = categorical(mdp.start.cumsum(-1)[None], torch.zeros(num_groups, dtype=torch.long), gen)
    state = state.repeat_interleave(GROUP_SIZE)
    limits = torch.randint(LIMITS.start, LIMITS.stop, (num,), generator=gen)
    alive = torch.ones(num, dtype=torch.bool)
    fields: dict[str, list[Tensor]] = {name: [] for name in Episodes.__dataclass_fields__}
    for t in range(max(LIMITS)):
        action = categorical(policy_cdf, state, gen)
        pair = state * NUM_ACTIONS + action
        following = categorical(transition_cdf, pair, gen)
        terminated = alive & (following == NUM_STATES)
        truncated = alive & ~terminated & (limits == t + 1)
        fields["states"].append(state)
        fields["actions"].append(action)
        fields["next_states"].append(torch.where(alive, following, NUM_STATES))
        fields["rewards"].append(torch.where(alive, rewards.take(pair), 0.0))
        fields["terminated"].append(terminated)
        fields["truncated"].append(truncated)
        fields["mask"].append(alive)
        alive = alive & ~terminated & ~truncated
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


def bootstrap_values(mdp: MDP, episodes: Episodes) -> Tensor:
    """``[T, M]``: the true ``V`` of the state after each step (0 after termination)."""
    # V of the terminal state is 0: the terminal index maps onto the appended zero.
    values_ext = torch.cat([exact_values(mdp, mdp.theta), torch.zeros(1, dtype=DTYPE)])
    return values_ext[episodes.next_states]


def returns_of(mdp: MDP, episodes: Episodes, gamma: float = GAMMA) -> Tensor:
    """Reward-to-go, bootstrapped from the true ``V`` wherever an episode was truncated."""
    return discounted_returns(
        episodes.rewards,
        episodes.terminated,
        episodes.truncated,
        gamma,
        bootstrap_values(mdp, episodes),
    )


def advantages_for(name: str, mdp: MDP, episodes: Episodes, gen: torch.Generator) -> Tensor:
    values_table = exact_values(mdp, mdp.theta)
    returns = returns_of(mdp, episodes)
    if name == "none":
        return returns
    if name == "ema":
        # Warmed up on earlier, independent batches only: a constant for this batch.
        baseline = EMABaseline(decay=0.5)
        for _ in range(3):
            earlier = sample_episodes(mdp, 512, gen)
            baseline.update(returns_of(mdp, earlier), earlier.mask)
        return returns - baseline(returns)
    if name == "value":
        return returns - values_table[episodes.states]
    if name.startswith("gae"):
        lam = float(name.split("_")[1])
        advantages, _ = gae(
            episodes.rewards,
            values_table[episodes.states],
            bootstrap_values(mdp, episodes),
            episodes.terminated,
            episodes.truncated,
            GAMMA,
            lam,
        )
        return advantages
    if name == "leave_one_out":
        return returns - leave_one_out(returns, GROUP_SIZE, episodes.mask)
    raise AssertionError(name)


# A seed whose gradient components all stand clear of zero: with no baseline, 4 standard errors
# are at most 7 % of each component, with the value baseline at most 3.5 %.
MDP_SEED = 12


@pytest.fixture(scope="module")
def setting() -> tuple[MDP, Episodes, Tensor, torch.Generator]:
    mdp = make_mdp(MDP_SEED)
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


def z_scores(gradients: Tensor, exact: Tensor) -> Tensor:
    return (gradients.mean(dim=0) - exact) / standard_errors(gradients)


def test_episodes_are_sound(setting):
    mdp, episodes, _, _ = setting
    num_episodes = episodes.states.shape[1]
    ended = episodes.terminated.sum(0) + episodes.truncated.sum(0)
    assert torch.equal(ended, torch.ones(num_episodes, dtype=ended.dtype))
    # Episodes are long enough for time limits to matter: many truncations, most of them before
    # the last row, where only the truncation flag (not the end of the tensor) says to bootstrap.
    truncated = episodes.truncated.any(0).double().mean()
    assert 0.3 <= truncated <= 0.8, truncated
    assert episodes.truncated[:-1].sum() >= 0.8 * episodes.truncated.sum()
    assert bool((episodes.next_states[episodes.truncated] < NUM_STATES).all())
    assert episodes.mask.sum(0).double().mean() >= 4
    # Bootstrapped returns from the start agree with rho . V (a check of the sampler) ...
    group_means = returns_of(mdp, episodes)[0].unflatten(0, (NUM_GROUPS, GROUP_SIZE)).mean(1)
    exact = mdp.start @ exact_values(mdp, mdp.theta)
    assert abs(group_means.mean() - exact) <= SIGMAS * group_means.std() / math.sqrt(NUM_GROUPS)
    # ... which is also the value of the time-limited objective: a check of its closed form.
    torch.testing.assert_close(time_limited_objective(mdp, mdp.theta), exact)


@pytest.mark.parametrize("baseline", ["none", "ema", "value", "gae_0.5", "gae_0", "leave_one_out"])
def test_policy_gradient_is_unbiased(setting, no_baseline_variance, baseline):
    mdp, episodes, exact, gen = setting
    weights = discounting(episodes) * advantages_for(baseline, mdp, episodes, gen)
    gradients = per_episode_gradients(mdp, episodes, weights)
    estimate = gradients.mean(dim=0)
    # The closed-form scores agree with autograd through reinforce_loss.
    torch.testing.assert_close(estimate_through_reinforce_loss(mdp, episodes, weights), estimate)
    z = z_scores(gradients, exact)
    assert z.abs().max() <= SIGMAS, f"z-scores {z}, estimate {estimate}, exact {exact}"
    # Power: a gradient 20 % too small would be rejected in some component.
    assert z_scores(0.8 * gradients, exact).abs().max() > 2 * SIGMAS, baseline
    if baseline != "none":
        ratio = total_variance(gradients) / no_baseline_variance
        assert ratio <= 0.8, f"{baseline}: variance {ratio:.3f} x no baseline's"


def wrong_weights(name: str, mdp: MDP, episodes: Episodes) -> Tensor:
    """``gamma^t * (G_t - b_t)`` with one classic mistake, all with the true value baseline."""
    values = exact_values(mdp, mdp.theta)[episodes.states]
    returns = returns_of(mdp, episodes)
    if name == "undiscounted_returns":
        returns = returns_of(mdp, episodes, gamma=1.0)
    elif name == "truncation_as_termination":
        returns = discounted_returns(
            episodes.rewards, episodes.terminated, episodes.truncated, GAMMA
        )
    elif name == "no_discount_weights":
        return returns - values
    elif name == "own_return_in_baseline":
        # The group mean with each sample in it, as GRPO uses: shrinks the gradient by (k-1)/k.
        grouped = returns.unflatten(-1, (NUM_GROUPS, GROUP_SIZE))
        values = grouped.mean(-1, keepdim=True).expand_as(grouped).flatten(-2)
    elif name == "action_dependent_baseline":
        # The reward of the very action being scored.
        values = episodes.rewards
    elif name == "scaled_by_0.8":
        return 0.8 * discounting(episodes) * (returns - values)
    else:
        raise AssertionError(name)
    return discounting(episodes) * (returns - values)


@pytest.mark.parametrize(
    "mistake",
    [
        "undiscounted_returns",
        "truncation_as_termination",
        "no_discount_weights",
        "own_return_in_baseline",
        "action_dependent_baseline",
        "scaled_by_0.8",
    ],
)
def test_wrong_estimators_are_rejected(setting, mistake):
    # The 4-standard-error bound must be able to fail, or passing it would mean little.
    mdp, episodes, exact, _ = setting
    gradients = per_episode_gradients(mdp, episodes, wrong_weights(mistake, mdp, episodes))
    z = z_scores(gradients, exact)
    assert z.abs().max() > SIGMAS, f"{mistake}: z-scores {z}"
