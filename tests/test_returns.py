"""Tests for pgrad.returns: hand-worked cases, a slow reference on a grid, and validation."""

from __future__ import annotations

import random

import pytest
import torch

from pgrad.returns import discounted_returns, gae

F, T_ = False, True


def col(*xs: float | bool) -> torch.Tensor:
    """A ``[T, 1]`` tensor from one environment's values over time."""
    dtype = torch.bool if isinstance(xs[0], bool) else torch.float64
    return torch.tensor(xs, dtype=dtype).unsqueeze(1)


# --- slow references: pure Python over both T and N, written from the definitions -----------


def _discounted_returns_loop(rewards, terminated, truncated, gamma, next_values=None):
    T, N = len(rewards), len(rewards[0])
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        for t in reversed(range(T)):
            nv = 0.0 if next_values is None else next_values[t][n]
            if terminated[t][n]:
                c = 0.0
            elif truncated[t][n] or t == T - 1:
                c = nv
            else:
                c = out[t + 1][n]
            out[t][n] = rewards[t][n] + gamma * c
    return out


def _gae_loop(rewards, values, next_values, terminated, truncated, gamma, lam):
    T, N = len(rewards), len(rewards[0])
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        following = 0.0
        for t in reversed(range(T)):
            bootstrap = 0.0 if terminated[t][n] else next_values[t][n]
            delta = rewards[t][n] + gamma * bootstrap - values[t][n]
            if terminated[t][n] or truncated[t][n]:
                following = 0.0
            following = delta + gamma * lam * following
            adv[t][n] = following
    rets = [[adv[t][n] + values[t][n] for n in range(N)] for t in range(T)]
    return adv, rets


def _random_rollout(seed: int):
    rng = random.Random(seed)
    T, N = rng.randint(1, 12), rng.randint(1, 6)
    p_term, p_trunc = rng.choice([0.0, 0.2, 0.5]), rng.choice([0.0, 0.2, 0.5])
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=gen, dtype=torch.float64)
    values = torch.randn(T, N, generator=gen, dtype=torch.float64)
    next_values = torch.randn(T, N, generator=gen, dtype=torch.float64)
    terminated = torch.rand(T, N, generator=gen) < p_term
    truncated = torch.rand(T, N, generator=gen) < p_trunc
    gamma = rng.choice([0.0, 0.5, 0.9, 0.99, 1.0])
    lam = rng.choice([0.0, 0.3, 0.95, 1.0])
    return rewards, values, next_values, terminated, truncated, gamma, lam


# --- discounted_returns by hand (gamma = 0.5) -------------------------------------------------


def test_termination_stops_the_return():
    # t=2: last step, nothing to bootstrap from -> 4; t=1 terminated -> 2; t=0: 1 + .5 * 2 = 2.
    out = discounted_returns(col(1.0, 2.0, 4.0), col(F, T_, F), col(F, F, F), 0.5)
    torch.testing.assert_close(out, col(2.0, 2.0, 4.0))


def test_termination_ignores_next_values():
    # t=2 bootstraps at the rollout's end: 4 + .5 * 30 = 19; t=1 terminated: 2, not 2 + .5 * 20.
    out = discounted_returns(
        col(1.0, 2.0, 4.0), col(F, T_, F), col(F, F, F), 0.5, next_values=col(10.0, 20.0, 30.0)
    )
    torch.testing.assert_close(out, col(2.0, 2.0, 19.0))


def test_truncation_bootstraps_from_next_values():
    # t=2: 4 + .5 * 30 = 19; t=1 truncated: 2 + .5 * 20 = 12; t=0: 1 + .5 * 12 = 7.
    out = discounted_returns(
        col(1.0, 2.0, 4.0), col(F, F, F), col(F, T_, F), 0.5, next_values=col(10.0, 20.0, 30.0)
    )
    torch.testing.assert_close(out, col(7.0, 12.0, 19.0))


def test_truncation_without_critic_bootstraps_zero():
    out = discounted_returns(col(1.0, 2.0, 4.0), col(F, F, F), col(F, T_, F), 0.5)
    torch.testing.assert_close(out, col(2.0, 2.0, 4.0))


