"""Bad input: every case gives one line on stderr, exit code 2, no traceback, nothing left behind.

The commands run in processes forked from one that has imported pgrad (``helpers.ForkedCli``),
each in a fresh folder, with at most ``ADDRESS_SPACE`` bytes of address space; a few run through
``python -m pgrad.cli`` too, to check that the real entry point behaves the same.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pgrad.config import SEED_MAX, Config, field_types, parse_int

from helpers import ForkedCli, assert_clean_error, pgrad

ADDRESS_SPACE = 4 * 2**30
"""``RLIMIT_AS`` of every command: an allocation past it fails instead of swapping the machine."""
MAX_RSS = 2 * 2**30
"""No command may reach this resident size (the pages shared with the fork server included)."""
LONG = "x" * 300  # longer than a file name may be (255 bytes)

BAD_INVOCATIONS = [
    (["train", "NoSuchEnv-v0"], "unknown environment"),
    (["train", "CartPol-v1"], "did you mean CartPole-v1"),
    (["train", "--agent", "nosuchagent"], "unknown agent"),
    (["train", "--agent", "missing_file.py:Agent"], "does not exist"),
    (["train", "--agent", "json:JSONDecoder"], "not a pgrad.Agent subclass"),
    (["train", "--agent", "no_such_module_xyz:Agent"], "cannot import agent module"),
    (["train", "--agent", "broken.py:Agent"], "cannot import broken.py: SyntaxError"),
    (["train", "Pendulum-v1", "--agent", "cartpole"], "made for Discrete actions"),
    (["train", "CartPole-v1", "--agent", "pendulum"], "made for Box actions"),
    (["train", "CartPole-v1", "--agent", "pendulum", "--logdir", "new/logs"], "made for Box"),
    (["train", "--set", "learning_rate"], "key=value"),
    (["train", "--set", "=3"], "key=value"),
    (["train", "--set", "no_such_key=1"], "unknown config key"),
    (["train", "--set", "learning_rat=0.1"], "did you mean learning_rate"),
    (["train", "--set", "gamma=1.5"], "gamma must be in [0, 1]"),
    (["train", "--set", "gamma=-0.1"], "gamma must be in [0, 1]"),
    (["train", "--set", "gamma=abc"], "gamma expects float"),
    (["train", "--set", "gamma=nan"], "gamma expects float"),
    (["train", "--set", "gae_lambda=2"], "gae_lambda must be in [0, 1]"),
    (["train", "--set", "learning_rate=-0.1"], "learning_rate must be > 0"),
    (["train", "--set", "learning_rate=0"], "learning_rate must be > 0"),
    (["train", "--set", "ema_decay=1"], "ema_decay must be in [0, 1)"),
    (["train", "--set", "max_grad_norm=-1"], "max_grad_norm must be >= 0"),
    (["train", "--set", "baseline=magic"], "baseline must be one of"),
    (["train", "--set", "hidden=a,b"], "hidden expects"),
    (["train", "--set", "normalize_advantages=maybe"], "normalize_advantages expects bool"),
    (["train", "--set", "num_steps=2.5"], "num_steps expects int"),
    (["train", "--set", "baseline=loo", "--set", "group_size=3"], "divisible by group_size"),
    (["train", "--total-steps", "-5"], "total_steps must be >= 1"),
    (["train", "--total-steps", "0"], "total_steps must be >= 1"),
    (["train", "--total-steps", "ten"], "expected an integer"),
    (["train", "--num-envs", "0"], "num_envs must be >= 1"),
    (["train", "--num-envs", "1.5"], "expected an integer"),
    (["train", "--seed", "-3"], "seed must be an integer in [0, 4294967295]"),
    (["train", "--seed", "99999999999999999999999"], "seed must be an integer in [0, 4294967295]"),
    (["train", "--seed", "4294967296"], "got 4294967296"),
    (["train", "--set", "seed=99999999999999999999999"], "seed must be an integer in [0, 42"),
    (["train", "--set", "torch_threads=100000"], "torch_threads must be <= 1024"),
    (["train", "CartPole-v1", "--run-name", "../../escaped"], "must be one directory name"),
    (["train", "CartPole-v1", "--run-name", "{tmp}/abs"], "must be one directory name"),
    (["train", "CartPole-v1", "--run-name", "a/b"], "must be one directory name"),
    (["train", "CartPole-v1", "--run-name", ".."], "must be one directory name"),
    (["train", "CartPole-v1", "--run-name", "."], "must be one directory name"),
    (["train", "CartPole-v1", "--run-name", ""], "must be one directory name"),
    (["train", "--run-name", LONG], "File name too long"),
    (["train", "--run-name", "\udcff\udcfe"], "not valid UTF-8"),
    (["train", "--logdir", LONG], "cannot create log directory"),
    (["train", "--logdir", ""], "expected a path"),
    (["train", "CartPole-v1", "--num-envs", "50000000"], "more than the"),
    (["train", "CartPole-v1", "--num-envs", "3000000"], "lower num_envs"),
    (["train", "CartPole-v1", "--num-envs", "99999999999999999999999"], "this machine can give"),
    (["train", "--set", "vectorization=sync", "--num-envs", "5000000"], "environments (sync)"),
    (["train", "--set", "hidden=100000,100000"], "lower hidden"),
    (["train", "--set", "eval_episodes=100000000"], "lower eval_episodes"),
    (["train", "--device", "tpu"], "device must be auto, cpu, cuda, cuda:N or mps"),
    (["train", "--bogus-flag"], "unrecognized arguments"),
    (["train", "--logdir", "afile/sub"], "cannot create log directory"),
    (["train", "--run-name", "existing"], "already exists"),
    (["train", "--resume", "no/such/run"], "does not exist"),
    (["train", "--resume", "emptyrun"], "no loadable checkpoint"),
    (["eval", "no/such/run"], "does not exist"),
    (["eval", "emptyrun"], "no loadable checkpoint"),
    (["eval", "garbage.pt"], "cannot load checkpoint"),
    (["eval", "notpgrad.pt"], "not a pgrad checkpoint"),
    (["eval", "hostile.pt"], "refused unsafe pickle"),
    (["eval", "run", "--seed", "-1"], "seed must be an integer in [0, 4294967295]"),
    (["eval", "run", "--seed", "18446744073709551616"], "seed must be an integer in [0, 42"),
    (["eval", "run", "--episodes", "100000000"], "lower --episodes"),
    (["eval", "run", "--video", "afile"], "cannot create video directory afile"),
    (["eval", "run", "--video", "\udcff"], "not valid UTF-8"),
    (["plot", "no/such/run"], "does not exist"),
    (["plot", "emptyrun"], "no TensorBoard event files"),
    (["plot", "run", "-o", "newdir/curves.xyz"], "cannot write .xyz images"),
    (["plot", "run", "-o", ""], "expected a path"),
    (["plot", "run", "-o", "newdir/"], "names a directory"),
    (["plot", "run", "-o", "afile/curves.png"], "cannot create output directory"),
    (["plot", "run", "-o", f"{LONG}.png"], "File name too long"),
    (["plot", "run", "-o", f"new/{LONG}"], "File name too long"),
    (["nosuchcommand"], "invalid choice"),
    (["list", "two\nlines\x1e"], "unrecognized arguments: two\\nlines\\x1e"),
    (["eval", "no\nrun"], "no\\nrun does not exist"),
]


@pytest.fixture(scope="module")
def cli():
    runner = ForkedCli()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def trained_run(cli, tmp_path_factory) -> Path:
    """A finished CartPole run of 64 steps, copied into each test's folder as ``run``."""
    folder = tmp_path_factory.mktemp("trained")
    args = ["train", "CartPole-v1", "--total-steps", "64", "--run-name", "run", "--logdir", "."]
    result = cli.run(*args, "--set", "eval_episodes=0", "--quiet", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "run"


def make_fixtures(folder: Path, run: Path) -> None:
    shutil.copytree(run, folder / "run")
    (folder / "broken.py").write_text("def oops(:\n")
    (folder / "afile").write_text("a file, not a folder")
    (folder / "runs" / "existing").mkdir(parents=True)
    (folder / "runs" / "existing" / "config.json").write_text("{}")
    (folder / "emptyrun").mkdir()
    (folder / "garbage.pt").write_bytes(b"\x80\x04garbage" * 10)
    torch.save({"weights": torch.zeros(3)}, folder / "notpgrad.pt")
    torch.save({"format": "pgrad-checkpoint-1", "x": Hostile()}, folder / "hostile.pt")


class Hostile:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('code ran')",))


@pytest.mark.parametrize(
    "args,fragment",
    BAD_INVOCATIONS,
    ids=lambda v: " ".join(v)[:50] if isinstance(v, list) else None,
)
def test_bad_invocation_is_one_clean_line(args, fragment, tmp_path, cli, trained_run):
    work = tmp_path / "a" / "b"  # so that an escape through '..' still lands where we look
    work.mkdir(parents=True)
    make_fixtures(work, trained_run)
    before = snapshot(tmp_path)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]  # where a snapshot sees it
    result = cli.run(*args, cwd=work, address_space=ADDRESS_SPACE)
    assert_clean_error(result, fragment)
    assert snapshot(tmp_path) == before, "a failed command left files behind"
    assert not (tmp_path / "PWNED").exists()
    assert result.max_rss < MAX_RSS


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["train", "CartPole-v1", "--run-name", "../../escaped"], "must be one directory name"),
        (["eval", "run", "--seed", "-1"], "seed must be an integer in"),
    ],
    ids=lambda v: " ".join(v)[:50] if isinstance(v, list) else None,
)
def test_the_entry_point_reports_the_same(args, fragment, tmp_path, trained_run):
    """``python -m pgrad.cli`` itself, in a fresh interpreter, for a few of the cases."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    make_fixtures(work, trained_run)
    before = snapshot(tmp_path)
    assert_clean_error(pgrad(*args, cwd=work, timeout=120, address_space=ADDRESS_SPACE), fragment)
    assert snapshot(tmp_path) == before


def snapshot(folder: Path) -> list[Path]:
    """Every path under ``folder`` (bytecode caches aside)."""
    return sorted(p for p in folder.rglob("*") if "__pycache__" not in p.parts)


def test_corpus_is_large():
    assert len(BAD_INVOCATIONS) >= 30


def test_the_seed_range_is_what_numpy_torch_and_gymnasium_all_accept():
    import gymnasium as gym
    import numpy as np

    for seed in (0, SEED_MAX):
        np.random.RandomState(seed)
        torch.Generator().manual_seed(seed)
        gym.make("CartPole-v1").reset(seed=seed)
        assert Config(seed=seed).seed == seed
    with pytest.raises(ValueError):
        np.random.RandomState(SEED_MAX + 1)  # numpy's bound is the tightest
    with pytest.raises(gym.error.Error):
        gym.make("CartPole-v1").reset(seed=-1)
    for seed in (-1, SEED_MAX + 1, 10**23):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 4294967295\]"):
            Config(seed=seed)


def test_evaluate_from_python_checks_its_seed():
    """``Agent.evaluate(seed=-1)`` names the range instead of ending in Gymnasium's reset."""
    from pgrad import Reinforce

    agent = Reinforce(env_id="pgrad/Bandit-v0", num_envs=2, quiet=True, checkpoint_every=0)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 4294967295\]"):
        agent.evaluate(2, seed=-1)
    assert agent.evaluate(2, seed=SEED_MAX)["episodes"] == 2
    agent.envs.close()


