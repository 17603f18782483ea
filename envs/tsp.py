"""The travelling salesman problem as a Gymnasium environment, and classic tours to compare with.

Building a tour is sampling a sequence of actions, as in Kool, van Hoof and Welling (2019),
"Attention, Learn to Solve Routing Problems!". ``pgrad/TSP-v0`` draws ``n`` cities uniformly in
the unit square from the environment's ``np_random``; each step visits one city (the first action
picks the start); after the ``n``-th the tour closes and the episode ends with reward
``-length``, the only nonzero reward. ``info["tour_length"]`` holds the length then.

==================  ===========================  ===============================================
key                 space                        meaning
==================  ===========================  ===============================================
``coords``          ``Box(0, 1, (n, 2))``        city positions, ``float32``
``current``         ``Discrete(n)``              the city visited last (0 before the first)
``first``           ``Discrete(n)``              the start city (0 before the first action)
``action_mask``     ``MultiBinary(n)``, ``int8``  1 for the cities not yet visited
==================  ===========================  ===============================================

Before the first action every entry of ``action_mask`` is 1, which is how a policy tells that
step apart (``current`` and ``first`` mean nothing then). Visiting a city twice raises
``ValueError``: the mask says which cities are legal.

``gymnasium.make_vec("pgrad/TSP-v0", num_envs, vectorization_mode="vector_entry_point",
group_size=k)`` gives :class:`TSPVectorEnv`, the same environment vectorised in numpy, in which
each run of ``k`` consecutive environments shares one instance: ``k = n`` with
``distinct_starts=True`` (environment ``i`` of a group must start at city ``i``; its first
``action_mask`` allows only that city) is POMO's set of rollouts (Kwon et al., 2020).

Pure helpers, in numpy: :func:`tour_length`, :func:`brute_force_tour` (exact, ``n <= 9``),
:func:`nearest_neighbour_tour` and :func:`farthest_insertion_tour` (Rosenkrantz, Stearns and
Lewis, 1977: about 25% and 10% above the optimum on random uniform instances).
"""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from pgrad.envs.checks import int_at_least

BRUTE_FORCE_MAX_CITIES = 9


def tour_length(coords: np.ndarray, tour: np.ndarray) -> np.ndarray:
    """Length of the closed tour visiting ``coords[tour[0]], coords[tour[1]], ...`` and back.

    ::

        L = sum_i || coords[tour[i + 1 mod m]] - coords[tour[i]] ||_2

    ===========  ===============  ===========================================================
    argument     shape            meaning
    ===========  ===============  ===========================================================
    ``coords``   ``[..., n, 2]``  city positions
    ``tour``     ``[..., m]``     city indices in visiting order (a permutation for a tour)
    returned     ``[...]``        lengths, ``float64``
    ===========  ===============  ===========================================================

    Leading dimensions broadcast, so one instance can score many tours.
    """
    coords = np.asarray(coords, dtype=np.float64)
    tour = np.asarray(tour, dtype=np.int64)
    shape = np.broadcast_shapes(coords.shape[:-2], tour.shape[:-1])
    coords = np.broadcast_to(coords, (*shape, *coords.shape[-2:]))
    tour = np.broadcast_to(tour, (*shape, tour.shape[-1]))
    ordered = np.take_along_axis(coords, tour[..., None], axis=-2)
    return np.linalg.norm(np.roll(ordered, -1, axis=-2) - ordered, axis=-1).sum(-1)


def brute_force_tour(coords: np.ndarray) -> tuple[float, np.ndarray]:
    """The optimal tour by enumeration of the ``(n - 1)!`` tours that start at city 0.

    Args:
        coords: ``[n, 2]`` with ``2 <= n <= 9`` (8! = 40,320 tours).

    Returns:
        ``(length, tour)``: the shortest length and one tour ``[n]`` that has it.

    Raises:
        ValueError: for another shape or more than 9 cities.
    """
    n = _check_coords(coords)
    if n > BRUTE_FORCE_MAX_CITIES:
        raise ValueError(f"brute force is for at most {BRUTE_FORCE_MAX_CITIES} cities, got {n}")
    rest = np.array(list(itertools.permutations(range(1, n))), dtype=np.int64).reshape(-1, n - 1)
    tours = np.concatenate([np.zeros((len(rest), 1), dtype=np.int64), rest], axis=1)
    lengths = tour_length(coords, tours)
    best = int(np.argmin(lengths))
    return float(lengths[best]), tours[best]


def nearest_neighbour_tour(coords: np.ndarray, start: int = 0) -> np.ndarray:
    """Greedy tour: from ``start``, always go to the nearest unvisited city.

    Args:
        coords: ``[n, 2]`` city positions.
        start: the first city.

    Returns:
        ``[n]`` the tour.
    """
    n = _check_coords(coords)
    distances = _distance_matrix(coords)
    tour = [int(start)]
    unvisited = np.ones(n, dtype=bool)
    unvisited[start] = False
    for _ in range(n - 1):
        nearest = int(np.argmin(np.where(unvisited, distances[tour[-1]], np.inf)))
        tour.append(nearest)
        unvisited[nearest] = False
    return np.array(tour, dtype=np.int64)