def test_rollout_cut_mid_episode_bootstraps_at_last_step():
    # t=2: 1 + .5 * 8 = 5; t=1: 1 + .5 * 5 = 3.5; t=0: 1 + .5 * 3.5 = 2.75.
    out = discounted_returns(
        col(1.0, 1.0, 1.0), col(F, F, F), col(F, F, F), 0.5, next_values=col(0.0, 0.0, 8.0)
    )
    torch.testing.assert_close(out, col(2.75, 3.5, 5.0))


def test_termination_beats_truncation():
    # Both flags at t=1: the state is terminal, its value 20 must not be used.
    out = discounted_returns(
        col(1.0, 2.0, 4.0), col(F, T_, F), col(F, T_, F), 0.5, next_values=col(10.0, 20.0, 30.0)
    )
    torch.testing.assert_close(out, col(2.0, 2.0, 19.0))


def test_several_environments_at_once():
    # The three columns are the termination, truncation and cut cases above.
    rewards = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 1.0], [4.0, 4.0, 1.0]])
    terminated = torch.tensor([[F, F, F], [T_, F, F], [F, F, F]])
    truncated = torch.tensor([[F, F, F], [F, T_, F], [F, F, F]])
    next_values = torch.tensor([[10.0, 10.0, 0.0], [20.0, 20.0, 0.0], [30.0, 30.0, 8.0]])
    out = discounted_returns(rewards, terminated, truncated, 0.5, next_values)
    expected = torch.tensor([[2.0, 7.0, 2.75], [2.0, 12.0, 3.5], [19.0, 19.0, 5.0]])
    torch.testing.assert_close(out, expected)


def test_nan_value_at_terminal_step_does_not_leak():
    out = discounted_returns(
        col(1.0, 2.0), col(T_, F), col(F, F), 0.5, next_values=col(float("nan"), 2.0)
    )
    torch.testing.assert_close(out, col(1.0, 3.0))


def test_gamma_zero_and_one():
    rewards, flags = col(1.0, 2.0, 4.0), col(F, F, F)
    torch.testing.assert_close(discounted_returns(rewards, flags, flags, 0.0), rewards)
    torch.testing.assert_close(discounted_returns(rewards, flags, flags, 1.0), col(7.0, 6.0, 4.0))


# --- gae by hand (gamma = 0.5, lam = 0.5, so gamma * lam = 0.25) ------------------------------
# rewards [1, 2, 4], values [1, 2, 3], next_values [2, 10, 30]:
# delta = [1 + .5*2 - 1, 2 + .5*10 - 2, 4 + .5*30 - 3] = [1, 5, 16] (with no termination).

REWARDS, VALUES, NEXT = col(1.0, 2.0, 4.0), col(1.0, 2.0, 3.0), col(2.0, 10.0, 30.0)


def test_gae_truncation_stops_accumulating_but_bootstraps():
    # A2 = 16; A1 = delta1 = 5 (truncated: no accumulation); A0 = 1 + .25 * 5 = 2.25.
    adv, ret = gae(REWARDS, VALUES, NEXT, col(F, F, F), col(F, T_, F), 0.5, 0.5)
    torch.testing.assert_close(adv, col(2.25, 5.0, 16.0))
    torch.testing.assert_close(ret, col(3.25, 7.0, 19.0))


def test_gae_termination_stops_bootstrapping():
    # delta1 = 2 + 0 - 2 = 0; A1 = 0; A0 = 1 + .25 * 0 = 1; A2 = 16.
    adv, ret = gae(REWARDS, VALUES, NEXT, col(F, T_, F), col(F, F, F), 0.5, 0.5)
    torch.testing.assert_close(adv, col(1.0, 0.0, 16.0))
    torch.testing.assert_close(ret, col(2.0, 2.0, 19.0))


def test_gae_termination_beats_truncation():
    adv, _ = gae(REWARDS, VALUES, NEXT, col(F, T_, F), col(F, T_, F), 0.5, 0.5)
    torch.testing.assert_close(adv, col(1.0, 0.0, 16.0))


def test_gae_rollout_cut_mid_episode():
    # A2 = 16; A1 = 5 + .25 * 16 = 9; A0 = 1 + .25 * 9 = 3.25.
    adv, ret = gae(REWARDS, VALUES, NEXT, col(F, F, F), col(F, F, F), 0.5, 0.5)
    torch.testing.assert_close(adv, col(3.25, 9.0, 16.0))
    torch.testing.assert_close(ret, col(4.25, 11.0, 19.0))


