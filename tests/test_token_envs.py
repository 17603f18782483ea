"""Token environments: the Gymnasium API, the tasks' answers, scoring, masks and seeding."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pgrad.envs.tokens import EOS, PAD, SEP, AdditionEnv, ReverseEnv, TokenTask

TOKEN_ENVS = ["pgrad/Copy-v0", "pgrad/Reverse-v0", "pgrad/Sort-v0", "pgrad/Addition-v0"]
FIRST = 3  # the first symbol's token id


def symbols(tokens: np.ndarray) -> list[int]:
    return [int(t) - FIRST for t in tokens]


def prompt_of(obs: dict) -> list[int]:
    tokens = obs["tokens"][: obs["length"]]
    return symbols(tokens[: list(tokens).index(SEP)])


def expected_answer(env_id: str, prompt: list[int], lsb_first: bool = False) -> list[int]:
    """The answer worked out here from the prompt alone, independently of the environment."""
    if env_id == "pgrad/Copy-v0":
        return prompt
    if env_id == "pgrad/Reverse-v0":
        return prompt[::-1]
    if env_id == "pgrad/Sort-v0":
        return sorted(prompt)
    plus = prompt.index(10)
    a, b = prompt[:plus], prompt[plus + 1 :]
    total = int("".join(map(str, a))) + int("".join(map(str, b)))
    digits = [int(c) for c in f"{total:0{len(a) + 1}d}"]
    return digits[::-1] if lsb_first else digits


@pytest.mark.parametrize(
    "env_id,kwargs",
    [(env_id, {}) for env_id in TOKEN_ENVS]
    + [
        ("pgrad/Reverse-v0", {"length": 2, "min_length": 1, "num_symbols": 3}),
        ("pgrad/Addition-v0", {"digits": 1, "least_significant_first": True}),
    ],
)
def test_check_env(env_id, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # render_fps is meaningless for text
        check_env(gym.make(env_id, render_mode="ansi", **kwargs).unwrapped)


@pytest.mark.parametrize(
    "env_id,lsb_first", [(env_id, False) for env_id in TOKEN_ENVS] + [("pgrad/Addition-v0", True)]
)
def test_emitting_the_answer_scores_one(env_id, lsb_first):
    kwargs = {"least_significant_first": True} if lsb_first else {}
    env = gym.make(env_id, **kwargs)
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        prompt = prompt_of(obs)
        answer = expected_answer(env_id, prompt, lsb_first)
        start = obs["length"]
        for i, symbol in enumerate(answer):
            assert obs["length"] == start + i
            obs, reward, terminated, truncated, info = env.step(symbol + FIRST)
            assert not truncated
            assert terminated == (i == len(answer) - 1)
            assert reward == (1.0 if terminated else 0.0)
        assert info == {"exact": True}
        # The observation holds prompt, separator and answer, then padding.
        tokens = obs["tokens"]
        assert symbols(tokens[: len(prompt)]) == prompt and tokens[len(prompt)] == SEP
        assert symbols(tokens[start : obs["length"]]) == answer
        assert (tokens[obs["length"] :] == PAD).all()


def test_addition_by_hand():
    env = AdditionEnv(digits=3)
    env.reset(seed=0)
    # Force an instance with a carry out of the top digit: 457 + 901 = 1358.
    env.prompt = env.tokens_of([4, 5, 7, 10, 9, 0, 1])
    env.answer = env.tokens_of([1, 3, 5, 8])
    for symbol in [1, 3, 5, 8]:
        _, reward, _, _, info = env.step(symbol + FIRST)
    assert reward == 1.0 and info["exact"]
    # And the generator's own instances: the sum of the prompt's numbers, as parsed here.
    for seed in range(50):
        env = AdditionEnv(digits=2, least_significant_first=seed % 2 == 1)
        obs, _ = env.reset(seed=seed)
        assert symbols(env.answer) == expected_answer(
            "pgrad/Addition-v0", prompt_of(obs), seed % 2 == 1
        )
        assert len(env.answer) == 3


def test_partial_answer_scores_the_fraction_right():
    env = ReverseEnv(length=4)
    env.reset(seed=3)
    wrong = (env.answer[1] - FIRST + 1) % 10 + FIRST
    for token in [env.answer[0], wrong, env.answer[2], env.answer[3]]:
        _, reward, terminated, _, info = env.step(token)
    assert terminated and reward == pytest.approx(3 / 4) and info == {"exact": False}


def test_early_eos_ends_the_episode_and_costs_the_missing_positions():
    env = ReverseEnv(length=5)
    obs, _ = env.reset(seed=0)
    env.step(env.answer[0])
    env.step(env.answer[1])
    obs, reward, terminated, truncated, info = env.step(EOS)
    assert terminated and not truncated
    assert reward == pytest.approx(2 / 5) and not info["exact"]
    assert obs["tokens"][obs["length"] - 1] == EOS
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.answer[2])


def test_eos_at_once_scores_zero():
    env = ReverseEnv(length=3)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(EOS)
    assert terminated and reward == 0.0 and not info["exact"]


def test_action_mask_forbids_pad_and_separator():
    env = gym.make("pgrad/Copy-v0", num_symbols=4)
    obs, _ = env.reset(seed=0)
    mask = obs["action_mask"]
    assert mask.dtype == np.int8 and mask.shape == (7,)
    assert mask.tolist() == [0, 0, 1, 1, 1, 1, 1]
    obs, *_ = env.step(FIRST)
    assert obs["action_mask"].tolist() == mask.tolist()
    plus_token = FIRST + 10
    addition_mask = AdditionEnv().reset(seed=0)[0]["action_mask"]
    assert addition_mask[plus_token] == 0 and addition_mask[[PAD, SEP]].sum() == 0
    assert addition_mask.sum() == 11  # ten digits and <eos>


def test_masked_token_is_accepted_and_wrong():
    # check_env and action_space.sample() ignore masks, so the environment must not fail on them.
    env = ReverseEnv(length=1)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(PAD)
    assert terminated and reward == 0.0 and not info["exact"]


def test_seeded_reset_repeats_the_prompt_and_seeds_differ():
    env = gym.make("pgrad/Sort-v0", length=6)
    first = env.reset(seed=7)[0]["tokens"]
    env.step(FIRST)
    assert np.array_equal(env.reset(seed=7)[0]["tokens"], first)
    others = {tuple(env.reset(seed=seed)[0]["tokens"]) for seed in range(8, 20)}
    assert len(others) > 10


def test_min_length_draws_every_length_in_range():
    env = gym.make("pgrad/Copy-v0", length=4, min_length=2)
    lengths = set()
    for seed in range(60):
        obs, _ = env.reset(seed=seed)
        lengths.add(len(prompt_of(obs)))
        assert len(env.unwrapped.answer) == len(prompt_of(obs))
    assert lengths == {2, 3, 4}
    assert env.observation_space["tokens"].shape == (4 + 1 + 4,)


def test_vector_env_groups_share_prompts():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("pgrad/Reverse-v0", length=3)] * 4)
    obs, _ = envs.reset(seed=[5, 5, 6, 6])
    assert obs["tokens"].shape == (4, 7) and obs["action_mask"].shape == (4, 13)
    assert np.array_equal(obs["tokens"][0], obs["tokens"][1])
    assert not np.array_equal(obs["tokens"][1], obs["tokens"][2])
    obs, rewards, terminated, _, _ = envs.step(np.array([3, 4, 5, EOS]))
    assert obs["length"].tolist() == [5, 5, 5, 5] and terminated.tolist() == [0, 0, 0, 1]


def test_a_new_task_in_a_few_lines():
    class Max(TokenTask):
        def __init__(self, length: int = 4) -> None:
            super().__init__(symbols="0123456789", max_prompt_length=length, max_answer_length=1)
            self.length = length

        def make_prompt(self, rng):
            digits = rng.integers(0, 10, self.length)
            return self.tokens_of(digits), self.tokens_of([digits.max()])

    env = Max()
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=1)
    best = max(prompt_of(obs))
    _, reward, terminated, _, info = env.step(best + FIRST)
    assert terminated and reward == 1.0 and info["exact"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"length": 0}, "length must be an integer >= 1"),
        ({"length": 2.5}, "length must be an integer >= 1"),
        ({"length": 2, "min_length": 3}, "min_length must be <= length"),
        ({"num_symbols": 0}, "num_symbols must be an integer >= 1"),
        ({"render_mode": "human"}, "render_mode must be None or 'ansi'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReverseEnv(**kwargs)


def test_out_of_range_action_and_bad_instances_raise():
    env = ReverseEnv(length=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"token id in \[0, 13\)"):
        env.step(13)

    class TooLong(TokenTask):
        def __init__(self) -> None:
            super().__init__("ab", max_prompt_length=2, max_answer_length=1)

        def make_prompt(self, rng):
            return self.tokens_of([0, 1, 0]), self.tokens_of([0])

    with pytest.raises(ValueError, match="prompt of shape"):
        TooLong().reset(seed=0)


def test_a_verifier_sees_the_tokens_before_eos():
    class EvenCount(ReverseEnv):
        """Any answer with an even number of tokens is right: a verifier, not a reference."""

        def score(self, produced):
            self.seen = produced.tolist()
            return float(len(produced) % 2 == 0)

    env = EvenCount(length=4)
    env.reset(seed=0)
    env.step(FIRST)
    env.step(FIRST + 1)
    _, reward, terminated, _, info = env.step(EOS)
    assert env.seen == [FIRST, FIRST + 1]
    assert terminated and reward == 1.0 and info["exact"]


@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        ("pgrad/Copy-v0", {"length": 4, "min_length": 1}),
        ("pgrad/Reverse-v0", {"length": 3}),
        ("pgrad/Sort-v0", {"length": 3}),
        ("pgrad/Addition-v0", {"digits": 2}),
    ],
)
def test_vectorised_form_equals_a_sync_vector_env(env_id, kwargs):
    """Same seeds (groups of equal ones), same random tokens: the same observations, rewards,
    ends and infos, through several autoresets."""
    from gymnasium.vector import AutoresetMode

    n = 8
    vec = gym.make_vec(env_id, n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(
        env_id,
        n,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
        **kwargs,
    )
    seeds = [i // 2 for i in range(n)]
    obs_vec, _ = vec.reset(seed=seeds)
    obs_sync, _ = sync.reset(seed=seeds)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(25):
        for key in obs_sync:
            np.testing.assert_array_equal(obs_vec[key], obs_sync[key])
        actions = rng.integers(2, vec.single_action_space.n, n)  # <eos> and symbols
        obs_vec, r_vec, term_vec, trunc_vec, info_vec = vec.step(actions)
        obs_sync, r_sync, term_sync, trunc_sync, info_sync = sync.step(actions)
        np.testing.assert_array_equal(r_vec, r_sync)
        np.testing.assert_array_equal(term_vec, term_sync)
        np.testing.assert_array_equal(trunc_vec, trunc_sync)
        assert info_vec.keys() == info_sync.keys()
        for key in info_sync:
            np.testing.assert_array_equal(info_vec[key], info_sync[key])
        ends += int(term_sync.sum())
    assert ends >= n  # every environment went through an autoreset
    one_seed, _ = vec.reset(seed=5)
    np.testing.assert_array_equal(one_seed["tokens"], sync.reset(seed=5)[0]["tokens"])


def test_addition_curriculum_keeps_the_layout_and_the_sums_right():
    env = AdditionEnv(digits=3, min_digits=1)
    significant = set()
    for seed in range(200):
        env.reset(seed=seed)
        digits = env.prompt - 3  # symbol indices; 10 is "+"
        a, b = digits[:3], digits[4:]
        assert digits[3] == 10 and len(env.answer) == 4
        value = lambda d: int("".join(map(str, d)))  # noqa: E731
        assert value(env.answer - 3) == value(a) + value(b)
        significant.add(
            3 - min(np.argmax(a > 0) if a.any() else 3, np.argmax(b > 0) if b.any() else 3)
        )
    assert {1, 3} <= significant  # short and full-length operands both occur
    with pytest.raises(ValueError, match="min_digits"):
        AdditionEnv(digits=2, min_digits=3)