def farthest_insertion_tour(coords: np.ndarray) -> np.ndarray:
    """Farthest insertion (Rosenkrantz, Stearns and Lewis, 1977).

    Start from the two cities farthest apart. Repeatedly take the city whose distance to the
    tour (to its nearest tour city) is largest and insert it between the consecutive tour cities
    ``i, j`` that minimise ``d(i, c) + d(c, j) - d(i, j)``. Fixing the far-flung cities first
    gives the tour its outline early; insertions then only fill it in.

    Args:
        coords: ``[n, 2]`` city positions.

    Returns:
        ``[n]`` the tour.
    """
    n = _check_coords(coords)
    distances = _distance_matrix(coords)
    if n <= 2:
        return np.arange(n, dtype=np.int64)
    a, b = np.unravel_index(int(np.argmax(distances)), distances.shape)
    tour = [int(a), int(b)]
    in_tour = np.zeros(n, dtype=bool)
    in_tour[tour] = True
    to_tour = np.minimum(distances[a], distances[b])
    for _ in range(n - 2):
        city = int(np.argmax(np.where(in_tour, -np.inf, to_tour)))
        here = np.array(tour)
        after = np.roll(here, -1)
        cost = distances[here, city] + distances[city, after] - distances[here, after]
        tour.insert(int(np.argmin(cost)) + 1, city)
        in_tour[city] = True
        to_tour = np.minimum(to_tour, distances[city])
    return np.array(tour, dtype=np.int64)