def test_integers_keep_their_digits():
    assert parse_int("99999999999999999999999") == 99999999999999999999999
    assert parse_int("1_000") == parse_int("1e3") == 1000
    for text in ("2.5", "1e400", "nan", "ten", ""):
        with pytest.raises(ValueError):
            parse_int(text)


field_names = st.sampled_from(sorted(field_types()))
raw_values = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**6), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["true", "no", "1,2", "", "()", "1e9", "-1", "0"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(field_names, raw_values), max_size=4))
def test_config_parsing_gives_a_valid_config_or_one_clear_error(assignments):
    flags = [f"{key}={value}" for key, value in assignments]
    try:
        config = Config().with_overrides(flags)
    except ValueError as err:
        message = str(err)
        assert message and "\n" not in message
        assert any(key in message for key, _ in assignments) or "key=value" in message
        return
    config.validate()
    assert Config.from_dict(config.to_dict()) == config


# -- generated command lines ---------------------------------------------------------------------
# What a user mistypes or a script passes: any text (argv cannot carry NUL), path tricks, names
# longer than a file name may be, non-ASCII, bytes that are not UTF-8 (argv gives them to Python
# as lone surrogates), numbers of the wrong sign, size and type.
junk = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    st.sampled_from(
        ["", " ", ".", "..", "/", "-", "a/../..", "../x", "/abs", "é", "名前", LONG, "\udcff"]
    ),
)
not_positive = st.one_of(
    st.integers(-(10**30), 0).map(str),
    st.sampled_from(["1.5", "1e400", "nan", "-inf", "0x10", "1_0.5"]),
    junk,
)
bad_numbers = st.one_of(  # for sizes: too many environments or episodes is refused too
    not_positive, st.integers(10**7, 10**30).map(str)
)
good_name = st.one_of(
    st.sampled_from(["runs", "out", "a b", "é", "名前", "-x", "afile"]),
    st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=8),
).filter(lambda name: name not in (".", ".."))
bad_name = st.sampled_from(["", ".", "..", "../../escaped", "{top}/abs", "a/b", LONG, "\udcff"])
# at most three '..', and commands run three levels below the checked folder: nothing escapes it
good_path = st.lists(st.one_of(good_name, st.just("..")), min_size=1, max_size=3).map("/".join)
bad_path = st.one_of(  # each of these fails: a file in the way, a name too long, not UTF-8
    st.sampled_from(["", "afile", "\udcff", LONG]),
    st.tuples(good_path, st.sampled_from([LONG, "\udcff"])).map("/".join),
    good_path.map(lambda path: f"afile/{path}"),
)
good_seed = st.integers(0, 2**32 - 1).map(str)
bad_seed = st.one_of(st.integers(-(2**70), -1).map(str), st.integers(2**32, 2**70).map(str), junk)
good_set = st.sampled_from(
    [
        "gamma=0.5",
        "hidden=8",
        "hidden=",
        "num_steps=8",
        "max_episode_steps=20",
        "normalize_obs=true",
        "vectorization=sync",
        "vectorization=async",
        "baseline=none",
        "rollout=steps",
        "optimizer=rmsprop",
        "grad_diagnostics=true",
    ]
)
bad_set = st.tuples(st.sampled_from(sorted(field_types())), st.one_of(bad_numbers, junk)).map(
    "=".join
)


