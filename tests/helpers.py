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


def pgrad(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        pgrad_cmd(*args),
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
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
