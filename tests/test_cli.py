"""The ``pgrad`` command, run for real in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pgrad(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("pgrad: error:") and fragment in lines[0], lines[0]


def train_small(tmp_path: Path, *extra: str) -> Path:
    result = pgrad("train", "pgrad/Bandit-v0", "--total-steps", "640", "--quiet",
                   "--logdir", "runs", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run directory: ")
    return tmp_path / last.removeprefix("run directory: ")


def test_help_explains_every_flag(tmp_path):
    result = pgrad("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--agent", "--total-steps", "--num-envs", "--seed", "--device", "--logdir",
                 "--run-name", "--set", "--resume", "--quiet", "learning_rate", "gamma"):
        assert flag in result.stdout
    for command in ("eval", "list", "plot"):
        assert pgrad(command, "--help", cwd=tmp_path).returncode == 0


def test_list_names_agents_presets_and_envs(tmp_path):
    out = pgrad("list", cwd=tmp_path).stdout
    for name in ("reinforce", "a2c", "CartPole-v1", "pgrad/ShortCorridor-v0", "pgrad/Bandit-v0"):
        assert name in out


def test_train_eval_json_and_plot(tmp_path):
    run_dir = train_small(tmp_path)
    assert (run_dir / "config.json").is_file()
    assert list((run_dir / "checkpoints").glob("step_*.pt"))
    result = pgrad("eval", str(run_dir), "--episodes", "5", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == {"episodes", "mean_return", "std_return", "mean_length"}
    assert summary["episodes"] == 5 and summary["mean_length"] == 1.0
    second = train_small(tmp_path, "--seed", "2")
    png = tmp_path / "curves.png"
    result = pgrad("plot", str(run_dir), str(second), "-o", str(png), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


README_EXAMPLE_START = "<!-- subclass-example -->"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split(README_EXAMPLE_START, 1)[1].split("```python", 1)[1].split("```", 1)[0]
    return block


def test_readme_subclass_example_trains(tmp_path):
    (tmp_path / "my_file.py").write_text(readme_example())
    result = pgrad("train", "--agent", "my_file.py:MyAgent", "--total-steps", "2000", "--quiet",
                   "--run-name", "mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from pgrad.plot import read_scalars

    steps, returns = read_scalars(tmp_path / "runs" / "mine", "charts/episodic_return")
    assert steps[-1] >= 2000 and len(returns) > 0


BAD_INVOCATIONS = [
    (["train", "NoSuchEnv-v0"], "unknown environment"),
    (["train", "--agent", "nosuchagent"], "unknown agent"),
    (["train", "--agent", "missing_file.py:Agent"], "does not exist"),
    (["train", "--agent", "json:JSONDecoder"], "not a pgrad.Agent subclass"),
    (["train", "--set", "learning_rate"], "key=value"),
    (["train", "--set", "no_such_key=1"], "unknown config key"),
    (["train", "--set", "learning_rat=0.1"], "did you mean learning_rate"),
    (["train", "--set", "gamma=1.5"], "gamma must be in [0, 1]"),
    (["train", "--set", "gamma=abc"], "gamma expects float"),
    (["train", "--set", "learning_rate=-0.1"], "learning_rate must be > 0"),
    (["train", "--set", "baseline=magic"], "baseline must be one of"),
    (["train", "--total-steps", "-5"], "total_steps must be >= 1"),
    (["train", "--total-steps", "ten"], "expected an integer"),
    (["train", "--num-envs", "0"], "num_envs must be >= 1"),
    (["train", "--device", "tpu"], "invalid choice"),
    (["train", "--bogus-flag"], "unrecognized arguments"),
    (["eval", "no/such/run"], "does not exist"),
    (["plot", "no/such/run"], "does not exist"),
    (["nosuchcommand"], "invalid choice"),
]


@pytest.mark.parametrize("args,fragment", BAD_INVOCATIONS, ids=lambda v: str(v)[:40])
def test_bad_input_is_one_clean_line(args, fragment, tmp_path):
    assert_clean_error(pgrad(*args, cwd=tmp_path, timeout=60), fragment)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