@dataclass(frozen=True)
class Flag:
    """An option, with values that should work and values that must be refused.

    ``good=None`` marks an option whose working values are too slow to generate (a video) or
    start something heavy (Ray): only its bad values are drawn.
    """

    name: str
    good: st.SearchStrategy[str] | None
    bad: st.SearchStrategy[str]
    switch: bool = False  # takes no value; its bad form is a value after it


@st.composite
def command_lines(
    draw: st.DrawFn, command: str, positional: Flag | None, flags: list[Flag], fixed: list[str]
) -> list[str]:
    """``command [positional] fixed... --flag value...``: a few flags, at most one of them bad.

    Mostly-good lines reach the code that runs (and writes); the bad flag then tests one check.
    """
    chosen = draw(st.lists(st.sampled_from(flags), max_size=4, unique_by=lambda f: f.name))
    options = [*([positional] if positional else []), *chosen]
    bad = draw(st.sampled_from([None, *range(len(options))]))
    argv = [command]
    for index, option in enumerate(options):
        values = option.bad if index == bad or option.good is None else option.good
        value = draw(values)
        if option is positional:
            argv.append(value)
            argv += fixed
        elif option.switch:
            argv += [option.name] + ([value] if index == bad else [])
        else:
            argv += [option.name, value]
    return argv if positional else [command, *fixed, *argv[1:]]


