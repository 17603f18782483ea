"""Shared test helpers: running the CLI in a subprocess, polling, reading TensorBoard scalars."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pgrad_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pgrad.cli", *args]


def pgrad(
    *args: str, cwd: Path, timeout: float = 300, address_space: int | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m pgrad.cli *args``; ``address_space`` caps its memory (``RLIMIT_AS``)."""
    env = dict(os.environ)

    def limit_memory() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return subprocess.run(
        pgrad_cmd(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit_memory if address_space else None,
    )


def popen_pgrad(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        pgrad_cmd(*args),
        cwd=cwd,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pgrad_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """Run ``pgrad.cli.main`` in this process (faster than a subprocess), as a finished process."""
    from pgrad.cli import main

    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["pgrad", *args], code, out, err)


def wait_for(
    condition: Callable[[], object],
    what: str,
    timeout: float = 120,
    proc: subprocess.Popen | None = None,
) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` on timeout or if ``proc`` ends.

    A process that exits before the condition holds fails at once, with its output.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def run_dir_of(result: subprocess.CompletedProcess, cwd: Path) -> Path:
    """The run directory that ``pgrad train`` names on its last line of stdout."""
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run directory: "), result.stdout
    return cwd / last.removeprefix("run directory: ")


def assert_no_runs(cwd: Path) -> None:
    """Nothing was written under ``cwd/runs``."""
    runs = cwd / "runs"
    assert not runs.exists() or not any(runs.iterdir()), sorted(runs.rglob("*"))


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str, code: int = 2) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("pgrad: error:") and fragment in lines[0], lines[0]


def all_scalars(run_dir: Path, skip: tuple[str, ...] = ("charts/SPS",)) -> dict[str, list]:
    """Every scalar tag of a run as ``{tag: [(step, value), ...]}`` (timing tags skipped).

    TensorBoard's reader applies purges: a resumed run's ``purge_step`` drops the points that
    the earlier run wrote at or after it.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag not in skip
    }


# -- a fork server: the CLI in fresh processes without paying for the imports each time ----------
_SERVER = r"""
import json, os, resource, runpy, signal, sys, time, traceback, warnings
warnings.simplefilter("ignore")
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: F401  (pgrad plot imports it)
import pgrad, pgrad.agents, pgrad.checkpoint, pgrad.envs_util, pgrad.memory  # noqa: F401
replies = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            replies.close()
            os.setpgid(0, 0)
            for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            os.chdir(req["cwd"])
            if req["address_space"]:
                limit = req["address_space"]
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            sys.argv = ["pgrad", *req["args"]]
            try:
                runpy.run_module("pgrad.cli", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (exit.code is not None)
            except BaseException:
                traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + req["timeout"]
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.killpg(pid, signal.SIGKILL)
            done, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.005)
    replies.write(json.dumps({
        "returncode": os.waitstatus_to_exitcode(status),
        "max_rss": usage.ru_maxrss * 1024,
        "timed_out": timed_out,
    }) + "\n")
    replies.flush()
"""


class ForkedCli:
    """Runs ``pgrad`` commands in processes forked from a server that has imported pgrad.

    A fresh interpreter spends seconds importing torch; a fork of one that already did starts
    the command at once. Each command still gets its own process, working directory, exit code,
    stdout and stderr, and runs ``pgrad.cli`` as ``__main__`` exactly as ``python -m pgrad.cli``
    does, so an uncaught exception prints its traceback and exits with 1.
    """

    def __init__(self) -> None:
        import json
        import tempfile

        self._json = json
        self._scratch = Path(tempfile.mkdtemp(prefix="pgrad-forked-"))
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        env.pop("PGRAD_DEBUG", None)
        self._server = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def run(
        self, *args: str, cwd: Path, timeout: float = 120, address_space: int | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``pgrad *args`` in ``cwd``; ``address_space`` caps its memory (``RLIMIT_AS``).

        The result's ``max_rss`` is the command's peak resident memory in bytes (the pages it
        shares with the server included) and ``timed_out`` whether it was killed at ``timeout``.
        """
        assert self._server.stdin is not None and self._server.stdout is not None
        out, err = self._scratch / "stdout", self._scratch / "stderr"
        request = {
            "args": list(args),
            "cwd": str(cwd),
            "stdout": str(out),
            "stderr": str(err),
            "timeout": timeout,
            "address_space": address_space,
        }
        self._server.stdin.write(self._json.dumps(request) + "\n")
        self._server.stdin.flush()
        reply = self._json.loads(self._server.stdout.readline())
        result = subprocess.CompletedProcess(
            ["pgrad", *args],
            reply["returncode"],
            out.read_text(errors="backslashreplace"),
            err.read_text(errors="backslashreplace"),
        )
        result.max_rss = reply["max_rss"]  # type: ignore[attr-defined]
        result.timed_out = reply["timed_out"]  # type: ignore[attr-defined]
        return result

    def close(self) -> None:
        import shutil

        if self._server.stdin is not None:
            self._server.stdin.close()
        self._server.wait(timeout=30)
        shutil.rmtree(self._scratch, ignore_errors=True)
