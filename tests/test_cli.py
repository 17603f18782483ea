"""The ``pgrad`` command, run for real in subprocesses."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgrad.config import Config

from helpers import ROOT, pgrad, run_dir_of


def train_small(tmp_path: Path, *extra: str) -> Path:
    result = pgrad(
        "train",
        "pgrad/Bandit-v0",
        "--total-steps",
        "640",
        "--quiet",
        "--logdir",
        "runs",
        *extra,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return run_dir_of(result, tmp_path)


def test_help_explains_every_flag(tmp_path):
    result = pgrad("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in (
        "--agent",
        "--total-steps",
        "--num-envs",
        "--seed",
        "--device",
        "--logdir",
        "--run-name",
        "--set",
        "--resume",
        "--quiet",
    ):
        assert flag in result.stdout
    for command in ("eval", "list", "plot", "compare", "tune"):
        assert pgrad(command, "--help", cwd=tmp_path).returncode == 0


def _config_docstrings() -> dict[str, str]:
    """Each ``Config`` field's docstring, read from the source on its own, not through pgrad."""
    tree = ast.parse((ROOT / "pgrad" / "config.py").read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config").body
    docs = {}
    for field, after in zip(body, body[1:]):
        if isinstance(field, ast.AnnAssign) and isinstance(after, ast.Expr):
            docs[field.target.id] = after.value.value
    return docs


def test_train_help_lists_every_config_field_with_its_docstring(tmp_path):
    out = pgrad("train", "--help", cwd=tmp_path).stdout
    # argparse may wrap the epilog; compare with runs of whitespace folded to one space.
    folded = " ".join(out.split())
    docs = _config_docstrings()
    names = [field.name for field in dataclasses.fields(Config)]
    assert sorted(docs) == sorted(names), "every Config field must carry a docstring"
    for field in dataclasses.fields(Config):
        default = field.default if field.default_factory is dataclasses.MISSING else Config()
        default = getattr(default, field.name) if isinstance(default, Config) else default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
        entry = " ".join(f"{field.name} = {shown} {docs[field.name]}".split())
        assert entry in folded, f"{field.name}: {entry!r} not in pgrad train --help"


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
    result = pgrad(
        "train",
        "--agent",
        "my_file.py:MyAgent",
        "--total-steps",
        "2000",
        "--quiet",
        "--run-name",
        "mine",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    from pgrad.plot import read_scalars

    steps, returns = read_scalars(tmp_path / "runs" / "mine", "charts/episodic_return")
    assert steps[-1] >= 2000 and len(returns) > 0


def test_eval_of_a_grouped_baseline_run_and_stochastic(tmp_path):
    run_dir = train_small(tmp_path, "--set", "baseline=loo", "--set", "group_size=4")
    result = pgrad("eval", str(run_dir), "--episodes", "3", "--stochastic", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["episodes"] == 3


def test_eval_records_video(tmp_path):
    pytest.importorskip("moviepy")
    result = pgrad(
        "train", "CartPole-v1", "--total-steps", "1000", "--quiet", "--run-name", "cp", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "cp"
    result = pgrad("eval", str(run_dir), "--episodes", "2", "--video", "vids", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    videos = sorted((tmp_path / "vids").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)


def test_readme_subclass_example_evaluates_with_its_agent(tmp_path):
    from helpers import assert_clean_error

    (tmp_path / "my_file.py").write_text(readme_example())
    result = pgrad(
        "train",
        "--agent",
        "my_file.py:MyAgent",
        "--total-steps",
        "500",
        "--quiet",
        "--run-name",
        "mine",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    result = pgrad("eval", "runs/mine", "--agent", "my_file.py:MyAgent", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mean_length"] == 20.0
    assert_clean_error(pgrad("eval", "runs/mine", cwd=tmp_path), "pass --agent")


@pytest.mark.slow
def test_a_stochastic_optimum_is_evaluated_stochastically(tmp_path):
    """ShortCorridor's best policy is stochastic; its greedy form never reaches the goal."""
    result = pgrad("train", "pgrad/ShortCorridor-v0", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("evaluation:"))
    assert "(stochastic: sampled actions)" in line, line
    assert float(line.split()[3]) > -20.0, line  # deterministic: -200 (the time limit)
    run = next((tmp_path / "runs").iterdir())
    stochastic = pgrad("eval", str(run), "--json", cwd=tmp_path)
    greedy = pgrad("eval", str(run), "--json", "--deterministic", cwd=tmp_path)
    assert json.loads(stochastic.stdout)["mean_return"] > -20.0
    assert json.loads(greedy.stdout)["mean_return"] == -200.0


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["train", "--help"]])
def test_help_and_version_do_not_import_torch(argv):
    code = (
        "import sys\nfrom pgrad.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr
    assert "pgrad" in result.stdout