def test_gae_several_environments_at_once():
    rewards = torch.cat([REWARDS, REWARDS, REWARDS], dim=1)
    values = torch.cat([VALUES, VALUES, VALUES], dim=1)
    next_values = torch.cat([NEXT, NEXT, NEXT], dim=1)
    terminated = torch.cat([col(F, F, F), col(F, T_, F), col(F, F, F)], dim=1)
    truncated = torch.cat([col(F, T_, F), col(F, F, F), col(F, F, F)], dim=1)
    adv, _ = gae(rewards, values, next_values, terminated, truncated, 0.5, 0.5)
    expected = torch.cat([col(2.25, 5.0, 16.0), col(1.0, 0.0, 16.0), col(3.25, 9.0, 16.0)], 1)
    torch.testing.assert_close(adv, expected)


# --- the grid: vectorised against the slow references -----------------------------------------


EXACT = {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("seed", range(40))
def test_discounted_returns_matches_loop(seed: int):
    rewards, _, next_values, terminated, truncated, gamma, _ = _random_rollout(seed)
    expected = _discounted_returns_loop(
        rewards.tolist(), terminated.tolist(), truncated.tolist(), gamma, next_values.tolist()
    )
    out = discounted_returns(rewards, terminated, truncated, gamma, next_values)
    # float64 all the way: agreement to rounding, not to float32's precision
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), **EXACT)
    expected_no_critic = _discounted_returns_loop(
        rewards.tolist(), terminated.tolist(), truncated.tolist(), gamma
    )
    out = discounted_returns(rewards, terminated, truncated, gamma)
    torch.testing.assert_close(out, torch.tensor(expected_no_critic, dtype=torch.float64), **EXACT)


@pytest.mark.parametrize("seed", range(40))
def test_gae_matches_loop(seed: int):
    rewards, values, next_values, terminated, truncated, gamma, lam = _random_rollout(seed)
    adv_loop, ret_loop = _gae_loop(
        rewards.tolist(),
        values.tolist(),
        next_values.tolist(),
        terminated.tolist(),
        truncated.tolist(),
        gamma,
        lam,
    )
    adv, ret = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor(adv_loop, dtype=torch.float64), **EXACT)
    torch.testing.assert_close(ret, torch.tensor(ret_loop, dtype=torch.float64), **EXACT)


@pytest.mark.parametrize("seed", range(20))
def test_gae_lambda_one_is_returns_minus_values(seed: int):
    rewards, values, next_values, terminated, truncated, gamma, _ = _random_rollout(seed)
    # Inside an episode the observation after step t is the one at t + 1: same value.
    done = terminated | truncated
    next_values[:-1] = torch.where(done[:-1], next_values[:-1], values[1:])
    adv, ret = gae(rewards, values, next_values, terminated, truncated, gamma, 1.0)
    returns = discounted_returns(rewards, terminated, truncated, gamma, next_values)
    torch.testing.assert_close(adv, returns - values)
    torch.testing.assert_close(ret, returns)


@pytest.mark.parametrize("seed", range(20))
def test_gae_lambda_zero_is_td_error(seed: int):
    rewards, values, next_values, terminated, truncated, gamma, _ = _random_rollout(seed)
    adv, _ = gae(rewards, values, next_values, terminated, truncated, gamma, 0.0)
    td_error = rewards + gamma * next_values * (~terminated) - values
    torch.testing.assert_close(adv, td_error)


# --- conventions: flags as numbers, dtypes, constants -----------------------------------------


def test_float_flags_are_accepted():
    rewards, values, next_values, terminated, truncated, gamma, lam = _random_rollout(3)
    args = (rewards, values, next_values)
    as_bool = gae(*args, terminated, truncated, gamma, lam)
    as_float = gae(*args, terminated.double(), truncated.float(), gamma, lam)
    torch.testing.assert_close(as_bool, as_float)
    torch.testing.assert_close(
        discounted_returns(rewards, terminated.int(), truncated.int(), gamma),
        discounted_returns(rewards, terminated, truncated, gamma),
    )


