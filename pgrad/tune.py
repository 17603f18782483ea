"""Hyperparameter search on Optuna (``pgrad tune``): TPE sampling, median pruning, resumable.

Each trial is an ordinary pgrad run under ``<logdir>/<study>/trial-<k>/`` (TensorBoard events,
``config.json``, checkpoints) of ``steps_per_trial`` environment steps with the study's seed.
During training the agent is evaluated ``evals`` times (deterministic episodes from one fixed
seed, the same for every trial); each result goes to ``trial.report`` and Optuna's median
pruner stops a trial that is below the median of earlier trials at the same point, once
``max(1, min(5, trials // 4))`` trials have finished. The score of a finished trial is the same
evaluation at the end of training.

The study lives in an Optuna storage (SQLite at ``<logdir>/<study>/study.db`` by default), so a
stopped ``pgrad tune`` continues when run again, until ``trials`` trials are COMPLETE or PRUNED:

- Ctrl-C stops the current trial after its update (as in ``pgrad train``); it is marked FAIL
  and a copy with the same parameters is queued (WAITING), so the next run evaluates it first.
- A killed process (SIGKILL, a crash, a lost machine) leaves its trial RUNNING. The next run on
  the same machine sees that the process recorded in the trial is gone, marks the trial FAIL
  and queues the same copy. Trials of a process on another machine sharing the storage are
  recovered by Optuna's heartbeat: one that has not beaten for ``GRACE_PERIOD`` seconds is
  failed and requeued by the next trial that starts anywhere.

FAIL trials are never counted, so no trial is counted twice and none is lost.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgrad.agent import Agent, TrainingError
from pgrad.config import Config
from pgrad.errors import TuneError
from pgrad.search_space import Space

HEARTBEAT_INTERVAL = 30
"""Seconds between the heartbeats a running trial writes to the storage."""
GRACE_PERIOD = 120
"""A RUNNING trial whose heartbeat is this many seconds old is taken for dead."""
MAX_FAILURES_IN_A_ROW = 10
"""Stop when this many trials in a row fail (a config error, non-finite training)."""
EVAL_SEED_OFFSET = 10_000
"""Evaluation episodes are seeded ``seed + EVAL_SEED_OFFSET``, as ``pgrad eval`` does."""


class _InvalidTrial(Exception):
    """The sampled values make no valid config (e.g. num_envs not divisible by group_size)."""


@dataclass(frozen=True)
class TuneSettings:
    """Everything that defines a study; a rerun must give the same to continue it."""

    agent_cls: type[Agent]
    agent_spec: str
    base: Config
    space: Space
    trials: int
    steps_per_trial: int
    study: str
    storage: str
    logdir: Path
    seed: int = 1
    evals: int = 4
    eval_episodes: int = 10

    def signature(self) -> dict[str, Any]:
        return {
            "env_id": self.base.env_id,
            "agent": self.agent_spec,
            "steps_per_trial": self.steps_per_trial,
            "seed": self.seed,
            "evals": self.evals,
            "eval_episodes": self.eval_episodes,
            "space": self.space.signature(),
        }

    @property
    def study_dir(self) -> Path:
        return self.logdir / self.study

    @property
    def eval_seed(self) -> int:
        return self.seed + EVAL_SEED_OFFSET


@dataclass
class TuneResult:
    """The best trial of a finished study."""

    number: int
    score: float
    params: dict[str, Any]
    """The tuned config values (searched and fixed), as the config holds them."""
    run_dir: Path
    complete: int
    pruned: int
    failed: int


def default_storage(logdir: Path, study: str) -> str:
    return f"sqlite:///{logdir / study / 'study.db'}"


def open_storage(url: str) -> Any:
    """An Optuna RDB storage at ``url`` with heartbeats that fail and requeue dead trials.

    Raises:
        ValueError: the URL is malformed, its database driver is missing, or nothing answers.
    """
    import inspect

    import optuna

    from pgrad.errors import first_line

    # optuna 4.9 renamed the callback argument; the old name still works there but warns
    parameters = inspect.signature(optuna.storages.RDBStorage).parameters
    callback_arg = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in parameters
        else "failed_trial_callback"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeats are marked experimental
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                **{callback_arg: requeue},
            )
    except Exception as err:  # SQLAlchemy and drivers raise many kinds; all mean "cannot open"
        raise ValueError(f"cannot open storage {_hide_password(url)}: {first_line(err)}") from None


def requeue(study: Any, trial: Any) -> None:
    """Queue a WAITING copy of the failed ``trial``'s parameters; the next trial asked runs it.

    The copy records the trial it repeats in its system attribute ``failed_trial``.
    """
    import optuna

    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={"failed_trial": trial.number},
        )
    )


def tune(settings: TuneSettings, log: Callable[[str], None] = print) -> TuneResult:
    """Run (or continue) the study until ``settings.trials`` trials are COMPLETE or PRUNED.

    Args:
        settings: the study's definition.
        log: where one line per trial goes.

    Returns:
        The best trial.

    Raises:
        ValueError: the storage cannot be opened, holds this study with other settings, or the
            study is new but its folder holds trial runs.
        TuneError: ``MAX_FAILURES_IN_A_ROW`` trials failed in a row, or a trial's run folder
            is already taken.
        KeyboardInterrupt: Ctrl-C; the trial it stopped is failed and queued to run again.
    """
    import optuna
    from optuna.trial import TrialState

    storage = open_storage(settings.storage)
    study = optuna.create_study(
        study_name=settings.study,
        storage=storage,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=max(1, min(5, settings.trials // 4)), n_warmup_steps=0
        ),
        load_if_exists=True,
    )
    _check_same_study(study, settings)
    if not study.trials and any(settings.study_dir.glob("trial-*")):
        raise ValueError(
            f"{settings.study_dir} holds trial runs of another study; "
            "remove them or choose another --study"
        )
    recover_dead_trials(study, storage)
    objective = _Objective(settings)
    failures = 0
    while (done := _finished(study)) < settings.trials:
        # seeded by the number of trials so far: a resumed study does not replay its first draws
        study.sampler = optuna.samplers.TPESampler(seed=settings.seed + len(study.trials))
        try:
            study.optimize(objective, n_trials=1, catch=(TrainingError, _InvalidTrial))
        except KeyboardInterrupt:
            # the trial Ctrl-C stopped is FAIL (Optuna marks it so): run its parameters again
            number = objective.number
            if number is not None and _trial(study, number).state == TrialState.FAIL:
                requeue(study, _trial(study, number))
            raise
        trial = study.trials[-1] if objective.number is None else _trial(study, objective.number)
        log(_trial_line(trial, done + (trial.state != TrialState.FAIL), settings.trials))
        failures = failures + 1 if trial.state == TrialState.FAIL else 0
        if failures >= MAX_FAILURES_IN_A_ROW:
            reason = trial.user_attrs.get("fail_reason", "see the trials' runs")
            raise TuneError(f"{failures} trials in a row failed; the last: {reason}")
        recover_dead_trials(study, storage)
    return _best(study, settings)


def recover_dead_trials(study: Any, storage: Any) -> list[int]:
    """Fail and requeue the RUNNING trials whose ``pgrad tune`` process on this machine is gone.

    Returns:
        The numbers of the trials failed.
    """
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("pgrad_process")
        if not owner or owner["host"] != host or _process_alive(owner["pid"], owner["start"]):
            continue  # another machine's trial (the heartbeat covers it) or alive here
        trial_id = _trial_id(study, storage, trial.number)
        try:
            # the reason first: a finished trial can no longer be written to
            storage.set_trial_user_attr(trial_id, "fail_reason", "its process died")
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        requeue(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed


@dataclass
class TrainedRun:
    """What a trial's training left: its score (``nan`` if stopped early), steps, and whether
    Ctrl-C stopped it."""

    score: float
    steps: int
    interrupted: bool


def train_and_score(
    agent_cls: type[Agent],
    config: Config,
    run_dir: Path,
    episodes: int,
    eval_seed: int,
    callback: Callable[[Agent, dict[str, float]], None] | None = None,
) -> TrainedRun:
    """Train a run as a trial does and score it: the mean return of deterministic episodes."""
    agent = agent_cls(config, run_dir=run_dir, quiet=True)
    try:
        agent.train(config.total_steps, callback=callback)
        done = not agent.interrupted and agent.global_step >= config.total_steps
        score = agent.evaluate(episodes, seed=eval_seed)["mean_return"] if done else float("nan")
        return TrainedRun(score, agent.global_step, agent.interrupted)
    finally:
        agent.envs.close()  # a study builds many agents: free their environments now


def write_agent_file(
    path: Path, settings: TuneSettings, result: TuneResult, study_name: str
) -> Path:
    """Write the best trial as a ready agent: a subclass with the tuned ``defaults``.

    ``pgrad train --agent path:Tuned`` trains it.
    """
    cls = settings.agent_cls
    parent, header = _import_of(cls, settings.agent_spec)
    values = {**result.params, "total_steps": settings.steps_per_trial}
    entries = "".join(f"        {name!r}: {value!r},\n" for name, value in values.items())
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{study_name}-tuned")
    text = (
        f'"""The best trial of the pgrad tune study {study_name!r}: trial {result.number}, score '
        f"{result.score:.4g}\n(mean return of {settings.eval_episodes} deterministic episodes "
        f"after {settings.steps_per_trial:,} steps; {result.complete} trials\ncomplete, "
        f"{result.pruned} pruned). Its run: {result.run_dir}\n\n"
        f"Train it: pgrad train --agent {path.name}:Tuned\n"
        '"""\n\n'
        f"{header}\n\n\n"
        f"class Tuned({parent}):\n"
        f"    name = {name!r}\n"
        f"    env_id = {settings.base.env_id!r}\n"
        f"    defaults = {{\n        **{parent}.defaults,\n{entries}    }}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- the objective --------------------------------------------------------------------------------
