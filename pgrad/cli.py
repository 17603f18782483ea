"""The ``pgrad`` command: ``train``, ``eval``, ``list``, ``plot``, ``compare`` and ``tune``.

The CLI only builds a config and starts an agent. Every error a user can cause (an unknown
environment, a malformed flag, a bad checkpoint) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from pgrad.config import SEED_MAX, Config, check_seed, field_docs, parse_int
from pgrad.errors import UsageError, first_line

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')")


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"pgrad: error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(code)


def one_line(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\n``, ``\\x1e``, ``\\udcff``).

    An argument may carry a newline or a control character, and a message quoting it must
    still be one line of plain text.
    """
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


def _config_help() -> str:
    defaults = Config()
    lines = [
        "config keys for --set key=value (defaults shown are the base defaults; each agent",
        "and preset overrides some of them, see 'pgrad list'):",
    ]
    for name, doc in field_docs().items():
        value = getattr(defaults, name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        lines.append(f"  {name} = {shown}\n      {doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from pgrad import __version__

    parser = _Parser(
        prog="pgrad", description="Policy-gradient training on Gymnasium environments."
    )
    parser.add_argument("--version", action="version", version=f"pgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser(
        "train",
        help="train an agent (default: CartPole-v1 with its preset)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_config_help(),
        description="Train an agent and log to TensorBoard (view with: tensorboard --logdir runs).",
    )
    train.add_argument(
        "env_id",
        nargs="?",
        default=None,
        metavar="ENV_ID",
        help="Gymnasium environment id (default: CartPole-v1)",
    )
    train.add_argument(
        "--agent",
        default=None,
        help="agent: a name from 'pgrad list', module:Class or path/file.py:Class "
        "(runs that file's code); default: the preset for ENV_ID, else a2c",
    )
    train.add_argument(
        "--total-steps",
        type=_int_arg,
        default=None,
        help="environment steps to train for (default: the agent's)",
    )
    train.add_argument(
        "--num-envs",
        type=_int_arg,
        default=None,
        help="parallel environments (default: the agent's)",
    )
    train.add_argument(
        "--seed", type=_seed_arg, default=None, help=f"random seed in [0, {SEED_MAX}] (default: 1)"
    )
    train.add_argument(
        "--device",
        default=None,
        help="torch device: auto, cpu, cuda, cuda:N or mps (default: auto)",
    )
    train.add_argument(
        "--workers",
        type=_int_arg,
        default=None,
        help="collect with K Ray workers, each with --num-envs environments "
        "(needs the ray extra; default: 0, in this process)",
    )
    train.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="join this Ray cluster (default: start a local one)",
    )
    train.add_argument(
        "--logdir",
        type=_path_arg,
        default="runs",
        help="root folder of run directories (default: runs)",
    )
    train.add_argument(
        "--run-name",
        type=_run_name_arg,
        default=None,
        help="run directory name under --logdir, one path component "
        "(default: <env>__<agent>__<seed>__<time>)",
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any config key (repeatable); keys are listed below",
    )
    train.add_argument(
        "--env-kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for gymnasium.make (repeatable), e.g. --env-kwargs length=6",
    )
    train.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest checkpoint",
    )
    train.add_argument("--quiet", action="store_true", help="print only the final summary")

    ev = sub.add_parser(
        "eval",
        help="evaluate a trained agent",
        description="Evaluate the newest checkpoint of a run, or a checkpoint file.",
    )
    ev.add_argument("target", metavar="RUN_DIR|CHECKPOINT")
    ev.add_argument("--episodes", type=_int_arg, default=10, help="episodes to run (default: 10)")
    mode = ev.add_mutually_exclusive_group()
    mode.add_argument(
        "--stochastic",
        action="store_true",
        help="sample actions (default: the run's eval_deterministic, usually the most likely one)",
    )
    mode.add_argument("--deterministic", action="store_true", help="take the most likely action")
    ev.add_argument(
        "--seed",
        type=_seed_arg,
        default=None,
        help=f"seed of the evaluation episodes, in [0, {SEED_MAX}] "
        "(default: the run's seed + 10000)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument(
        "--agent",
        default=None,
        help="agent class to rebuild (needed for agents defined in your own file)",
    )
    ev.add_argument(
        "--video",
        type=_path_arg,
        default=None,
        metavar="DIR",
        help="also record up to 3 episodes as MP4 files in DIR (needs pgrad[video])",
    )

    sub.add_parser("list", help="list agents, presets and pgrad's environments")

    plot = sub.add_parser(
        "plot",
        help="plot learning curves to a PNG",
        description="Plot a TensorBoard tag of one or more runs. Runs whose config.json "
        "differ only in seed are one curve: their mean with a min-max band, or with --ci their "
        "interquartile mean with a 95% stratified-bootstrap band. Curves are labelled by the "
        "config keys that differ between them. An unreadable run is left out with a warning.",
    )
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument(
        "-o",
        "--output",
        type=_path_arg,
        default="curves.png",
        help="image file, PNG unless its suffix names another format (default: curves.png)",
    )
    plot.add_argument(
        "--tag",
        default="charts/episodic_return",
        help="scalar tag (default: charts/episodic_return)",
    )
    plot.add_argument(
        "--smooth",
        type=_int_arg,
        default=5,
        metavar="N",
        help="moving average over N logged points, 1 for none (default: 5)",
    )
    plot.add_argument(
        "--ci",
        action="store_true",
        help="draw the IQM over seeds with a 95%% bootstrap band instead of mean and min-max",
    )

    comp = sub.add_parser(
        "compare",
        help="compare the final scores of two sets of runs",
        description="Compare two sets of runs (seeds of two settings) by their final scores, "
        "the mean of the last K logged values of a tag: mean, median and interquartile mean "
        "of each set with 95% stratified-bootstrap intervals, and the probability that a run "
        "of A scores above a run of B. Quote the globs so that pgrad expands them.",
    )
    comp.add_argument("glob_a", metavar="RUN_GLOB_A", help="runs of A, e.g. 'runs/*loo*'")
    comp.add_argument("glob_b", metavar="RUN_GLOB_B", help="runs of B")
    comp.add_argument(
        "--tag",
        default="charts/episodic_return",
        help="scalar tag (default: charts/episodic_return)",
    )
    comp.add_argument(
        "--last",
        type=_int_arg,
        default=10,
        metavar="K",
        help="final score: mean of the last K logged values (default: 10)",
    )

    tune = sub.add_parser(
        "tune",
        help="search hyperparameters with Optuna (needs pgrad[tune])",
        description="Search an agent's hyperparameters with Optuna: a seeded TPE sampler, and "
        "a median pruner fed by evaluations during each trial. Each trial is a pgrad run "
        "under LOGDIR/STUDY/trial-K. The study is stored (SQLite at LOGDIR/STUDY/study.db by "
        "default): run the same command again to continue a stopped study. At the end the "
        "best trial is written as an agent file for 'pgrad train --agent FILE:Tuned'.",
    )
    tune.add_argument("env_id", metavar="ENV_ID", help="Gymnasium environment id")
    tune.add_argument(
        "--agent",
        default=None,
        help="agent to tune, as for 'pgrad train' (default: the preset for ENV_ID, else a2c)",
    )
    tune.add_argument(
        "--trials",
        type=_int_arg,
        required=True,
        help="run until this many trials are complete or pruned",
    )
    tune.add_argument(
        "--steps-per-trial",
        type=_int_arg,
        required=True,
        metavar="S",
        help="environment steps each trial trains for",
    )
    tune.add_argument("--study", required=True, help="study name (also its folder in --logdir)")
    tune.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage URL (default: sqlite:///LOGDIR/STUDY/study.db)",
    )
    tune.add_argument(
        "--space",
        default=None,
        metavar="FILE",
        help="YAML or Python (SPACE = {...}) file that changes the search space",
    )
    tune.add_argument(
        "--seed",
        type=_int_arg,
        default=1,
        help="seed of every trial's training and evaluation, and of the sampler (default: 1)",
    )
    tune.add_argument(
        "--logdir", default="runs", help="root folder of the study's runs (default: runs)"
    )
    tune.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="agent file for the best trial (default: STUDY_tuned.py)",
    )
    tune.add_argument(
        "--evals",
        type=_int_arg,
        default=4,
        help="evaluations per trial, the last at its end; the others feed the pruner (default: 4)",
    )
    tune.add_argument(
        "--eval-episodes",
        type=_int_arg,
        default=10,
        help="deterministic episodes per evaluation (default: 10)",
    )
    return parser


