"""Tests for pgrad tune: a real Optuna study in SQLite, pruning, interrupted and killed runs that
continue, the tuned agent file, search-space files and bad input."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

import pgrad
from pgrad.plot import read_scalars
from pgrad.search_space import apply_overrides, default_space, load_space_file
from pgrad.tune import EVAL_SEED_OFFSET, train_and_score

from helpers import assert_clean_error, pgrad_main, popen_pgrad

optuna = pytest.importorskip("optuna")
TrialState = optuna.trial.TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STEPS, TRIALS, SEED = 4000, 8, 1


def trials_of(storage: str, study: str = "s") -> list:
    return optuna.load_study(study_name=study, storage=storage).get_trials()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One study of REINFORCE on CartPole over the default space: 8 trials of 4,000 steps."""
    root = tmp_path_factory.mktemp("tune")
    args = [
        "tune", "CartPole-v1", "--agent", "reinforce", "--trials", str(TRIALS),
        "--steps-per-trial", str(STEPS), "--study", "s", "--seed", str(SEED), "--evals", "3",
        "--logdir", str(root / "runs"), "--out", str(root / "s_tuned.py"),
    ]  # fmt: skip
    from pgrad.cli import main

    assert main(args) == 0
    return root, args, f"sqlite:///{root / 'runs' / 's' / 'study.db'}"


@pytest.mark.slow
def test_best_trial_beats_the_default_config_at_the_same_budget(study):
    root, _, storage = study
    trials = trials_of(storage)
    assert sum(t.state in FINISHED for t in trials) == TRIALS
    best = optuna.load_study(study_name="s", storage=storage).best_trial  # what tune reports
    assert best.value == max(t.value for t in trials if t.state == TrialState.COMPLETE)
    default = pgrad.Reinforce.default_config().replace(
        env_id="CartPole-v1", total_steps=STEPS, seed=SEED
    )
    default_score = train_and_score(
        pgrad.Reinforce, default, root / "default", 10, SEED + EVAL_SEED_OFFSET
    ).score
    assert best.value > default_score, (best.value, default_score)


@pytest.mark.slow
def test_every_trial_is_a_run_of_its_sampled_config(study):
    root, _, storage = study
    for trial in trials_of(storage):
        run_dir = root / "runs" / "s" / f"trial-{trial.number}"
        config = json.loads((run_dir / "config.json").read_text())
        assert config["total_steps"] == STEPS and config["seed"] == SEED
        assert config["learning_rate"] == trial.params["learning_rate"]
        assert config["hidden"] == [int(w) for w in trial.params["hidden"].split(",")]
        assert config["baseline"] == trial.params["baseline"]
        steps, _ = read_scalars(run_dir, "charts/episodic_return")
        if trial.state == TrialState.COMPLETE:
            assert steps[-1] >= STEPS


@pytest.mark.slow
def test_pruning_stops_trials_early(study):
    root, _, storage = study
    pruned = [t for t in trials_of(storage) if t.state == TrialState.PRUNED]
    assert pruned
    for trial in pruned:
        steps, _ = read_scalars(root / "runs" / "s" / f"trial-{trial.number}", "losses/entropy")
        assert steps[-1] == trial.user_attrs["steps"]
        # stopped before its last evaluation (its steps may pass the budget: one batch of whole
        # episodes from a good policy is thousands of steps)
        assert len(trial.intermediate_values) < 3