def test_outputs_are_constants_in_the_input_dtype():
    rewards = torch.randn(4, 3, requires_grad=True)
    values = torch.randn(4, 3, requires_grad=True)
    flags = torch.zeros(4, 3, dtype=torch.bool)
    returns = discounted_returns(rewards, flags, flags, 0.9, next_values=values * 2)
    adv, ret = gae(rewards, values, values * 2, flags, flags, 0.9, 0.95)
    for out in (returns, adv, ret):
        assert not out.requires_grad
        assert out.dtype == torch.float32
    adv64, _ = gae(rewards, values.double(), values, flags, flags, 0.9, 0.95)
    assert adv64.dtype == torch.float64


def test_inputs_are_not_modified():
    rewards, values, next_values, terminated, truncated, gamma, lam = _random_rollout(5)
    copies = [x.clone() for x in (rewards, values, next_values, terminated, truncated)]
    gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    discounted_returns(rewards, terminated, truncated, gamma, next_values)
    for before, after in zip(
        copies, (rewards, values, next_values, terminated, truncated), strict=True
    ):
        assert torch.equal(before, after)


# --- validation ---------------------------------------------------------------------------------


def _flags(T: int = 3, N: int = 2) -> torch.Tensor:
    return torch.zeros(T, N, dtype=torch.bool)


@pytest.mark.parametrize("shape", [(3,), (3, 2, 1), (0, 2)])
def test_rewards_must_be_time_major(shape):
    rewards = torch.zeros(shape)
    with pytest.raises(ValueError, match=r"rewards must be \[T, N\].*" + str(tuple(shape))):
        discounted_returns(rewards, torch.zeros(shape), torch.zeros(shape), 0.9)


@pytest.mark.parametrize("name", ["terminated", "truncated", "next_values"])
def test_discounted_returns_names_mismatched_tensor(name):
    kwargs = {
        "rewards": torch.zeros(3, 2),
        "terminated": _flags(),
        "truncated": _flags(),
        "gamma": 0.9,
        "next_values": torch.zeros(3, 2),
    }
    kwargs[name] = kwargs[name][:, :1]
    with pytest.raises(
        ValueError, match=rf"{name} has shape \(3, 1\) but rewards has shape \(3, 2\)"
    ):
        discounted_returns(**kwargs)


@pytest.mark.parametrize("name", ["values", "next_values", "terminated", "truncated"])
def test_gae_names_mismatched_tensor(name):
    kwargs = {
        "rewards": torch.zeros(3, 2),
        "values": torch.zeros(3, 2),
        "next_values": torch.zeros(3, 2),
        "terminated": _flags(),
        "truncated": _flags(),
        "gamma": 0.9,
        "lam": 0.95,
    }
    kwargs[name] = kwargs[name].unsqueeze(-1)
    with pytest.raises(ValueError, match=rf"{name} has shape \(3, 2, 1\)"):
        gae(**kwargs)


@pytest.mark.parametrize("gamma", [-0.1, 1.01, float("nan"), "0.9", None])
def test_gamma_outside_unit_interval(gamma):
    with pytest.raises(ValueError, match="gamma must be a number in"):
        discounted_returns(torch.zeros(3, 2), _flags(), _flags(), gamma)
    with pytest.raises(ValueError, match="gamma must be a number in"):
        gae(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), _flags(), _flags(), gamma, 0.9)


@pytest.mark.parametrize("lam", [-0.5, 2.0, float("nan")])
def test_lam_outside_unit_interval(lam):
    zeros = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="lam must be a number in"):
        gae(zeros, zeros, zeros, _flags(), _flags(), 0.9, lam)


def test_flags_other_than_zero_one_are_rejected():
    terminated = torch.tensor([[0.0, 0.5], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"terminated must be bool or 0/1.*0\.5"):
        discounted_returns(torch.zeros(2, 2), terminated, _flags(2, 2), 0.9)


def test_bad_flags_are_named_with_a_few_of_their_values():
    truncated = torch.tensor([[0.0, 0.0, 2.0, 3.0, 4.0, 5.0]])
    with pytest.raises(
        ValueError,
        match=r"^truncated must be bool or 0/1, got values such as \[2\.0, 3\.0, 4\.0\]$",
    ):
        discounted_returns(torch.zeros(1, 6), torch.zeros(1, 6), truncated, 0.9)