class TSPEnv(gym.Env):
    """Visit ``n`` random cities, one per step; reward ``-tour length`` at the end.

    Args:
        n: number of cities, ``>= 2``.
        render_mode: ``None`` or ``"ansi"`` (the tour so far as text).

    Attributes:
        coords: ``[n, 2]`` the current instance.
        tour: the cities visited so far, in order.

    Raises:
        ValueError: for ``n < 2`` or an unknown render mode.
    """

    metadata = {"render_modes": ["ansi"], "episode_info_keys": ("tour_length",)}

    def __init__(self, n: int = 20, render_mode: str | None = None) -> None:
        self.n = int_at_least("n (the number of cities)", n, 2)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = _observation_space(self.n)
        self.action_space = spaces.Discrete(self.n)
        self.coords = np.zeros((self.n, 2), dtype=np.float32)
        self.tour: list[int] = []
        self._unvisited = np.ones(self.n, dtype=np.int8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self.coords = self.np_random.uniform(0.0, 1.0, (self.n, 2)).astype(np.float32)
        self.tour = []
        self._unvisited = np.ones(self.n, dtype=np.int8)
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if len(self.tour) == self.n:
            raise gym.error.ResetNeeded("the tour is complete: call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a city in [0, {self.n}), got {action!r}")
        city = int(action)
        if not self._unvisited[city]:
            raise ValueError(f"city {city} was already visited (tour so far {self.tour})")
        self.tour.append(city)
        self._unvisited[city] = 0
        if len(self.tour) < self.n:
            return self._observation(), 0.0, False, False, {}
        length = float(tour_length(self.coords, np.array(self.tour)))
        return self._observation(), -length, True, False, {"tour_length": length}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return " -> ".join(map(str, self.tour)) or "(no city yet)"

    def _observation(self) -> dict[str, Any]:
        return {
            "coords": self.coords.copy(),
            "current": self.tour[-1] if self.tour else 0,
            "first": self.tour[0] if self.tour else 0,
            "action_mask": self._unvisited.copy(),
        }


class TSPVectorEnv(VectorEnv):
    """``num_envs`` TSP environments stepped together in numpy.

    Every episode lasts exactly ``n`` steps, so all environments start and end together. Runs of
    ``group_size`` consecutive environments share one instance (``coords``). Autoreset is
    Gymnasium's next-step mode: the step after the episodes end ignores its actions and returns
    the first observations of new instances with reward 0.

    Observations are :class:`TSPEnv`'s, batched: ``coords [N, n, 2]``, ``current [N]``,
    ``first [N]``, ``action_mask [N, n]``; actions ``[N]``; ``info["tour_length"]`` ``[N]`` at
    the end (with the usual ``info["_tour_length"]`` mask).

    Args:
        num_envs: number of environments ``N``.
        n: cities per instance, ``>= 2``.
        group_size: environments per shared instance; must divide ``num_envs``.
        distinct_starts: environment ``i`` of a group must start at city ``i mod n`` (its
            first ``action_mask`` allows only that city): with ``group_size = n`` every instance
            is toured from each of its cities, POMO's rollouts. The forced first action has
            probability 1 under any masked policy, so it adds nothing to a policy gradient.
        max_episode_steps: ignored (episodes last ``n`` steps); accepted because
            ``gymnasium.make_vec`` passes the registered limit.

    Raises:
        ValueError: for a bad size, or (in ``step``) a city already visited.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "episode_info_keys": ("tour_length",)}

    def __init__(
        self,
        num_envs: int = 1,
        n: int = 20,
        group_size: int = 1,
        distinct_starts: bool = False,
        max_episode_steps: int | None = None,
    ) -> None:
        self.num_envs = int_at_least("num_envs", num_envs)
        self.n = int_at_least("n (the number of cities)", n, 2)
        self.group_size = int_at_least("group_size", group_size)
        self.distinct_starts = bool(distinct_starts)
        self.starts = np.arange(self.num_envs) % self.group_size % self.n
        if self.num_envs % self.group_size:
            raise ValueError(
                f"group_size={group_size} must divide num_envs={num_envs}: every group shares "
                "one instance"
            )
        self.single_observation_space = _observation_space(self.n)
        self.single_action_space = spaces.Discrete(self.n)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.coords = np.zeros((self.num_envs, self.n, 2), dtype=np.float32)
        self.tours = np.zeros((self.num_envs, 0), dtype=np.int64)
        self._unvisited = np.ones((self.num_envs, self.n), dtype=np.int8)
        self._needs_reset = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._new_instances()
        return self._observation(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        zeros = np.zeros(self.num_envs)
        no = np.zeros(self.num_envs, dtype=bool)
        if self._needs_reset:
            self._new_instances()
            return self._observation(), zeros, no, no.copy(), {}
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if actions.shape != (self.num_envs,) or actions.min() < 0 or actions.max() >= self.n:
            raise ValueError(
                f"actions must be {self.num_envs} cities in [0, {self.n}), got {actions!r}"
            )
        rows = np.arange(self.num_envs)
        if self.distinct_starts and self.tours.shape[1] == 0 and (actions != self.starts).any():
            bad = np.flatnonzero(actions != self.starts)[:3].tolist()
            raise ValueError(f"environments {bad} must start at cities {self.starts[bad]}")
        if not self._unvisited[rows, actions].all():
            bad = np.flatnonzero(self._unvisited[rows, actions] == 0)[:3].tolist()
            raise ValueError(f"environments {bad} chose a city already visited")
        self._unvisited[rows, actions] = 0
        self.tours = np.concatenate([self.tours, actions[:, None]], axis=1)
        if self.tours.shape[1] < self.n:
            return self._observation(), zeros, no, no.copy(), {}
        self._needs_reset = True
        lengths = tour_length(self.coords, self.tours)
        info = {"tour_length": lengths, "_tour_length": np.ones(self.num_envs, dtype=bool)}
        return self._observation(), -lengths, ~no, no, info

    def _new_instances(self) -> None:
        groups = self.num_envs // self.group_size
        coords = self.np_random.uniform(0.0, 1.0, (groups, self.n, 2)).astype(np.float32)
        self.coords = np.repeat(coords, self.group_size, axis=0)
        self.tours = np.zeros((self.num_envs, 0), dtype=np.int64)
        self._unvisited = np.ones((self.num_envs, self.n), dtype=np.int8)
        self._needs_reset = False

    def _observation(self) -> dict[str, np.ndarray]:
        started = self.tours.shape[1] > 0
        zeros = np.zeros(self.num_envs, dtype=np.int64)
        mask = self._unvisited.copy()
        if self.distinct_starts and not started:
            mask[:] = 0
            mask[np.arange(self.num_envs), self.starts] = 1
        return {
            "coords": self.coords.copy(),
            "current": self.tours[:, -1].copy() if started else zeros,
            "first": self.tours[:, 0].copy() if started else zeros.copy(),
            "action_mask": mask,
        }


def _observation_space(n: int) -> spaces.Dict:
    return spaces.Dict(
        {
            "coords": spaces.Box(0.0, 1.0, (n, 2), np.float32),
            "current": spaces.Discrete(n),
            "first": spaces.Discrete(n),
            "action_mask": spaces.MultiBinary(n),
        }
    )


def _distance_matrix(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords, dtype=np.float64)
    return np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=-1)


def _check_coords(coords: np.ndarray) -> int:
    shape = np.shape(coords)
    if len(shape) != 2 or shape[1] != 2 or shape[0] < 1:
        raise ValueError(f"coords must be [n, 2] with n >= 1, got shape {shape}")
    return int(shape[0])


__all__ = [
    "TSPEnv",
    "TSPVectorEnv",
    "brute_force_tour",
    "farthest_insertion_tour",
    "nearest_neighbour_tour",
    "tour_length",
]
