"""Token tasks: sequence generation as a Gymnasium environment, one token per step.

Sampling tokens is sampling actions. :class:`TokenTask` turns a prompt generator into an
environment: a subclass draws ``(prompt, answer)`` from the environment's ``np_random`` and
names its symbols; the base class does the rest. An episode is one answer:

1. ``reset`` draws a prompt and shows ``prompt + <sep>``;
2. each ``step`` appends the agent's token; the episode ends when the agent emits ``<eos>`` or
   has written as many tokens as the answer has;
3. the reward, 0 before the end, is at the end the fraction of answer positions the agent got
   right, so 1.0 only for the exact answer; ``info["exact"]`` says whether it was exact.

Token ids: ``0 = <pad>``, ``1 = <sep>``, ``2 = <eos>``, then the task's symbols in order.

===================  ============================  ============================================
key                  space                         meaning
===================  ============================  ============================================
``tokens``           ``MultiDiscrete([V] * L)``    prompt, ``<sep>``, tokens generated so far,
                                                   then ``<pad>``; ``int64``
``length``           ``Discrete(L + 1)``           how many entries of ``tokens`` are written
``action_mask``      ``MultiBinary(V)``, ``int8``  1 for the tokens the agent may emit
===================  ============================  ============================================

``V`` is the vocabulary size and ``L = max_prompt_length + 1 + max_answer_length``. The mask
follows PettingZoo's convention and forbids ``<pad>`` and ``<sep>``: they can never be right.
The environment still accepts them (``check_env`` and ``action_space.sample()`` ignore masks);
they are written like any token and score as wrong.

A seeded ``reset(seed=s)`` draws the same prompt every time, which is how ``k`` completions of
one prompt form a group for RLOO or GRPO.

=========================  ===========================================  =====================
id                         task                                         kwargs
=========================  ===========================================  =====================
``pgrad/Copy-v0``          repeat the prompt                            ``length``,
                                                                        ``num_symbols``,
                                                                        ``min_length``
``pgrad/Reverse-v0``       the prompt backwards                         same
``pgrad/Sort-v0``          the prompt's symbols in ascending order      same
``pgrad/Addition-v0``      ``a + b`` for two ``digits``-digit numbers,  ``digits``,
                           ``digits + 1`` answer digits                 ``least_significant_first``
=========================  ===========================================  =====================

:class:`TokenTaskVectorEnv` steps ``N`` copies of any task in one loop without Gymnasium's
per-environment wrappers and batching (about 5x faster than a ``SyncVectorEnv`` of them); the
four tasks above register it as their ``vector_entry_point``, and it takes one reset seed per
environment, as ``SyncVectorEnv`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from pgrad.envs.checks import int_at_least

PAD, SEP, EOS = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<sep>", "<eos>")
FIRST_SYMBOL = len(SPECIAL_TOKENS)


class TokenTask(gym.Env):
    """Base class: a prompt generator plus a scorer make a token-generation environment.

    A subclass calls ``super().__init__`` with its symbols and maximal lengths and implements
    :meth:`make_prompt`; it may override :meth:`score` (to verify an answer instead of comparing
    it with a reference) or :meth:`action_mask`. For example, a task that asks for the prompt's
    largest symbol::

        class Max(TokenTask):
            def __init__(self, length: int = 4) -> None:
                super().__init__(symbols="0123456789", max_prompt_length=length,
                                 max_answer_length=1)
                self.length = length

            def make_prompt(self, rng):
                digits = rng.integers(0, 10, self.length)
                return self.tokens_of(digits), self.tokens_of([digits.max()])

    Args:
        symbols: the task's symbols (one-character strings or names), in token order after the
            special tokens; at least one.
        max_prompt_length: the longest prompt :meth:`make_prompt` returns, ``>= 1``.
        max_answer_length: the longest answer :meth:`make_prompt` returns, ``>= 1``.
        render_mode: ``None`` or ``"ansi"`` (``render()`` returns the tokens as text).

    Attributes:
        prompt: the current prompt's token ids, ``[P]``.
        answer: the current reference answer's token ids, ``[A]``.
        generated: the tokens emitted so far in this episode.

    Raises:
        ValueError: for no symbols, a length below 1 or an unknown render mode.
    """

    metadata = {"render_modes": ["ansi"], "episode_info_keys": ("exact",)}
    """``episode_info_keys``: the agent logs ``info["exact"]`` of every finished episode."""

    def __init__(
        self,
        symbols: Sequence[str],
        max_prompt_length: int,
        max_answer_length: int,
        render_mode: str | None = None,
    ) -> None:
        if len(symbols) < 1:
            raise ValueError("a token task needs at least one symbol")
        self.max_prompt_length = int_at_least("max_prompt_length", max_prompt_length)
        self.max_answer_length = int_at_least("max_answer_length", max_answer_length)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.vocabulary = (*SPECIAL_TOKENS, *symbols)
        self.vocab_size = len(self.vocabulary)
        self.max_length = self.max_prompt_length + 1 + self.max_answer_length
        self.observation_space = spaces.Dict(
            {
                "tokens": spaces.MultiDiscrete(
                    np.full(self.max_length, self.vocab_size), dtype=np.int64
                ),
                "length": spaces.Discrete(self.max_length + 1),
                "action_mask": spaces.MultiBinary(self.vocab_size),
            }
        )
        self.action_space = spaces.Discrete(self.vocab_size)
        self._allowed = np.ones(self.vocab_size, dtype=np.int8)
        self._allowed[[PAD, SEP]] = 0
        self.prompt = np.zeros(0, dtype=np.int64)
        self.answer = np.zeros(0, dtype=np.int64)
        self.generated: list[int] = []
        self._tokens = np.full(self.max_length, PAD, dtype=np.int64)
        self._length = 0
        self._done = True

    # -- what a subclass provides -----------------------------------------------------------
    def make_prompt(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw one task instance from ``rng`` (the environment's ``np_random``).

        Returns:
            ``(prompt, answer)``: token-id arrays of lengths in ``[1, max_prompt_length]`` and
            ``[1, max_answer_length]``; build them from symbol indices with :meth:`tokens_of`.
        """
        raise NotImplementedError

    def score(self, produced: np.ndarray) -> float:
        """The reward for the tokens ``produced`` (those emitted before ``<eos>``).

        The default compares with :attr:`answer` position by position::

            reward = #{i < len(answer) : produced[i] == answer[i]} / len(answer)

        so an early ``<eos>`` costs the positions it leaves out, and only the exact answer scores
        1.0. Override it to verify answers that have no unique reference; the episode counts as
        exact when the score is 1.0.
        """
        n = min(len(produced), len(self.answer))
        return float(np.count_nonzero(produced[:n] == self.answer[:n])) / len(self.answer)

    def action_mask(self) -> np.ndarray:
        """``int8 [V]``: 1 for the tokens the agent may emit now (all but ``<pad>``, ``<sep>``)."""
        return self._allowed.copy()

    # -- helpers ------------------------------------------------------------------------------
    def tokens_of(self, symbol_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Token ids (``int64``) of symbols given by their index in ``symbols``."""
        return np.asarray(symbol_indices, dtype=np.int64) + FIRST_SYMBOL

    def decode(self, tokens: Sequence[int] | np.ndarray) -> str:
        """Tokens as text: symbols joined with spaces, ``<pad>`` left out."""
        return " ".join(self.vocabulary[int(t)] for t in tokens if int(t) != PAD)

    # -- the Gymnasium API --------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        prompt, answer = self.make_prompt(self.np_random)
        self.prompt = np.asarray(prompt, dtype=np.int64)
        self.answer = np.asarray(answer, dtype=np.int64)
        self._check_instance()
        self.generated = []
        self._tokens = np.full(self.max_length, PAD, dtype=np.int64)
        self._length = len(self.prompt) + 1
        self._tokens[: self._length - 1] = self.prompt
        self._tokens[self._length - 1] = SEP
        self._done = False
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._done:
            raise gym.error.ResetNeeded("the answer is complete: call reset() before step()")
        # the fast path for plain integers; anything else as the space sees it
        if isinstance(action, int | np.integer) and not isinstance(action, bool):
            valid = 0 <= action < self.vocab_size
        else:
            valid = self.action_space.contains(action)
        if not valid:
            raise ValueError(f"action must be a token id in [0, {self.vocab_size}), got {action!r}")
        token = int(action)
        self.generated.append(token)
        self._tokens[self._length] = token
        self._length += 1
        if token != EOS and len(self.generated) < len(self.answer):
            return self._observation(), 0.0, False, False, {}
        self._done = True
        produced = np.asarray(
            self.generated[:-1] if token == EOS else self.generated, dtype=np.int64
        )
        reward = self.score(produced)
        return self._observation(), reward, True, False, {"exact": reward == 1.0}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return self.decode(self._tokens[: self._length])

    def _observation(self) -> dict[str, Any]:
        # Fresh arrays every call: the caller may keep (and modify) what it is given.
        return {
            "tokens": self._tokens.copy(),
            "length": self._length,
            "action_mask": self.action_mask(),
        }

    def _check_instance(self) -> None:
        for name, tokens, bound in (
            ("prompt", self.prompt, self.max_prompt_length),
            ("answer", self.answer, self.max_answer_length),
        ):
            if tokens.ndim != 1 or not 1 <= len(tokens) <= bound:
                raise ValueError(
                    f"{type(self).__name__}.make_prompt returned a {name} of shape "
                    f"{tokens.shape}; it must be 1-d with 1 to {bound} tokens"
                )
            if tokens.min() < 0 or tokens.max() >= self.vocab_size:
                raise ValueError(
                    f"{type(self).__name__}.make_prompt returned {name} tokens outside "
                    f"[0, {self.vocab_size})"
                )


class _SymbolSequenceTask(TokenTask):
    """A prompt of ``length`` random symbols (``min_length`` to ``length`` when given)."""

    def __init__(
        self,
        length: int = 5,
        num_symbols: int = 10,
        min_length: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.length = int_at_least("length", length)
        self.min_length = (
            self.length if min_length is None else int_at_least("min_length", min_length)
        )
        if self.min_length > self.length:
            raise ValueError(f"min_length must be <= length, got {min_length} > {length}")
        self.num_symbols = int_at_least("num_symbols", num_symbols)
        symbols = [str(i) for i in range(self.num_symbols)]
        super().__init__(symbols, self.length, self.length, render_mode)

    def draw_symbols(self, rng: np.random.Generator) -> np.ndarray:
        """A random prompt's symbol indices."""
        size = int(rng.integers(self.min_length, self.length + 1))
        return rng.integers(0, self.num_symbols, size)


class CopyEnv(_SymbolSequenceTask):
    """Repeat the prompt: ``3 1 4 <sep>`` -> ``3 1 4``.

    Args:
        length: symbols in the prompt (the longest prompt when ``min_length`` is given).
        num_symbols: size of the symbol alphabet, written ``0``, ``1``, ...
        min_length: if given, each prompt's length is uniform in ``[min_length, length]``.
        render_mode: ``None`` or ``"ansi"``.
    """

    def make_prompt(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        symbols = self.draw_symbols(rng)
        return self.tokens_of(symbols), self.tokens_of(symbols)


class ReverseEnv(_SymbolSequenceTask):
    """The prompt backwards: ``3 1 4 <sep>`` -> ``4 1 3``. Arguments as :class:`CopyEnv`."""

    def make_prompt(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        symbols = self.draw_symbols(rng)
        return self.tokens_of(symbols), self.tokens_of(symbols[::-1])


class SortEnv(_SymbolSequenceTask):
    """The prompt's symbols in ascending order: ``3 1 4 <sep>`` -> ``1 3 4``.

    Arguments as :class:`CopyEnv`.
    """

    def make_prompt(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        symbols = self.draw_symbols(rng)
        return self.tokens_of(symbols), self.tokens_of(np.sort(symbols))


PLUS = 10  # the index of "+" among AdditionEnv's symbols, after the digits


class AdditionEnv(TokenTask):
    """Add two ``digits``-digit numbers: ``0 4 7 + 1 8 5 <sep>`` -> ``0 2 3 2``.

    Operands are uniform in ``[0, 10^digits)``, written with leading zeros, most significant
    digit first. The answer always has ``digits + 1`` digits (a leading 0 when there is no final
    carry), most significant first, or least significant first with
    ``least_significant_first=True``: then each answer digit depends only on the operand digits
    already seen and the carry, which makes the task much easier to learn left to right.

    With ``min_digits``, each prompt's operands have ``k`` significant digits, ``k`` uniform in
    ``[min_digits, digits]``, the others 0: a curriculum over operand length that keeps the
    layout, so what is learned on short sums sits at the same positions in long ones.

    Args:
        digits: digits per operand, ``>= 1``.
        least_significant_first: write the answer's digits in reverse.
        min_digits: the fewest significant digits of a prompt's operands (``None``: all
            ``digits``).
        render_mode: ``None`` or ``"ansi"``.
    """

    def __init__(
        self,
        digits: int = 3,
        least_significant_first: bool = False,
        min_digits: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.digits = int_at_least("digits", digits)
        self.min_digits = None if min_digits is None else int_at_least("min_digits", min_digits)
        if self.min_digits is not None and self.min_digits > self.digits:
            raise ValueError(f"min_digits must be <= digits, got {min_digits} > {digits}")
        self.least_significant_first = bool(least_significant_first)
        symbols = [*(str(i) for i in range(10)), "+"]
        super().__init__(symbols, 2 * self.digits + 1, self.digits + 1, render_mode)

    def make_prompt(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        a, b = rng.integers(0, 10, (2, self.digits))
        if self.min_digits is not None:
            leading_zeros = self.digits - int(rng.integers(self.min_digits, self.digits + 1))
            a[:leading_zeros] = b[:leading_zeros] = 0
        total = _to_number(a) + _to_number(b)
        answer = np.array([int(c) for c in str(total).zfill(self.digits + 1)])
        if self.least_significant_first:
            answer = answer[::-1]
        return self.tokens_of([*a, PLUS, *b]), self.tokens_of(answer)

    def action_mask(self) -> np.ndarray:
        """As :meth:`TokenTask.action_mask`, and ``+`` is never part of a sum either."""
        mask = super().action_mask()
        mask[FIRST_SYMBOL + PLUS] = 0
        return mask


class TokenTaskVectorEnv(VectorEnv):
    """``num_envs`` copies of a token task, stepped in one loop, observations batched in place.

    Each environment is a task instance (:class:`TokenTask`'s ``reset`` and ``step``, so a
    subclass's prompts, scores and masks behave exactly as in a single environment); what this
    class saves is Gymnasium's per-environment wrappers, its generic batching of ``Dict``
    observations and its info merging. Autoreset is Gymnasium's next-step mode: the step after
    an episode ends ignores that environment's action and returns its next prompt with reward 0.

    ``reset(seed=...)`` takes one seed per environment (a list), or one int ``s`` that seeds
    environment ``i`` with ``s + i``, as ``SyncVectorEnv`` does; equal seeds give equal prompts,
    which is how groups of completions share a prompt.

    Args:
        task: the task class (or any callable returning a :class:`TokenTask`).
        num_envs: number of environments.
        max_episode_steps: ignored (an answer ends by itself); ``gymnasium.make_vec`` passes it.
        **kwargs: the task's keyword arguments (``length=6``, ``digits=3``, ...).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "episode_info_keys": ("exact",)}
    accepts_seed_list = True
    """``reset`` takes a list of seeds, one per environment."""

    def __init__(
        self,
        task: Any,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.num_envs = int_at_least("num_envs", num_envs)
        self.tasks: list[TokenTask] = [task(**kwargs) for _ in range(self.num_envs)]
        first = self.tasks[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.vocabulary = first.vocabulary
        n, length, vocab = self.num_envs, first.max_length, first.vocab_size
        self._tokens = np.zeros((n, length), dtype=np.int64)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._masks = np.zeros((n, vocab), dtype=np.int8)
        self._needs_reset = np.zeros(n, dtype=bool)

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is None or isinstance(seed, int | np.integer):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seeds)}")
        super().reset(seed=seeds[0])
        for i, task in enumerate(self.tasks):
            self._store(i, task.reset(seed=seeds[i])[0])
        self._needs_reset[:] = False
        return self._observation(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions).reshape(-1)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        exact = np.zeros(self.num_envs, dtype=bool)
        for i, task in enumerate(self.tasks):
            if self._needs_reset[i]:  # next-step autoreset: this action is ignored
                self._store(i, task.reset()[0])
                self._needs_reset[i] = False
                continue
            obs, rewards[i], terminated[i], _, info = task.step(int(actions[i]))
            self._store(i, obs)
            if terminated[i]:
                exact[i] = info["exact"]
                self._needs_reset[i] = True
        infos: dict[str, Any] = {}
        if terminated.any():
            infos = {"exact": exact, "_exact": terminated.copy()}
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self._observation(), rewards, terminated, truncated, infos

    def _store(self, i: int, obs: dict[str, Any]) -> None:
        self._tokens[i] = obs["tokens"]
        self._lengths[i] = obs["length"]
        self._masks[i] = obs["action_mask"]

    def _observation(self) -> dict[str, np.ndarray]:
        # copies: the caller may keep them while the next step writes here
        return {
            "tokens": self._tokens.copy(),
            "length": self._lengths.copy(),
            "action_mask": self._masks.copy(),
        }


def copy_vector(**kwargs: Any) -> TokenTaskVectorEnv:
    """``pgrad/Copy-v0``'s numpy-vectorised form."""
    return TokenTaskVectorEnv(CopyEnv, **kwargs)


def reverse_vector(**kwargs: Any) -> TokenTaskVectorEnv:
    """``pgrad/Reverse-v0``'s numpy-vectorised form."""
    return TokenTaskVectorEnv(ReverseEnv, **kwargs)


def sort_vector(**kwargs: Any) -> TokenTaskVectorEnv:
    """``pgrad/Sort-v0``'s numpy-vectorised form."""
    return TokenTaskVectorEnv(SortEnv, **kwargs)


def addition_vector(**kwargs: Any) -> TokenTaskVectorEnv:
    """``pgrad/Addition-v0``'s numpy-vectorised form."""
    return TokenTaskVectorEnv(AdditionEnv, **kwargs)


def _to_number(digits: np.ndarray) -> int:
    return int("".join(str(int(d)) for d in digits))


__all__ = [
    "EOS",
    "PAD",
    "SEP",
    "AdditionEnv",
    "CopyEnv",
    "ReverseEnv",
    "SortEnv",
    "TokenTask",
]