class _Objective:
    """One trial: sample a config, train it as a pgrad run with evaluations, return its score."""

    def __init__(self, settings: TuneSettings) -> None:
        self.settings = settings
        self.number: int | None = None

    def __call__(self, trial: Any) -> float:
        self.number = trial.number
        trial.set_user_attr("pgrad_process", _this_process())
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            raise

    def _run(self, trial: Any) -> float:
        import optuna

        s = self.settings
        changes = {
            name: param.config_value(param.suggest(trial)) for name, param in s.space.params.items()
        }
        try:
            config = s.base.replace(**s.space.fixed, **changes)
        except ValueError as err:
            trial.set_user_attr("fail_reason", str(err))
            raise _InvalidTrial(str(err)) from None
        run_dir = s.study_dir / f"trial-{trial.number}"
        if run_dir.exists() and any(run_dir.iterdir()):
            raise TuneError(f"{run_dir} already holds a run; remove it or choose another --study")
        every = s.steps_per_trial / s.evals
        checkpoints = [round(every * i) for i in range(1, s.evals)]
        pruned_at: list[int] = []

        def evaluate(agent: Agent, metrics: dict[str, float]) -> None:
            # evaluations at fixed fractions of the budget, reported under those step numbers
            # so the pruner compares trials whose rollouts have different sizes
            while checkpoints and agent.global_step >= checkpoints[0]:
                point = checkpoints.pop(0)
                score = agent.evaluate(s.eval_episodes, seed=s.eval_seed)["mean_return"]
                trial.report(score, point)
                if trial.should_prune():
                    pruned_at.append(agent.global_step)
                    agent.request_stop()
                    return

        try:
            run = train_and_score(
                s.agent_cls, config, run_dir, s.eval_episodes, s.eval_seed, evaluate
            )
        except TrainingError as err:
            trial.set_user_attr("fail_reason", str(err))
            raise
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("steps", run.steps)
        if run.interrupted:
            raise KeyboardInterrupt
        if pruned_at:
            trial.set_user_attr("pruned_at_step", pruned_at[0])
            raise optuna.TrialPruned(f"stopped at step {pruned_at[0]}")
        trial.report(run.score, s.steps_per_trial)
        return run.score