# Training that is not refused must be short, and nothing may start Ray: the fixed arguments
# come first, and the generated flags after them cannot lengthen a run (the --total-steps
# flag overrides any --set total_steps, and --workers only gets values of 0 or below).
TRAIN_BUDGET = ["--total-steps", "64", "--workers", "0", "--quiet"]
TRAIN_BUDGET += ["--set", "eval_episodes=1", "--set", "checkpoint_every=0"]
AGENTS = st.sampled_from(["cartpole", "a2c", "reinforce"])
BAD_AGENTS = st.one_of(st.sampled_from(["pendulum", "os:path", "missing.py:A", ":"]), junk)

COMMANDS: dict[str, tuple[st.SearchStrategy[list[str]], Callable[[list[str]], list[str]]]] = {
    # name: (command lines, the paths a successful command may write under)
    "train": (
        command_lines(
            "train",
            Flag("ENV_ID", st.sampled_from(["CartPole-v1", "pgrad/Bandit-v0"]), junk),
            [
                Flag("--total-steps", st.integers(1, 200).map(str), not_positive),
                Flag("--num-envs", st.integers(1, 16).map(str), bad_numbers),
                Flag("--seed", good_seed, bad_seed),
                Flag("--device", st.just("cpu"), st.one_of(st.just("cuda"), junk)),
                Flag("--workers", None, st.one_of(st.integers(-(10**6), -1).map(str), junk)),
                Flag("--ray-address", junk, junk),
                Flag("--logdir", good_path, bad_path),
                Flag("--run-name", good_name, bad_name),
                Flag("--agent", AGENTS, BAD_AGENTS),
                Flag("--set", good_set, bad_set),
            ],
            TRAIN_BUDGET,
        ),
        lambda argv: [last_value(argv, "--logdir", "runs")],
    ),
    "eval": (
        command_lines(
            "eval",
            Flag("RUN_DIR", st.sampled_from(["run", "run/checkpoints"]), bad_path),
            [
                Flag("--episodes", st.integers(1, 4).map(str), bad_numbers),
                Flag("--seed", good_seed, bad_seed),
                Flag("--stochastic", st.just(""), junk, switch=True),
                Flag("--json", st.just(""), junk, switch=True),
                Flag("--agent", st.just("cartpole"), BAD_AGENTS),
                Flag("--video", None, bad_path),  # recording takes seconds an episode
            ],
            [],
        ),
        lambda argv: [last_value(argv, "--video", "")],
    ),
    "plot": (
        command_lines(
            "plot",
            Flag("RUN_DIR", st.just("run"), bad_path),
            [
                Flag(
                    "-o",
                    st.tuples(good_path, st.sampled_from(["", ".png", ".svg", ".PDF"])).map(
                        "".join
                    ),
                    st.one_of(bad_path, good_path.map(lambda path: path + ".xyz")),
                ),
                Flag("--tag", st.just("losses/entropy"), junk),
            ],
            [],
        ),
        # matplotlib adds .png to a name without a suffix
        lambda argv: [last_value(argv, "-o", "curves.png"), last_value(argv, "-o", "") + ".png"],
    ),
    "list": (st.lists(junk, max_size=2).map(lambda extra: ["list", *extra]), lambda argv: []),
    "compare": (
        command_lines(
            "compare",
            Flag("RUN_GLOB_A", st.just("run"), bad_path),
            [
                Flag("--tag", st.just("losses/entropy"), junk),
                Flag("--last", st.integers(1, 5).map(str), bad_numbers),
            ],
            ["run*"],  # one set against itself: refused in one line, or both sets apart
        ),
        lambda argv: [],
    ),
    "tune": (
        command_lines(
            "tune",
            Flag("ENV_ID", st.just("pgrad/Bandit-v0"), junk),
            [
                Flag("--seed", good_seed, bad_seed),
                Flag("--logdir", good_path, bad_path),
                Flag("--trials", None, not_positive),
                Flag("--storage", None, junk),
                Flag("--space", None, bad_path),
            ],
            ["--study", "s", "--trials", "1", "--steps-per-trial", "64", "--evals", "1"],
        ),
        lambda argv: [last_value(argv, "--logdir", "runs"), "s_tuned.py"],
    ),
}
"""Each subcommand's generated command lines; a new subcommand is one more entry."""


