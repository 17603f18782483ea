"""Bad input: every case gives one line on stderr, exit code 2, no traceback, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgrad.config import Config, field_types

from helpers import assert_clean_error, pgrad

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
    (["train", "--seed", "-3"], "seed must be >= 0"),
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
    (["plot", "no/such/run"], "does not exist"),
    (["plot", "emptyrun"], "no TensorBoard event files"),
    (["nosuchcommand"], "invalid choice"),
]


def make_fixtures(folder: Path) -> None:
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
def test_bad_invocation_is_one_clean_line(args, fragment, tmp_path):
    make_fixtures(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert_clean_error(pgrad(*args, cwd=tmp_path, timeout=120), fragment)
    after = sorted(
        p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "__pycache__" not in p.parts
    )
    assert after == before, "a failed command left files behind"
    assert not (tmp_path / "PWNED").exists()


def test_corpus_is_large():
    assert len(BAD_INVOCATIONS) >= 30


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
