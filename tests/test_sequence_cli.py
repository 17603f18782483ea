"""Sequences from the command line: train a token task, evaluate it (exact match), a user's own
verifier from the README trained with --agent, bad input."""

from __future__ import annotations

import json

import pytest

from pgrad.agents import TSP

from helpers import ROOT, assert_clean_error, pgrad

README_MARKER = "<!-- token-task-example -->"


def readme_token_task() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(README_MARKER, 1)[1].split("```python", 1)[1].split("```", 1)[0]


def test_train_and_eval_a_token_task_from_the_command_line(tmp_path):
    result = pgrad(
        "train",
        "pgrad/Reverse-v0",
        "--total-steps",
        "192",
        "--num-envs",
        "32",
        "--set",
        "env_kwargs=length=2",
        "--set",
        "eval_episodes=8",
        "--run-name",
        "rev",
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "exact" in result.stdout  # the final evaluation reports the exact-match rate
    run_dir = tmp_path / "runs" / "rev"
    assert json.loads((run_dir / "config.json").read_text())["env_kwargs"] == {"length": 2}
    result = pgrad("eval", str(run_dir), "--episodes", "10", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert 0.0 <= summary["mean_exact"] <= 1.0 and summary["episodes"] == 10
    result = pgrad("eval", str(run_dir), "--episodes", "10", cwd=tmp_path)
    assert "exact" in result.stdout


def test_tsp_evaluation_reports_the_mean_tour_length():
    agent = TSP(env_kwargs="n=6", group_size=6, num_envs=12, d_model=16, num_heads=2)
    result = agent.evaluate(episodes=5)
    assert result["mean_tour_length"] == pytest.approx(-result["mean_return"])


@pytest.mark.slow
def test_readme_token_task_recipe_trains_with_agent(tmp_path):
    (tmp_path / "my_task.py").write_text(readme_token_task())
    result = pgrad(
        "train",
        "--agent",
        "my_task.py:AbsentAgent",
        "--total-steps",
        "20000",
        "--run-name",
        "max",
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    result = pgrad(
        "eval",
        str(tmp_path / "runs" / "max"),
        "--agent",
        "my_task.py:AbsentAgent",
        "--episodes",
        "100",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # an untrained policy answers one digit whatever the prompt: right with p = 0.9^6 = 0.53
    assert json.loads(result.stdout)["mean_exact"] > 0.75


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["pgrad/Reverse-v0", "--set", "env_kwargs=lenght=3"], "cannot make pgrad/Reverse-v0"),
        (["pgrad/Reverse-v0", "--set", "env_kwargs=3"], "env_kwargs expects key=value"),
        (["pgrad/Reverse-v0", "--agent", "reinforce", "--set", "baseline=rpp"], "sequence"),
        (["pgrad/Reverse-v0", "--set", "aggregation=mean"], "aggregation must be one of"),
    ],
)
def test_bad_sequence_input_is_one_line(tmp_path, args, fragment):
    result = pgrad("train", *args, "--total-steps", "10", cwd=tmp_path)
    assert_clean_error(result, fragment)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