def last_value(argv: list[str], name: str, default: str) -> str:
    """The value argparse keeps for option ``name`` (its last occurrence)."""
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    return values[-1] if values else default


def is_run_name(name: str) -> bool:
    """What ``--run-name`` must accept: one path component that can name a folder."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return name not in ("", ".", "..") and "/" not in name and size <= 255


def test_every_subcommand_has_generated_command_lines(cli):
    from pgrad.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) <= set(COMMANDS), "add the new subcommand to COMMANDS"


@settings(
    max_examples=int(os.environ.get("PGRAD_GENERATED_EXAMPLES", 40)),  # raise it to search longer
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking would rerun for minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), name=st.sampled_from(sorted(COMMANDS)))
def test_generated_command_lines_run_or_fail_in_one_line(data, name, cli, trained_run):
    """Any command line either succeeds or ends in one clean line with exit code 2.

    Either way it stays under ``MAX_RSS`` (with at most ``ADDRESS_SPACE`` of address space) and
    creates nothing outside the paths it was given: the checked folder holds the working
    directory three levels down, and a refused command creates nothing at all.
    """
    lines, outputs = COMMANDS[name]
    argv = data.draw(lines, label="argv")
    with tempfile.TemporaryDirectory() as folder:
        top = Path(folder)
        argv = [arg.replace("{top}", folder) for arg in argv]  # absolute, but where we look
        work = top / "a" / "b" / "c"
        work.mkdir(parents=True)
        make_fixtures(work, trained_run)
        before = set(snapshot(top))
        result = cli.run(*argv, cwd=work, timeout=90, address_space=ADDRESS_SPACE)
        created = set(snapshot(top)) - before
        allowed = [Path(os.path.normpath(work / out)) for out in outputs(argv) if out]
    assert not result.timed_out, argv
    assert "Traceback" not in result.stderr, result.stderr
    assert result.max_rss < MAX_RSS, (argv, result.max_rss)
    if result.returncode == 0:
        for path in created:
            assert any(
                path == out or out in path.parents or path in out.parents for out in allowed
            ), f"{argv} created {path} outside {allowed}"
        if name == "train":
            assert is_run_name(last_value(argv, "--run-name", "default")), argv
    else:
        assert_clean_error(result, "", code=2)
        assert not created, f"{argv} failed and left {sorted(created)}"
