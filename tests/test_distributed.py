"""Ray rollout workers: merging, seeds, the on-policy check, faults, learning parity, the CLI.

The pure helpers and the "no Ray" path run everywhere; every test that needs Ray asks for the
``ray_cluster`` fixture, which skips when Ray is not installed and otherwise starts one local
instance (2 CPUs) for the whole module.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pgrad import A2C
from pgrad.agents import CartPole
from pgrad.checkpoint import latest_loadable, list_checkpoints
from pgrad.distributed import (
    CONNECT_TIMEOUT_S,
    RAY_MISSING,
    MergedRollout,
    RayCollector,
    RolloutWorker,
    StaleRolloutError,
    check_versions,
    init_ray,
    merge_rollouts,
    split_reset_seeds,
)
from pgrad.envs_util import derive_seed
from pgrad.logger import Logger
from pgrad.rollout import NonFiniteError, Rollout

from helpers import (
    ROOT,
    assert_clean_error,
    assert_no_runs,
    pgrad,
    pgrad_cmd,
    run_dir_of,
    wait_for,
)


def small_rollout(T: int, N: int, fill: float, version: int = 0) -> Rollout:
    """A hand-made rollout: every reward is ``fill``, the last step terminates env 0."""
    terminated = torch.zeros(T, N, dtype=torch.bool)
    terminated[-1, 0] = True
    return Rollout(
        obs=torch.full((T + 1, N, 3), fill),
        actions=torch.arange(T * N).reshape(T, N),
        rewards=torch.full((T, N), fill),
        terminated=terminated,
        truncated=torch.zeros(T, N, dtype=torch.bool),
        mask=torch.ones(T, N, dtype=torch.bool),
        episode_returns=[fill * T],
        episode_lengths=[T],
        weights_version=version,
    )


# -- pure helpers (no Ray needed) -------------------------------------------------------------------
def test_merge_concatenates_along_envs_and_pads_short_episodes():
    long, short = small_rollout(4, 2, 1.0), small_rollout(2, 3, 2.0)
    merged = merge_rollouts([long, short])
    assert isinstance(merged, MergedRollout)
    assert merged.obs.shape == (5, 5, 3) and merged.actions.shape == (4, 5)
    for name in ("rewards", "terminated", "truncated", "mask"):
        assert getattr(merged, name).shape == (4, 5), name
    # worker 0's columns are untouched
    assert torch.equal(merged.rewards[:, :2], long.rewards)
    assert torch.equal(merged.obs[:, :2], long.obs)
    # worker 1 padded from T=2 to T=4: masked, no reward, no episode end, last obs/action repeated
    assert merged.mask[:2, 2:].all() and not merged.mask[2:, 2:].any()
    assert (merged.rewards[2:, 2:] == 0).all()
    assert not merged.terminated[2:, 2:].any() and not merged.truncated[2:, 2:].any()
    assert merged.terminated[1, 2] and merged.terminated[3, 0]
    assert torch.equal(merged.obs[3:, 2:], short.obs[-1:].expand(2, 3, 3))
    assert torch.equal(merged.actions[2:, 2:], short.actions[-1:].expand(2, 3))
    # steps actually taken: 4*2 + 2*3, not the padded 4*5
    assert merged.num_steps == 14
    assert merged.episode_returns == [4.0, 4.0] and merged.episode_lengths == [4, 2]


def test_merge_of_equal_lengths_is_a_plain_concatenation():
    a, b = small_rollout(3, 2, 1.0), small_rollout(3, 2, 5.0)
    merged = merge_rollouts([a, b])
    assert torch.equal(merged.rewards, torch.cat([a.rewards, b.rewards], dim=1))
    assert merged.num_steps == merged.rewards.numel() == 12


def test_merge_refuses_mismatched_shapes():
    odd = small_rollout(3, 2, 1.0)
    odd.obs = torch.zeros(4, 2, 5)
    with pytest.raises(ValueError, match="differ in shape"):
        merge_rollouts([small_rollout(3, 2, 1.0), odd])
    with pytest.raises(ValueError, match="at least one"):
        merge_rollouts([])


def test_stale_weights_version_is_refused():
    check_versions([small_rollout(2, 1, 0.0, version=7)] * 2, expected=7)
    with pytest.raises(StaleRolloutError, match=r"version 7 .*worker 1: version 6"):
        check_versions(
            [small_rollout(2, 1, 0.0, version=7), small_rollout(2, 1, 0.0, version=6)], expected=7
        )


def test_reset_seeds_are_split_or_derived_per_worker():
    assert split_reset_seeds([1, 2, 3, 4], workers=2, envs_per_worker=2) == [[1, 2], [3, 4]]
    per_worker = split_reset_seeds([5, 5, 9, 9], workers=2, envs_per_worker=4)
    assert per_worker[0] != per_worker[1]
    for seeds in per_worker:  # groups that share a start keep sharing it
        assert seeds[0] == seeds[1] and seeds[2] == seeds[3] and seeds[0] != seeds[2]
    assert split_reset_seeds(3, 2, 8) == [derive_seed(3, 0), derive_seed(3, 1)]
    assert split_reset_seeds(None, 3, 8) == [None, None, None]
    with pytest.raises(ValueError, match="3 reset seeds"):
        split_reset_seeds([1, 2, 3], 2, 2)


def test_workers_without_ray_fail_with_one_line(tmp_path):
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('ray is not installed (test)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)])}

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgrad.cli",
            "train",
            "--workers",
            "2",
            "--total-steps",
            "100",
            "--logdir",
            "runs",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pgrad[ray]" in lines[0], result.stderr
    assert lines[0] == f"pgrad: error: {RAY_MISSING}"
    assert_no_runs(tmp_path)


# -- with Ray ---------------------------------------------------------------------------------------
def test_cli_trains_with_two_workers(tmp_path):
    pytest.importorskip("ray")
    result = pgrad(
        "train",
        "CartPole-v1",
        "--workers",
        "2",
        "--total-steps",
        "5000",
        "--quiet",
        "--logdir",
        "runs",
        cwd=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert list((run_dir_of(result, tmp_path) / "checkpoints").glob("step_*.pt"))


@pytest.mark.parametrize(
    "address, fragment",
    [
        ("nonsense", "must be 'auto' or HOST:PORT"),
        ("127.0.0.1:1", "cannot reach a Ray cluster at 127.0.0.1:1"),
        # TEST-NET-1 (RFC 5737) is never routed: a host that does not answer at all
        ("192.0.2.1:6379", "cannot reach a Ray cluster at 192.0.2.1:6379"),
    ],
)
def test_a_bad_ray_address_fails_in_seconds_with_one_line(tmp_path, address, fragment):
    """Ray itself retries an unreachable address for minutes; pgrad checks it first."""
    pytest.importorskip("ray")
    result = pgrad(
        "train",
        "CartPole-v1",
        "--workers",
        "2",
        "--ray-address",
        address,
        "--total-steps",
        "100",
        "--logdir",
        "runs",
        cwd=tmp_path,
        timeout=60,
    )
    assert_clean_error(result, fragment)
    assert_no_runs(tmp_path)
    # "In seconds" is about the address, not the command's start-up (imports alone can take
    # longer on a busy machine): time what the command runs to join a cluster.
    start = time.monotonic()
    with pytest.raises(ValueError, match=re.escape(fragment)):
        init_ray(address)
    assert time.monotonic() - start < CONNECT_TIMEOUT_S + 2


def test_a_file_agent_reaches_the_workers(tmp_path):
    """``--agent path/file.py:Class`` exists only in the driver; the workers get it by value."""
    pytest.importorskip("ray")
    (tmp_path / "my_agent.py").write_text(
        "from pgrad import A2C\n\n\n"
        "class Mine(A2C):\n    name = 'mine'\n    defaults = {**A2C.defaults, 'num_envs': 2}\n"
    )
    result = pgrad(
        "train",
        "CartPole-v1",
        "--agent",
        f"{tmp_path / 'my_agent.py'}:Mine",
        "--workers",
        "2",
        "--total-steps",
        "512",
        "--set",
        "eval_episodes=0",
        "--quiet",
        "--logdir",
        "runs",
        cwd=Path(tmp_path),
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert "__mine__" in result.stdout.strip().splitlines()[-1]


def test_ctrl_c_checkpoints_and_the_workers_survive_it(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the update in flight
    finishes (no worker dies), the run checkpoints and exits 130, and no Ray process is left."""
    pytest.importorskip("ray")
    proc = subprocess.Popen(
        pgrad_cmd(
            "train",
            "CartPole-v1",
            "--workers",
            "2",
            "--total-steps",
            "100000000",
            "--quiet",
            "--logdir",
            "runs",
            "--run-name",
            "ctrl-c",
            "--set",
            "checkpoint_every=1024",
        ),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    run_dir = tmp_path / "runs" / "ctrl-c"
    try:
        # the first checkpoint: the workers are up and updates are under way
        wait_for(lambda: list_checkpoints(run_dir / "checkpoints"), "a checkpoint", 180, proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "died while collecting" not in err, err
    stopped_at = int(re.search(r"interrupted at step ([\d,]+)", err)[1].replace(",", ""))
    _, state = latest_loadable(run_dir / "checkpoints")
    assert state["global_step"] == stopped_at >= 1024, "Ctrl-C must checkpoint where it stopped"
    assert out.strip().splitlines()[-1] == f"run directory: {Path('runs') / 'ctrl-c'}"
    # Ray's processes share the run's process group
    wait_for(lambda: not _group_alive(proc.pid), "Ray's processes to exit after the run", 30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_collector_refuses_stale_rollouts_and_passes_worker_errors_on(ray_cluster):
    class BrokenWorker(RolloutWorker):
        """4 steps: reports the previous weights version, as a worker that missed a broadcast
        would; 5 steps: meets a NaN observation."""

        def collect_steps(self, weights, version, num_steps, step_offset):
            if num_steps == 5:
                raise NonFiniteError("non-finite observation from environment 1 at step 7")
            rollout = super().collect_steps(weights, version, num_steps, step_offset)
            rollout.weights_version = version - 1
            return rollout

    agent = A2C(num_envs=2, num_steps=4, quiet=True)
    agent.config = agent.config.replace(workers=2)
    collector = RayCollector(agent, worker_cls=BrokenWorker)
    try:
        with pytest.raises(StaleRolloutError, match="version 0"):
            collector.collect_steps(4)
        # the agent's checkpoint-and-stop path catches NonFiniteError: it must arrive as one
        with pytest.raises(NonFiniteError, match="Ray worker 0: non-finite observation"):
            collector.collect_steps(5)
    finally:
        collector.close()
    assert ray_cluster.is_initialized(), "a collector must not shut down a Ray it did not start"


def test_workers_build_acting_only_agents():
    config = A2C.default_config(env_id="CartPole-v1", num_envs=2, workers=2)
    # A worker ignores SIGINT in a Ray actor (its driver decides what Ctrl-C means; the Ctrl-C
    # test shows it); built anywhere else, here in the test process, it leaves SIGINT alone.
    handler = signal.getsignal(signal.SIGINT)
    worker = RolloutWorker(A2C, config, seed=1)
    assert signal.getsignal(signal.SIGINT) == handler
    assert worker.agent.optimizer is None and worker.agent.critic is None
    assert worker.agent.config.workers == 0


def test_workers_started_for_an_agent_that_fails_to_build_are_stopped(ray_cluster):
    """Workers start while the learner builds its networks; a learner that fails frees them."""

    class FailsToBuildItsOptimizer(A2C):  # local: the workers get it by value, and build it
        def make_optimizer(self, params):
            raise ValueError("no optimizer here")

    with pytest.raises(ValueError, match="no optimizer here"):
        FailsToBuildItsOptimizer(env_id="CartPole-v1", workers=2, num_envs=2, quiet=True)
    _wait_until_cpus_free(ray_cluster, 2)
    assert ray_cluster.is_initialized(), "a Ray that the test started stays up"


def _wait_until_cpus_free(ray, cpus: float, timeout_s: float = 60.0) -> None:
    """Ray's resource view is eventually consistent: require ``cpus`` free for a whole second."""
    deadline, free_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= cpus:
            free_since = free_since or time.monotonic()
            if time.monotonic() - free_since >= 1.0:
                return
        else:
            free_since = None
        time.sleep(0.1)
    raise AssertionError(
        f"{cpus} CPUs not free within {timeout_s} s: {ray.available_resources().get('CPU', 0)} free"
    )


def test_a_closed_collector_starts_its_workers_again_on_the_next_collect(ray_cluster):
    agent = A2C(env_id="CartPole-v1", workers=2, num_envs=2, num_steps=4, quiet=True)
    first = agent.collector.collect_steps(4)
    agent.collector.close()
    assert agent.collector.actors == []
    again = agent.collector.collect_steps(4)
    assert len(agent.collector.actors) == 2 and agent.collector.startup_seconds > 0
    assert again.rewards.shape == first.rewards.shape == (4, 4)
    agent.collector.close()


def test_raw_returns_travel_with_worker_rollouts(ray_cluster):
    class Scaled(A2C):  # local: the workers get it by value, and build its wrapped envs
        def make_env(self, num_envs=None):
            from gymnasium.wrappers.vector import TransformReward

            return TransformReward(super().make_env(num_envs), lambda r: 10 * r)

    agent = Scaled(env_id="CartPole-v1", workers=2, num_envs=2, num_steps=64, quiet=True)
    try:
        rollout = agent.collector.collect_steps(64)
    finally:
        agent.collector.close()
        agent.envs.close()
    assert len(rollout.episode_returns) >= 4
    assert [10 * r for r in rollout.raw_episode_returns] == rollout.episode_returns


def test_same_seed_and_workers_give_the_same_run(ray_cluster, tmp_path):
    weights = []
    for run in range(2):
        agent = A2C(
            workers=2,
            num_envs=4,
            num_steps=32,
            total_steps=8 * 256,
            seed=5,
            device="cpu",
            eval_episodes=0,
            run_dir=tmp_path / str(run),
            quiet=True,
        ).train()
        agent.collector.close()
        assert agent.global_step == 8 * 256
        weights.append(agent.policy.state_dict())
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_killed_worker_is_restarted_and_its_partial_rollout_dropped(
    ray_cluster, tmp_path, monkeypatch
):
    updates, num_steps, num_envs = 10, 256, 4
    agent = A2C(
        workers=2,
        num_envs=num_envs,
        num_steps=num_steps,
        seed=3,
        eval_episodes=0,
        total_steps=updates * num_steps * 2 * num_envs,
        run_dir=tmp_path / "run",
        quiet=True,
    )
    collector = agent.collector
    pid_before = ray_cluster.get(collector.actors[0].ping.remote())
    logged: list[float] = []
    original_episodes = Logger.episodes

    def record_episodes(self, returns, lengths, step, *raw):
        logged.extend(returns)
        return original_episodes(self, returns, lengths, step, *raw)

    monkeypatch.setattr(Logger, "episodes", record_episodes)
    rollouts: list[Rollout] = []
    original_collect = agent.collect

    def collect_and_kill():
        if len(rollouts) == 3:  # kill worker 0 while it is collecting the 4th rollout

            def kill():
                time.sleep(0.02)
                ray_cluster.kill(collector.actors[0], no_restart=False)

            threading.Thread(target=kill).start()
        rollouts.append(original_collect())
        return rollouts[-1]

    monkeypatch.setattr(agent, "collect", collect_and_kill)
    close = collector.close
    monkeypatch.setattr(collector, "close", lambda: None)  # keep the workers to inspect them
    with pytest.warns(RuntimeWarning, match="died while collecting"):
        agent.train()
    try:
        pid_after = ray_cluster.get(collector.actors[0].ping.remote())
    finally:
        close()
    assert collector.faults >= 1 and pid_after != pid_before
    # full batches only: every update learned from all 8 envs x 256 steps, counted once
    assert len(rollouts) == agent.updates == updates
    assert all(r.rewards.shape == (num_steps, 2 * num_envs) for r in rollouts)
    assert agent.global_step == sum(r.num_steps for r in rollouts) == updates * num_steps * 8
    # every logged episode ends inside the data it was learned from: none from a dropped rollout
    for r in rollouts:
        ends = int(((r.terminated | r.truncated) & r.mask).sum())
        assert len(r.episode_returns) == ends
    assert logged == [x for r in rollouts for x in r.episode_returns]


@pytest.mark.slow
def test_two_workers_learn_cartpole_like_one_process(ray_cluster, tmp_path):
    """At equal env steps and equal batch (8 envs: 8 in-process, or 2 workers x 4), the CartPole
    preset learns as well with workers as without. Seed noise at 50k steps is large (evaluations
    from 300 to 500 across seeds), so the check is a threshold that both clear, not equality."""
    results: dict[int, list[float]] = {0: [], 2: []}
    for seed in (1, 2):
        for workers, num_envs in ((0, 8), (2, 4)):
            agent = CartPole(
                seed=seed,
                workers=workers,
                num_envs=num_envs,
                total_steps=50_000,
                run_dir=tmp_path / f"{seed}-{workers}",
                quiet=True,
            ).train()
            if workers:
                agent.collector.close()
            assert 50_000 <= agent.global_step < 50_000 + 8 * 500
            results[workers].append(agent.evaluate(episodes=20)["mean_return"])
    assert min(results[0]) >= 250 and min(results[2]) >= 250, results
    assert abs(np.mean(results[2]) - np.mean(results[0])) <= 150, results