@pytest.mark.slow
def test_a_finished_study_runs_no_more_trials(study, capsys):
    _, args, storage = study
    before = trials_of(storage)
    result = pgrad_main(capsys, *args)
    assert result.returncode == 0, result.stderr
    assert len(trials_of(storage)) == len(before)
    best = max((t for t in before if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert f"best: trial {best.number}, score {best.value:.4g}" in result.stdout


@pytest.mark.slow
def test_tuned_agent_file_trains(study, capsys, monkeypatch):
    root, _, storage = study
    from pgrad.cli import resolve_agent

    tuned = resolve_agent(str(root / "s_tuned.py") + ":Tuned", None)
    best = optuna.load_study(study_name="s", storage=storage).best_trial
    assert issubclass(tuned, pgrad.Reinforce) and tuned.env_id == "CartPole-v1"
    expected = {
        **pgrad.Reinforce.defaults,
        **best.params,
        "hidden": tuple(int(w) for w in best.params["hidden"].split(",")),
        "total_steps": STEPS,
    }
    assert tuned.defaults == expected
    monkeypatch.chdir(root)
    result = pgrad_main(
        capsys, "train", "--agent", "s_tuned.py:Tuned", "--total-steps", "300", "--quiet",
        "--run-name", "tuned",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((root / "runs" / "tuned" / "config.json").read_text())
    assert config["learning_rate"] == best.params["learning_rate"]


# -- stopped and continued ----------------------------------------------------------------------
def _interrupt_mid_trial(tmp_path: Path, sig: int) -> tuple[list[str], str, int]:
    """Start a 2-trial study, signal it while trial 1 runs; return its args, storage, code."""
    args = [
        "tune",
        "CartPole-v1",
        "--agent",
        "reinforce",
        "--trials",
        "2",
        "--steps-per-trial",
        "6000",
        "--study",
        "s",
        "--evals",
        "1",
    ]  # one evaluation, at the end: no pruning cuts trial 1 short
    storage = f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}"
    proc = popen_pgrad(*args, cwd=tmp_path)
    study, run_root = None, tmp_path / "runs" / "s"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            if study is None and (run_root / "study.db").exists():
                study = _open_study_of_another_process(storage)
            # trial 1 trains once its run folder exists: the storage must say it runs
            if study is not None and (run_root / "trial-1").exists():
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                assert [t.number for t in running] == [1]
                break
            time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return args, storage, proc.returncode, err


def _open_study_of_another_process(url: str):
    """The study ``s`` if the other process has created it, else ``None``; never creates tables."""
    try:
        storage = optuna.storages.RDBStorage(
            url, skip_table_creation=True, skip_compatibility_check=True
        )
        return optuna.load_study(study_name="s", storage=storage)
    except Exception:  # tables or study not there yet
        return None


def _assert_continued(trials: list, stopped: int) -> None:
    """The study holds 2 finished trials, the stopped one FAIL and rerun, none counted twice."""
    states = {t.number: t.state for t in trials}
    assert states[0] in FINISHED and states[stopped] == TrialState.FAIL, states
    assert sum(s in FINISHED for s in states.values()) == 2, states
    assert not any(s in (TrialState.RUNNING, TrialState.WAITING) for s in states.values())
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == stopped]
    assert retry.state in FINISHED and retry.params == trials[stopped].params
    # trial 0 was kept and not run again
    assert sum(t.params == trials[0].params for t in trials) == 1


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_mid_trial_then_the_same_command_continues(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, storage, code, err = _interrupt_mid_trial(tmp_path, signal.SIGINT)
    assert code == 130, err
    assert err.strip().splitlines()[-1].startswith("pgrad: interrupted"), err
    trials = trials_of(storage)
    before = {t.number: t.value for t in trials if t.state in FINISHED}
    (stopped,) = [t.number for t in trials if t.state == TrialState.FAIL]
    assert trials[stopped].user_attrs["fail_reason"] == "interrupted"
    assert [t.state for t in trials if t.number > stopped] == [TrialState.WAITING]
    result = pgrad_main(capsys, *args)
    assert result.returncode == 0, result.stderr
    trials = trials_of(storage)
    _assert_continued(trials, stopped)
    assert all(trials[n].value == v for n, v in before.items())


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_mid_trial_then_the_same_command_continues(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, storage, code, _ = _interrupt_mid_trial(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    (stopped,) = [t.number for t in trials_of(storage) if t.state == TrialState.RUNNING]
    result = pgrad_main(capsys, *args)
    assert result.returncode == 0, result.stderr
    trials = trials_of(storage)
    _assert_continued(trials, stopped)
    assert trials[stopped].user_attrs["fail_reason"] == "its process died"


# -- search spaces --------------------------------------------------------------------------------
def test_space_file_changes_adds_and_drops_parameters(tmp_path, capsys, monkeypatch):
    (tmp_path / "space.yaml").write_text(
        "learning_rate: {low: 1e-3, high: 2e-3, log: true}\n"
        "hidden: [[8], '16,16']\n"
        "ent_coef: 0.01\n"
        "gamma: null\n"
        "max_grad_norm: [0.5, 1.0]\n"
    )
    base = pgrad.Reinforce.default_config()
    space = apply_overrides(default_space(base), load_space_file(tmp_path / "space.yaml"))
    assert space.params["learning_rate"].low == 1e-3 and space.params["learning_rate"].log
    assert space.params["hidden"].choices == ("8", "16,16")
    assert space.params["max_grad_norm"].choices == (0.5, 1.0)
    assert space.fixed == {"ent_coef": 0.01} and "gamma" not in space.params
    (tmp_path / "space.py").write_text("SPACE = {'num_envs': [4, 8], 'hidden': [32, 32]}\n")
    space = apply_overrides(default_space(base), load_space_file(tmp_path / "space.py"))
    assert space.fixed == {"hidden": (32, 32)}
    assert space.params["num_envs"].choices == (4, 8)
    # a tiny study with the YAML space: the fixed value and the ranges reach the run's config
    monkeypatch.chdir(tmp_path)
    result = pgrad_main(
        capsys, "tune", "CartPole-v1", "--agent", "reinforce", "--trials", "1",
        "--steps-per-trial", "300", "--study", "y", "--space", "space.yaml",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "runs" / "y" / "trial-0" / "config.json").read_text())
    assert config["ent_coef"] == 0.01 and config["gamma"] == base.gamma
    assert 1e-3 <= config["learning_rate"] <= 2e-3 and config["hidden"] in ([8], [16, 16])
    assert "'ent_coef': 0.01" in (tmp_path / "y_tuned.py").read_text()


def test_default_space_follows_the_agent():
    a2c = default_space(pgrad.A2C.default_config()).params
    reinforce = default_space(pgrad.Reinforce.default_config()).params
    assert {"num_steps", "gae_lambda"} <= set(a2c) and "baseline" not in a2c
    assert "baseline" in reinforce and not {"num_steps", "gae_lambda"} & set(reinforce)
    for space in (a2c, reinforce):
        assert {"learning_rate", "ent_coef", "gamma", "num_envs", "hidden"} <= set(space)
    assert "hidden" not in default_space(pgrad.Reinforce.default_config(hidden=())).params
    # each agent searches only what its algorithm reads
    with_algorithm = {
        cls: default_space(cls.default_config(), cls.algorithm_class).params
        for cls in (pgrad.Reinforce, pgrad.A2C, pgrad.PPO, pgrad.Sequence)
    }
    assert "clip_coef" in with_algorithm[pgrad.PPO]
    assert not {"clip_coef", "update_epochs"} & set(with_algorithm[pgrad.A2C])
    control = with_algorithm[pgrad.Reinforce]["baseline"].choices
    assert "value" in control and not {"drgrpo", "rpp", "pomo", "greedy"} & set(control)
    sequence = with_algorithm[pgrad.Sequence]["baseline"].choices
    assert {"loo", "drgrpo", "rpp"} <= set(sequence) and "value" not in sequence


# -- bad input ------------------------------------------------------------------------------------
TUNE = ["tune", "CartPole-v1", "--trials", "2", "--steps-per-trial", "300", "--study", "s"]


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--trials", "0"], "--trials must be >= 1"),
        (["--steps-per-trial", "-5"], "--steps-per-trial must be >= 1"),
        (["--storage", "sqlite:////no/such/folder/study.db"], "cannot open storage"),
        (["--storage", "nosuchdb://host/x"], "cannot open storage"),
        (["--space", "bad_key.yaml"], "unknown parameter 'lr' in bad_key.yaml"),
        (["--space", "bad_range.yaml"], "learning_rate in bad_range.yaml: low must be below"),
        (["--space", "seed.yaml"], "seed in seed.yaml is set by pgrad tune"),
        (["--space", "missing.yaml"], "space file missing.yaml does not exist"),
        (["--study", "a/b"], "--study must be a plain name"),
        (["--agent", "nope"], "unknown agent 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, extra, fragment):
    (tmp_path / "bad_key.yaml").write_text("lr: [0.1, 0.01]\n")
    (tmp_path / "bad_range.yaml").write_text("learning_rate: {low: 0.1, high: 0.01}\n")
    (tmp_path / "seed.yaml").write_text("seed: [1, 2]\n")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert_clean_error(pgrad_main(capsys, *TUNE, *extra), fragment)
    assert sorted(tmp_path.rglob("*")) == before


def test_without_optuna_tune_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    monkeypatch.chdir(tmp_path)
    result = pgrad_main(capsys, *TUNE)
    assert_clean_error(result, "pgrad tune needs Optuna: pip install 'pgrad[tune]'")
    assert not any(tmp_path.iterdir())


def test_a_study_rerun_with_other_settings_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = ["tune", "CartPole-v1", "--trials", "1", "--steps-per-trial", "300", "--study", "s"]
    assert pgrad_main(capsys, *first).returncode == 0
    result = pgrad_main(capsys, *first[:5], "400", *first[6:])
    assert_clean_error(result, "study 's' was started with other settings (steps_per_trial")
