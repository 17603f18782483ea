"""TSP: the environment, its numpy-vectorised twin, tour lengths and the classic heuristics."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pgrad.envs.tsp import (
    TSPEnv,
    brute_force_tour,
    farthest_insertion_tour,
    nearest_neighbour_tour,
    tour_length,
)

SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


@pytest.mark.parametrize("n", [2, 5, 20])
def test_check_env(n):
    check_env(gym.make("pgrad/TSP-v0", n=n).unwrapped, skip_render_check=True)


def test_tour_length_by_hand():
    assert tour_length(SQUARE, np.array([0, 1, 2, 3])) == pytest.approx(4.0)
    # The crossing tour: two sides and two diagonals.
    assert tour_length(SQUARE, np.array([0, 2, 1, 3])) == pytest.approx(2 + 2 * math.sqrt(2))
    # Batched over tours; the closing edge counts (a path 0-1-2 alone would be 2).
    lengths = tour_length(SQUARE[:3], np.array([[0, 1, 2], [2, 1, 0]]))
    np.testing.assert_allclose(lengths, [2 + math.sqrt(2)] * 2)
    # Batched over instances.
    both = tour_length(np.stack([SQUARE, 2 * SQUARE]), np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(both, [4.0, 8.0])


def test_brute_force_by_hand():
    length, tour = brute_force_tour(SQUARE[[0, 2, 1, 3]])  # the corners out of order
    assert length == pytest.approx(4.0)
    assert sorted(tour.tolist()) == [0, 1, 2, 3] and tour[0] == 0


@pytest.mark.parametrize("n", [4, 6, 8])
def test_optimal_actions_earn_minus_the_optimum_and_heuristics_are_no_better(n):
    env = gym.make("pgrad/TSP-v0", n=n)
    rng = np.random.default_rng(n)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        optimum, tour = brute_force_tour(obs["coords"])
        total = 0.0
        for i, city in enumerate(np.roll(tour, -seed % n)):  # any rotation is the same tour
            assert obs["action_mask"].sum() == n - i
            obs, reward, terminated, truncated, info = env.step(int(city))
            total += reward
            assert terminated == (i == n - 1) and not truncated
            assert reward == 0.0 or terminated
        assert total == pytest.approx(-optimum) and info["tour_length"] == pytest.approx(optimum)
        coords = obs["coords"]
        for heuristic in (
            nearest_neighbour_tour(coords, seed % n),
            farthest_insertion_tour(coords),
        ):
            assert sorted(heuristic.tolist()) == list(range(n))
            assert tour_length(coords, heuristic) >= optimum - 1e-9
        random_tours = np.array([rng.permutation(n) for _ in range(100)])
        assert tour_length(coords, random_tours).min() >= optimum - 1e-9


def test_farthest_insertion_beats_nearest_neighbour_on_average():
    # Kool, van Hoof and Welling (2019, Table 1) report mean lengths on random 20-city instances
    # of about 3.84 (optimal), 3.93 (farthest insertion), 4.33 (nearest insertion) and 4.50
    # (nearest neighbour); 200 instances pin a mean to about +-0.03.
    rng = np.random.default_rng(0)
    nearest, farthest = [], []
    for _ in range(200):
        coords = rng.uniform(size=(20, 2))
        nearest.append(tour_length(coords, nearest_neighbour_tour(coords)))
        farthest.append(tour_length(coords, farthest_insertion_tour(coords)))
    difference = np.array(nearest) - np.array(farthest)
    assert difference.mean() > 4 * difference.std() / math.sqrt(len(difference))
    assert 3.84 < np.mean(farthest) < 4.05 and 4.35 < np.mean(nearest) < 4.65


def test_observation_tracks_the_tour():
    env = TSPEnv(n=4)
    obs, _ = env.reset(seed=0)
    assert obs["action_mask"].tolist() == [1, 1, 1, 1] and obs["action_mask"].dtype == np.int8
    assert obs["coords"].dtype == np.float32 and obs["coords"].shape == (4, 2)
    obs, *_ = env.step(2)
    assert (obs["current"], obs["first"], obs["action_mask"].tolist()) == (2, 2, [1, 1, 0, 1])
    obs, *_ = env.step(0)
    assert (obs["current"], obs["first"], obs["action_mask"].tolist()) == (0, 2, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="city 2 was already visited"):
        env.step(2)
    env.step(1)
    _, reward, terminated, _, info = env.step(3)
    assert terminated and reward == pytest.approx(-tour_length(env.coords, np.array([2, 0, 1, 3])))
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)


def test_vector_env_matches_the_formula_and_shares_instances_in_groups():
    envs = gym.make_vec(
        "pgrad/TSP-v0", num_envs=6, vectorization_mode="vector_entry_point", n=5, group_size=3
    )
    obs, _ = envs.reset(seed=0)
    coords = obs["coords"]
    assert coords.shape == (6, 5, 2) and obs["action_mask"].shape == (6, 5)
    assert all(np.array_equal(coords[i], coords[j]) for i, j in [(0, 1), (0, 2), (3, 4), (3, 5)])
    assert not np.array_equal(coords[2], coords[3])
    rng = np.random.default_rng(0)
    tours = np.array([rng.permutation(5) for _ in range(6)])
    for t in range(5):
        obs, rewards, terminated, truncated, info = envs.step(tours[:, t])
        assert terminated.all() == (t == 4) and not truncated.any()
        assert np.array_equal(obs["current"], tours[:, t]) and np.array_equal(
            obs["first"], tours[:, 0]
        )
    np.testing.assert_allclose(rewards, -tour_length(coords, tours))
    np.testing.assert_allclose(info["tour_length"], tour_length(coords, tours))
    # The same instance and tour in the single environment earn the same reward.
    single = TSPEnv(n=5)
    single.reset(seed=0)
    single.coords = coords[4].copy()
    for city in tours[4]:
        _, reward, *_ = single.step(int(city))
    assert reward == pytest.approx(rewards[4])
    # Next-step autoreset: the actions are ignored, new instances come with reward 0.
    obs, rewards, terminated, _, _ = envs.step(np.zeros(6, dtype=np.int64))
    assert (rewards == 0).all() and not terminated.any() and obs["action_mask"].all()
    assert not np.array_equal(obs["coords"], coords)


def test_vector_env_rejects_revisits_and_bad_sizes():
    from pgrad.envs.tsp import TSPVectorEnv

    envs = TSPVectorEnv(num_envs=2, n=3)
    envs.reset(seed=0)
    envs.step(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"environments \[1\] chose a city already visited"):
        envs.step(np.array([1, 1]))
    with pytest.raises(ValueError, match="group_size=2 must divide num_envs=3"):
        TSPVectorEnv(num_envs=3, group_size=2)
    with pytest.raises(ValueError, match="n .the number of cities. must be an integer >= 2"):
        TSPEnv(n=1)
    with pytest.raises(ValueError, match="at most 9 cities"):
        brute_force_tour(np.zeros((10, 2)))
