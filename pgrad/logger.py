"""Logging: TensorBoard scalars against global environment steps, and the console progress.

A thin layer over ``torch.utils.tensorboard.SummaryWriter``. Tags are grouped as ``charts/``,
``losses/`` and ``diagnostics/``; metrics are written once per update, never per step.

On a terminal the console shows a ``rich`` progress bar (steps, SPS, recent return); otherwise
(a pipe, a CI log) it prints a plain line every ``print_every`` seconds.

Where a reward wrapper makes the training returns differ from the environment's own
(``pgrad.episode_stats``), ``charts/episodic_return_raw`` is logged beside
``charts/episodic_return``, and the console shows both, from the first update in which an
episode's two returns differ; a run without such a wrapper writes no raw tag.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from pgrad.episode_stats import returns_differ


class Logger:
    """Writes scalars to ``run_dir`` and reports progress on the console."""

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int = 0,
        quiet: bool = False,
        print_every: float = 10.0,
        purge_step: int | None = None,
    ) -> None:
        # purge_step drops events a crashed run wrote after its last checkpoint, so a resumed
        # run continues one curve instead of drawing a second one over the same steps.
        # imported here: acting-only agents (Ray workers, evaluation) never log
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)
        self.total_steps = total_steps
        self.quiet = quiet
        self.print_every = print_every
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.recent_raw_returns: deque[float] = deque(maxlen=20)
        self.log_raw = False
        """Raw returns have differed from the training ones: log them from now on."""
        self._last_print = time.monotonic()
        self._progress = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._progress.add_task(
                "train", total=total_steps, completed=start_step, info=""
            )
            self._progress.start()

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def episodes(
        self,
        returns: list[float],
        lengths: list[int],
        step: int,
        raw_returns: list[float] | None = None,
    ) -> None:
        """Log the mean return and length of the episodes that ended in this update.

        ``raw_returns`` (``Rollout.raw_episode_returns``: the environment's own returns of the
        same episodes, NaN where unknown) are logged once some episode's differs from its
        training return, and in every update after that, so the raw curve has no gaps.
        """
        if not returns:
            return
        self.recent_returns.extend(returns)
        self.writer.add_scalar("charts/episodic_return", sum(returns) / len(returns), step)
        self.writer.add_scalar("charts/episodic_length", sum(lengths) / len(lengths), step)
        if raw_returns and not self.log_raw:
            self.log_raw = returns_differ(raw_returns, returns)
        known = [r for r in raw_returns or () if np.isfinite(r)]
        self.recent_raw_returns.extend(known)  # the same recent episodes as recent_returns
        if self.log_raw and known:
            self.writer.add_scalar("charts/episodic_return_raw", sum(known) / len(known), step)

    def episode_infos(self, infos: dict[str, list[float]], step: int) -> None:
        """Log the mean of each episode-end info entry as ``charts/<key>`` (``charts/exact``)."""
        for key, values in infos.items():
            if values:
                self.writer.add_scalar(f"charts/{key}", sum(values) / len(values), step)

    def progress(self, step: int, sps: float) -> None:
        recent = (
            f"return {sum(self.recent_returns) / len(self.recent_returns):8.2f}"
            if self.recent_returns
            else "return      n/a"
        )
        if self.log_raw and self.recent_raw_returns:
            raw = self.recent_raw_returns
            recent += f"  raw {sum(raw) / len(raw):8.2f}"
        if self._progress is not None:
            self._progress.update(
                self._task, completed=min(step, self.total_steps), info=f"{sps:9,.0f} SPS  {recent}"
            )
        elif not self.quiet and time.monotonic() - self._last_print >= self.print_every:
            self._last_print = time.monotonic()
            print(f"step {step:>10,}/{self.total_steps:,}  {sps:9,.0f} SPS  {recent}", flush=True)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.writer.close()
