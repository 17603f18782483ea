"""The ``pgrad`` command: ``train``, ``eval``, ``list`` and ``plot``.

The CLI only builds a config and starts an agent. Every error a user can cause (an unknown
environment, a malformed flag, a bad checkpoint) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from pgrad.config import Config, field_docs
from pgrad.errors import UsageError, first_line

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')")


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"pgrad: error: {message}", file=sys.stderr)
    raise SystemExit(code)


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
    train.add_argument("--seed", type=_int_arg, default=None, help="random seed (default: 1)")
    train.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="torch device (default: auto)",
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
        "--logdir", default="runs", help="root folder of run directories (default: runs)"
    )
    train.add_argument(
        "--run-name",
        default=None,
        help="run directory name under --logdir (default: <env>__<agent>__<seed>__<time>)",
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
    ev.add_argument(
        "--stochastic",
        action="store_true",
        help="sample actions instead of taking the most likely one",
    )
    ev.add_argument(
        "--seed",
        type=_int_arg,
        default=None,
        help="seed of the evaluation episodes (default: the run's seed + 10000)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument(
        "--agent",
        default=None,
        help="agent class to rebuild (needed for agents defined in your own file)",
    )
    ev.add_argument(
        "--video",
        default=None,
        metavar="DIR",
        help="also record up to 3 episodes as MP4 files in DIR (needs pgrad[video])",
    )

    sub.add_parser("list", help="list agents, presets and pgrad's environments")

    plot = sub.add_parser(
        "plot",
        help="plot learning curves to a PNG",
        description="Plot a TensorBoard tag of one or more runs. Runs that differ "
        "only in seed are drawn as their mean with a min-max band.",
    )
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("-o", "--output", default="curves.png", help="PNG file (default: curves.png)")
    plot.add_argument(
        "--tag",
        default="charts/episodic_return",
        help="scalar tag (default: charts/episodic_return)",
    )
    return parser


def _int_arg(text: str) -> int:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


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
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise UsageError(f"cannot import agent module {where!r}: {err}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise UsageError(f"{spec} is not a pgrad.Agent subclass")
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
    config = cls.default_config().with_overrides(args.overrides).replace(**changes)
    run_dir = (
        Path(args.logdir) / args.run_name
        if args.run_name
        else default_run_dir(config.env_id, cls.name, config.seed, args.logdir)
    )
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(
            f"run directory {run_dir} already exists; use --resume {run_dir} or another --run-name"
        )
    _check_writable(Path(args.logdir))
    agent = cls(config, run_dir=run_dir, quiet=args.quiet)
    return _train_and_report(agent, config.total_steps, args.quiet)


def _resume(args: argparse.Namespace) -> int:
    from pgrad import checkpoint as ckpt

    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} does not exist")
    _, state = ckpt.latest_loadable(run_dir / "checkpoints")
    cls = resolve_agent(args.agent or state.get("agent_name"), state.get("env_id"))
    if args.env_id is not None and args.env_id != state.get("env_id"):
        raise UsageError(f"{run_dir} trains {state.get('env_id')}, not {args.env_id}")
    if args.overrides:
        raise UsageError("--set cannot change a resumed run's config (the run must stay one run)")
    agent = cls.resume(run_dir)
    total = args.total_steps if args.total_steps is not None else agent.config.total_steps
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
        print(
            f"interrupted at step {agent.global_step:,}; checkpoint saved. Resume with: "
            f"pgrad train --resume {agent.run_dir}",
            file=sys.stderr,
        )
        print(f"run directory: {agent.run_dir}")
        return EXIT_INTERRUPTED
    if agent.config.eval_episodes:
        result = agent.evaluate(agent.config.eval_episodes)
        print(
            f"evaluation: mean return {result['mean_return']:.2f} ± {result['std_return']:.2f} "
            f"over {result['episodes']} episodes (deterministic)"
        )
    print(f"run directory: {agent.run_dir}")
    return 0


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
    try:
        agent = cls.for_evaluation(state)
    except EnvError as err:
        if args.agent or state.get("agent_name") in AGENTS:
            raise
        raise UsageError(
            f"{err}; the run was trained by agent {state.get('agent_name')!r}, "
            "unknown here: pass --agent path/file.py:Class"
        ) from None
    result = agent.evaluate(args.episodes, deterministic=not args.stochastic, seed=args.seed)
    if args.video:
        from pgrad.video import record

        videos = record(
            agent, Path(args.video), min(args.episodes, 3), not args.stochastic, args.seed
        )
        print(f"recorded {len(videos)} episode(s) in {args.video}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {k: result[k] for k in ("episodes", "mean_return", "std_return", "mean_length")}
            )
        )
    else:
        print(
            f"{state.get('env_id')}: mean return {result['mean_return']:.2f} ± "
            f"{result['std_return']:.2f}, mean length {result['mean_length']:.1f} over "
            f"{result['episodes']} episodes ({'stochastic' if args.stochastic else 'deterministic'})"
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from pgrad.agents import GENERIC, PRESETS, VARIANTS
    from pgrad.envs import ENV_IDS

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
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pgrad.plot import plot_runs

    out = plot_runs([Path(d) for d in args.run_dirs], Path(args.output), args.tag)
    print(f"wrote {out}")
    return 0


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create log directory {folder}: {err.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"log directory {folder} is not writable")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")
    from pgrad import checkpoint as ckpt
    from pgrad.errors import EnvError

    commands = {"train": cmd_train, "eval": cmd_eval, "list": cmd_list, "plot": cmd_plot}
    if os.environ.get("PGRAD_DEBUG"):
        return commands[args.command](args)
    try:
        return commands[args.command](args)
    except (UsageError, EnvError, ckpt.CheckpointError, ValueError, TypeError) as err:
        _fail(first_line(err))
    except (PermissionError, FileNotFoundError, IsADirectoryError) as err:
        _fail(f"{err.strerror}: {err.filename}" if err.filename else str(err))
    except KeyboardInterrupt:
        print("pgrad: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