def _env_kwargs(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings as a dict; values are Python literals where they parse, else text."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--env-kwargs expects key=value, got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = raw.strip()
    return out


def _int_arg(text: str) -> int:
    try:
        return parse_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _seed_arg(text: str) -> int:
    seed = _int_arg(text)
    try:
        check_seed(seed)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return seed


def _path_arg(text: str) -> str:
    """A path that TensorBoard, matplotlib and the video writer can all open."""
    try:
        text.encode("utf-8")  # bytes that are not UTF-8 arrive as lone surrogates
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"path {text!r} is not valid UTF-8") from None
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def _run_name_arg(text: str) -> str:
    """One path component: the run directory must be a child of --logdir."""
    separators = {os.sep, os.altsep} - {None}
    if text in ("", ".", "..") or any(sep in text for sep in separators):
        raise argparse.ArgumentTypeError(
            f"must be one directory name (not empty, '.' or '..', no '/'), got {text!r}"
        )
    return _path_arg(text)


# -- agents -------------------------------------------------------------------------------------
def resolve_agent(spec: str | None, env_id: str | None) -> type:
    """The agent class named by ``spec`` (a registered name, ``module:Class`` or ``file.py:Class``)."""
    from pgrad.agent import Agent
    from pgrad.agents import AGENTS, preset_for

    if spec is None:
        return preset_for(env_id or "CartPole-v1")
    if spec.lower() in AGENTS:
        return AGENTS[spec.lower()]
    if ":" not in spec:
        raise UsageError(
            f"unknown agent {spec!r}; choose one of {', '.join(AGENTS)} "
            "or give module:Class or path/file.py:Class"
        )
    where, _, class_name = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"agent file {where} does not exist")
        spec = f"{path.resolve()}:{class_name}"  # recorded in the run, so resume can name it
        module_name = f"_pgrad_user_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise UsageError(f"cannot import {where}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # the user's file failed: say where, without a traceback
            raise UsageError(f"cannot import {where}: {type(err).__name__}: {err}") from None
    else:
        if os.getcwd() not in sys.path:  # as `python -m` would: modules of the current folder
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise UsageError(f"cannot import agent module {where!r}: {err}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise UsageError(f"{spec} is not a pgrad.Agent subclass")
    if where.endswith(".py"):
        cls.source = spec
    return cls


# -- commands ------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from pgrad.run import default_run_dir

    if args.resume:
        return _resume(args)
    cls = resolve_agent(args.agent, args.env_id)
    changes: dict[str, Any] = {}
    if args.env_id is not None:
        changes["env_id"] = args.env_id
    for key in ("total_steps", "num_envs", "seed", "device", "workers", "ray_address"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    config = cls.default_config().with_overrides(args.overrides)
    if args.env_kwargs:
        changes["env_kwargs"] = {**config.env_kwargs, **_env_kwargs(args.env_kwargs)}
    config = config.replace(**changes)
    _check_memory(cls, config, episodes=config.eval_episodes)
    _check_creatable(Path(args.logdir), "log directory")
    run_dir = (
        Path(args.logdir) / args.run_name
        if args.run_name is not None
        else default_run_dir(config.env_id, cls.name, config.seed, args.logdir)
    )
    _check_creatable(run_dir, "run directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise UsageError(
            f"run directory {run_dir} already exists; use --resume {run_dir} or another --run-name"
        )
    agent = cls(config, run_dir=run_dir, quiet=args.quiet)
    return _train_and_report(agent, config.total_steps, args.quiet)


def _resume(args: argparse.Namespace) -> int:
    from pgrad import checkpoint as ckpt

    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} does not exist")
    _, state = ckpt.latest_loadable(run_dir / "checkpoints")
    if args.env_id is not None and args.env_id != state.get("env_id"):
        raise UsageError(f"{run_dir} trains {state.get('env_id')}, not {args.env_id}")
    # a resumed run stays one run: flags that would change what it learns are refused
    changing = {
        "--set": args.overrides,
        "--env-kwargs": args.env_kwargs,
        "--num-envs": args.num_envs,
        "--seed": args.seed,
        "--workers": args.workers,
        "--ray-address": args.ray_address,
        "--run-name": args.run_name,
    }
    refused = [flag for flag, value in changing.items() if value not in (None, [])]
    if refused:
        raise UsageError(
            f"{', '.join(refused)} cannot change a resumed run (it must stay one run); resume "
            "with --total-steps, --device or --quiet only, or start a new run"
        )
    recorded = str(state.get("agent", ""))
    if args.agent is None and recorded.partition(":")[0].endswith(".py"):
        raise UsageError(
            f"{run_dir} was trained by an agent from your file; resume with: "
            f"pgrad train --resume {run_dir} --agent {recorded}"
        )
    cls = resolve_agent(args.agent or state.get("agent_name"), state.get("env_id"))
    overrides: dict[str, Any] = {} if args.device is None else {"device": args.device}
    total = state["config"]["total_steps"] if args.total_steps is None else args.total_steps
    if total > state["config"]["total_steps"]:
        # schedules are functions of step / total_steps: the run is extended, not continued
        # at the old schedule's end (a learning rate decayed to 0 would train nothing)
        overrides["total_steps"] = total
        print(
            f"extending {run_dir} from {state['config']['total_steps']:,} to {total:,} steps: "
            "learning-rate and entropy schedules now end at the new total",
            file=sys.stderr,
        )
    try:
        config = Config.from_dict(state["config"]).replace(**overrides)
    except (KeyError, TypeError, ValueError) as err:
        raise ckpt.CheckpointError(f"checkpoint has no valid config: {err}") from None
    _check_memory(cls, config, episodes=config.eval_episodes)
    agent = cls.resume(run_dir, **overrides)
    agent.quiet = args.quiet
    return _train_and_report(agent, total, args.quiet)


def _train_and_report(agent: Any, total: int, quiet: bool) -> int:
    from pgrad.errors import TrainingError

    try:
        agent.train(total)
    except TrainingError as err:
        print(f"pgrad: error: {err}", file=sys.stderr)
        print(f"run directory: {agent.run_dir}")
        return EXIT_FAILED
    if agent.interrupted:
        spec = agent.spec()
        from_file = spec.partition(":")[0].endswith(".py")
        hint = f"pgrad train --resume {agent.run_dir}" + (f" --agent {spec}" if from_file else "")
        print(
            f"interrupted at step {agent.global_step:,}; checkpoint saved. Resume with: {hint}",
            file=sys.stderr,
        )
        print(f"run directory: {agent.run_dir}")
        return EXIT_INTERRUPTED
    if agent.config.eval_episodes:
        result = agent.evaluate(agent.config.eval_episodes)
        how = "deterministic" if agent.config.eval_deterministic else "stochastic: sampled actions"
        print(
            f"evaluation: mean return {result['mean_return']:.2f} ± {result['std_return']:.2f}"
            f"{_raw_part(result)}{_extras_text(result)} over {result['episodes']} episodes ({how})"
        )
    print(f"run directory: {agent.run_dir}")
    return 0


_EVAL_KEYS = ("episodes", "mean_return", "std_return", "mean_length")
_RAW_KEYS = ("mean_raw_return", "std_raw_return")  # printed by _raw_part where they differ


def _extras(result: dict[str, Any]) -> dict[str, float]:
    """What the environment reports at each episode's end (exact match, tour length, ...)."""
    skip = (*_EVAL_KEYS, *_RAW_KEYS)
    return {k: v for k, v in result.items() if k.startswith("mean_") and k not in skip}


def _extras_text(result: dict[str, Any]) -> str:
    """``, exact 0.95`` or ``, tour length 3.91``: the extras as words."""
    return "".join(
        f", {k.removeprefix('mean_').replace('_', ' ')} {v:.4g}" for k, v in _extras(result).items()
    )


def cmd_eval(args: argparse.Namespace) -> int:
    from pgrad import checkpoint as ckpt

    target = Path(args.target)
    if target.is_dir():
        _, state = ckpt.latest_loadable(
            target / "checkpoints" if (target / "checkpoints").is_dir() else target
        )
    elif target.exists():
        state = ckpt.load(target)
    else:
        raise UsageError(f"{target} does not exist")
    from pgrad.agent import Agent
    from pgrad.agents import AGENTS
    from pgrad.errors import EnvError

    cls = (
        resolve_agent(args.agent, state.get("env_id"))
        if args.agent
        else AGENTS.get(str(state.get("agent_name")), Agent)
    )
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if args.video:
        from pgrad.video import check_available

        check_available()
        # the recorder resolves '..' by the name, as normpath does, not by the folders there
        args.video = os.path.normpath(args.video)
        _check_creatable(Path(args.video), "video directory")
    try:
        agent = cls.for_evaluation(state)
    except EnvError as err:
        if args.agent or state.get("agent_name") in AGENTS:
            raise
        recorded = str(state.get("agent", ""))
        where = recorded if recorded.partition(":")[0].endswith(".py") else "path/file.py:Class"
        raise UsageError(
            f"{err}; the run was trained by agent {state.get('agent_name')!r}, "
            f"unknown here: pass --agent {where}"
        ) from None
    _check_memory(type(agent), agent.config, train=False, episodes=args.episodes)
    deterministic = (
        agent.config.eval_deterministic
        if not (args.stochastic or args.deterministic)
        else args.deterministic
    )
    result = agent.evaluate(args.episodes, deterministic=deterministic, seed=args.seed)
    if args.video:
        from pgrad.video import record

        videos = record(agent, Path(args.video), min(args.episodes, 3), deterministic, args.seed)
        print(f"recorded {len(videos)} episode(s) in {args.video}", file=sys.stderr)
    if args.json:
        keys = list(_EVAL_KEYS)
        if _raw_part(result):
            keys += _RAW_KEYS
        print(json.dumps({**{k: result[k] for k in keys}, **_extras(result)}))
    else:
        print(
            f"{state.get('env_id')}: mean return {result['mean_return']:.2f} ± "
            f"{result['std_return']:.2f}{_raw_part(result)}, mean length "
            f"{result['mean_length']:.1f}{_extras_text(result)} over "
            f"{result['episodes']} episodes ({'deterministic' if deterministic else 'stochastic'})"
        )
    return 0


def _raw_part(result: dict) -> str:
    """``", raw return M ± S"`` where a reward wrapper made an evaluation's returns differ from
    the environment's own, else empty."""
    from pgrad.episode_stats import returns_differ

    if "raw_returns" not in result or not returns_differ(result["raw_returns"], result["returns"]):
        return ""
    return f", raw return {result['mean_raw_return']:.2f} ± {result['std_raw_return']:.2f}"


def cmd_list(args: argparse.Namespace) -> int:
    from pgrad.agents import GENERIC, PRESETS, VARIANTS
    from pgrad.envs import ENV_IDS
    from pgrad.envs_util import numpy_vectorised

    print("agents:")
    for name, cls in GENERIC.items():
        print(f"  {name:<14} {((cls.__doc__ or '').strip().splitlines() or [''])[0]}")
    tuned = [
        ("presets (pgrad train ENV_ID picks these):", PRESETS.values()),
        ("other tuned agents (pgrad train ENV_ID --agent NAME):", VARIANTS.values()),
    ]
    for heading, classes in tuned:
        if classes:
            print(heading)
        for cls in classes:
            changed = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
            print(f"  {cls.name:<16} {cls.env_id:<24} {changed}")
    print("pgrad environments:")
    for env_id in ENV_IDS:
        print(f"  {env_id}")
    print("numpy-vectorised environments (vectorization=auto uses them):")
    for env_id, entry_point in numpy_vectorised().items():
        source = "pgrad" if entry_point.startswith("pgrad.") else "gymnasium"
        print(f"  {env_id:<24} {source}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pgrad.plot import plot_runs

    output = Path(args.output)
    if output.is_dir() or args.output.endswith(("/", os.sep)):
        raise UsageError(f"--output {args.output} names a directory, not an image file")
    if not output.suffix:  # matplotlib would add it: name the file it writes
        output = output.with_name(output.name + ".png")
    _check_image_format(output)
    _check_creatable(output.parent, "output directory")
    with _removed_on_failure(output.parent):  # a file name too long fails only at savefig
        out, skipped = plot_runs(
            [Path(d) for d in args.run_dirs], output, args.tag, args.smooth, args.ci
        )
    for _, why in skipped:
        print(f"pgrad: warning: {why}; left out of the plot", file=sys.stderr)
    print(f"wrote {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pgrad.compare import compare, report

    result = compare(args.glob_a, args.glob_b, args.tag, args.last)
    print(report(result, args.glob_a, args.glob_b))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    try:
        import optuna
    except ImportError:
        raise UsageError("pgrad tune needs Optuna: pip install 'pgrad[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # tune prints one line per trial itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    from pgrad.envs_util import find_spec
    from pgrad.search_space import apply_overrides, default_space, load_space_file
    from pgrad.tune import TuneError, TuneSettings, default_storage, tune, write_agent_file

    for flag, value in (
        ("--trials", args.trials),
        ("--steps-per-trial", args.steps_per_trial),
        ("--evals", args.evals),
        ("--eval-episodes", args.eval_episodes),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    check_seed(args.seed, "--seed")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.study):
        raise UsageError(
            f"--study must be a plain name (letters, digits, . _ -), got {args.study!r}"
        )
    find_spec(args.env_id)
    cls = resolve_agent(args.agent, args.env_id)
    base = cls.default_config().replace(
        env_id=args.env_id, total_steps=args.steps_per_trial, seed=args.seed
    )
    space = default_space(base, cls.algorithm_class)
    if args.space:
        space = apply_overrides(space, load_space_file(Path(args.space)), args.space)
    if not space.params:
        raise UsageError("the search space is empty: every parameter is fixed or dropped")
    logdir = Path(args.logdir)
    out = Path(args.out) if args.out else Path(f"{args.study}_tuned.py")
    settings = TuneSettings(
        agent_cls=cls,
        agent_spec=args.agent or cls.spec(),
        base=base,
        space=space,
        trials=args.trials,
        steps_per_trial=args.steps_per_trial,
        study=args.study,
        storage=args.storage or default_storage(logdir, args.study),
        logdir=logdir,
        seed=args.seed,
        evals=args.evals,
        eval_episodes=args.eval_episodes,
    )
    # folders this command creates, removed again if the study cannot be opened
    created = [d for d in (logdir, settings.study_dir) if not d.exists()]
    _check_creatable(logdir, "log directory")
    settings.study_dir.mkdir(parents=True, exist_ok=True)
    try:
        print(
            f"study {args.study}: {cls.name} on {args.env_id}, {args.trials} trials of "
            f"{args.steps_per_trial:,} steps; searching"
        )
        for line in space.describe():
            print(f"  {line}")
        result = tune(settings)
    except ValueError:
        for folder in reversed(created):
            if not any(folder.iterdir()):
                folder.rmdir()  # bad input leaves nothing behind
        raise
    except TuneError as err:
        print(f"pgrad: error: {first_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            "pgrad: interrupted; a stopped trial is queued to run again: run the same command "
            "to continue the study",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(
        f"best: trial {result.number}, score {result.score:.4g} (of {result.complete} complete, "
        f"{result.pruned} pruned, {result.failed} failed)"
    )
    for name, value in result.params.items():
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        print(f"  {name} = {shown}")
    print(f"run directory: {result.run_dir}")
    path = write_agent_file(out, settings, result, args.study)
    print(f"wrote {path}; train it with: pgrad train --agent {path}:Tuned")
    return 0


def _check_creatable(folder: Path, what: str) -> None:
    """Raise ``UsageError`` unless ``folder`` exists as a writable directory or can be created.

    Missing folders are created to let the system answer (name too long, a file in the way, no
    permission, read-only disk) and removed again: refused input leaves nothing behind, and the
    command creates them for real once everything else was checked.
    """
    missing: list[Path] = []
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {what} {folder}: {err.strerror}") from None
    finally:
        for path in missing:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
    if not missing and not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {folder} is not writable")


@contextlib.contextmanager
def _removed_on_failure(folder: Path) -> Iterator[None]:
    """Remove the folders up to ``folder`` that the block created, if it raises."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for path in missing:  # deepest first; a folder something was written to stays
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _check_image_format(output: Path) -> None:
    """Raise ``UsageError`` unless matplotlib can write ``output``'s suffix (none: PNG)."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = output.suffix[1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise UsageError(f"cannot write .{suffix} images; use one of: {', '.join(sorted(formats))}")


def _check_memory(cls: type, config: Config, train: bool = True, episodes: int = 0) -> None:
    """Refuse training ``config`` and evaluating ``episodes`` when either cannot fit in memory.

    Makes one environment to learn its spaces and size. A large run that fits is announced on
    stderr, since building and stepping it takes a while.
    """
    from pgrad.agent import Agent
    from pgrad.envs_util import EnvError, probe_env
    from pgrad.memory import (
        LARGE_BYTES,
        LARGE_NUM_ENVS,
        available_memory,
        check_memory,
        estimate_memory,
        format_bytes,
    )

    try:
        footprint = probe_env(config.env_id, config.max_episode_steps, config.env_kwargs)
    except EnvError:
        if cls.make_env is Agent.make_env:
            raise
        return  # the agent makes its environments its own way: it may know this id
    available = available_memory()
    checks = [(estimate_memory(config, footprint), "building", None)] if train else []
    if episodes:  # evaluation makes one environment per episode
        estimate = estimate_memory(config, footprint, learner=False, num_envs=episodes)
        advice = "lower --episodes" if not train else "lower eval_episodes"
        checks.append((estimate, "evaluating on", advice))
    for estimate, _, advice in checks:
        check_memory(estimate, available, advice)
    for estimate, doing, _ in checks:
        if estimate.total >= LARGE_BYTES or estimate.num_envs >= LARGE_NUM_ENVS:
            share = f" of the {format_bytes(available)} available" if available else ""
            print(f"pgrad: {doing} {estimate.describe()}{share}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")
    # torch warns about a foreign file's pickle protocol just before the safe loader refuses
    # the file; the refusal is the one line to print.
    warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
    from pgrad import checkpoint as ckpt
    from pgrad.errors import EnvError

    commands = {
        "train": cmd_train,
        "eval": cmd_eval,
        "list": cmd_list,
        "plot": cmd_plot,
        "compare": cmd_compare,
        "tune": cmd_tune,
    }
    if os.environ.get("PGRAD_DEBUG"):
        return commands[args.command](args)
    try:
        return commands[args.command](args)
    except UsageError as err:  # ours: quotes what the user gave, newlines included
        _fail(str(err))
    except (EnvError, ckpt.CheckpointError, ValueError, TypeError) as err:
        _fail(first_line(err))
    except OSError as err:  # a path the user gave: missing, not a folder, too long, read-only
        _fail(
            f"{err.strerror}: {err.filename}" if err.strerror and err.filename else first_line(err)
        )
    except MemoryError:
        _fail("out of memory; lower num_envs, num_steps, max_episode_steps or hidden")
    except KeyboardInterrupt:
        print("pgrad: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
