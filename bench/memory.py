"""Memory and disk over a long run: peak RSS at 100k and at 1M CartPole steps, checkpoint folder size.

Usage: python bench/memory.py [--steps 1000000] [--agent cartpole]

A run whose memory grows with its length (rollouts kept alive, logs accumulated in lists) shows a
rising RSS; pgrad's should stay flat: each rollout is freed after its update, episode statistics
are a bounded window, and only the last K checkpoints are kept.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings
from pathlib import Path


def rss_mib() -> float:
    """Current resident set size (from /proc), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--agent", default="cartpole")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from pgrad.checkpoint import list_checkpoints
    from pgrad.cli import resolve_agent

    cls = resolve_agent(args.agent, None)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        agent = cls(
            run_dir=run_dir,
            quiet=True,
            total_steps=args.steps,
            checkpoint_every=50_000,
            learning_rate_final=-1.0,
        )
        marks = sorted({min(100_000, args.steps), args.steps})
        rows, start = [], time.perf_counter()
        for mark in marks:
            agent.train(mark)
            ckpt_dir = run_dir / "checkpoints"
            size = sum(p.stat().st_size for p in ckpt_dir.iterdir()) / 1024
            rows.append(
                (
                    agent.global_step,
                    rss_mib(),
                    len(list_checkpoints(ckpt_dir)),
                    size,
                    time.perf_counter() - start,
                )
            )
        events = sum(p.stat().st_size for p in run_dir.glob("events.*")) / 1024
    print(f"{'steps':>10} {'RSS MiB':>9} {'checkpoints':>12} {'ckpt KiB':>9} {'seconds':>8}")
    for step, rss, count, size, seconds in rows:
        print(f"{step:>10,} {rss:>9.1f} {count:>12} {size:>9.1f} {seconds:>8.1f}")
    growth = rows[-1][1] / rows[0][1] - 1
    print(
        f"RSS growth from {rows[0][0]:,} to {rows[-1][0]:,} steps: {growth:+.1%} "
        f"(target within ±10%); TensorBoard events: {events:.0f} KiB"
    )


if __name__ == "__main__":
    main()