# -- helpers --------------------------------------------------------------------------------------
def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _trial(study: Any, number: int) -> Any:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _trial_id(study: Any, storage: Any, number: int) -> int:
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def _check_same_study(study: Any, settings: TuneSettings) -> None:
    wanted = json.loads(json.dumps(settings.signature()))
    stored = study.user_attrs.get("pgrad")
    if stored is None:
        study.set_user_attr("pgrad", wanted)
        return
    if stored != wanted:
        differing = sorted(
            k for k in wanted.keys() | stored.keys() if wanted.get(k) != stored.get(k)
        )
        raise ValueError(
            f"study {settings.study!r} was started with other settings ({', '.join(differing)} "
            "differ); run it with the same arguments or choose another --study"
        )


def _best(study: Any, settings: TuneSettings) -> TuneResult:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    best = study.best_trial
    params = {
        name: settings.space.params[name].config_value(value)
        for name, value in best.params.items()
        if name in settings.space.params
    }
    params.update(settings.space.fixed)
    return TuneResult(
        number=best.number,
        score=float(best.value),
        params=params,
        run_dir=Path(best.user_attrs.get("run_dir", settings.study_dir / f"trial-{best.number}")),
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
    )


def _trial_line(trial: Any, done: int, total: int) -> str:
    from optuna.trial import TrialState

    params = " ".join(f"{k}={_show(v)}" for k, v in trial.params.items())
    if trial.state == TrialState.COMPLETE:
        outcome = f"score {trial.value:.4g}"
    elif trial.state == TrialState.PRUNED:
        step = trial.user_attrs.get("pruned_at_step", "?")
        last = trial.intermediate_values[max(trial.intermediate_values)]
        outcome = f"pruned at step {step:,} (score {last:.4g} there)"
    else:
        outcome = f"failed: {trial.user_attrs.get('fail_reason', 'error')}"
    return f"[{done}/{total}] trial {trial.number}: {outcome}  {params}"


def _this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return None if fields[0] == "Z" else fields[19]  # a zombie has exited


def _process_alive(pid: int, start: str | None) -> bool:
    if sys.platform.startswith("linux"):
        now = _start_time(pid)
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _import_of(cls: type[Agent], spec: str) -> tuple[str, str]:
    """The parent's name in the agent file and the lines that import it."""
    if spec.partition(":")[0].endswith(".py"):
        # an agent in the user's own file: load it the way --agent does
        path, _, class_name = spec.rpartition(":")
        absolute = Path(path).resolve()
        return "Parent", (
            "from pgrad.cli import resolve_agent\n\n"
            f"Parent = resolve_agent({f'{absolute}:{class_name}'!r}, None)"
        )
    import pgrad
    import pgrad.agents

    name = cls.__qualname__
    for package in (pgrad, pgrad.agents):  # the public name outlives a move between modules
        if getattr(package, name, None) is cls:
            return name, f"from {package.__name__} import {name}"
    return name, f"from {cls.__module__} import {name}"


def _hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
