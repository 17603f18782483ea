"""What a practitioner meets in the first hour: resuming a run of their own agent file,
extending a finished run, flags that cannot change a resumed run, modules from the current
folder, Gymnasium's ``module:Env-v0`` ids."""

from __future__ import annotations

import json
import shlex
import signal
import time

import numpy as np

from pgrad.plot import read_scalars

from helpers import assert_clean_error, pgrad, popen_pgrad

AGENT_FILE = """
import pgrad


class MyAgent(pgrad.A2C):
    name = "mine"
    defaults = {"num_envs": 4, "num_steps": 8, "hidden": (16,)}
"""


def test_the_printed_resume_command_works_verbatim_for_an_agent_file(tmp_path):
    (tmp_path / "my_file.py").write_text(AGENT_FILE)
    proc = popen_pgrad(
        "train",
        "CartPole-v1",
        "--agent",
        "my_file.py:MyAgent",
        "--total-steps",
        "10000000",
        "--run-name",
        "mine",
        cwd=tmp_path,
    )
    events = tmp_path / "runs" / "mine"
    deadline = time.monotonic() + 120
    while not any(events.glob("events.out.tfevents.*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start in 120 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    hint = err.split("Resume with: ")[1].splitlines()[0]
    assert "--agent" in hint and "my_file.py:MyAgent" in hint, hint
    args = shlex.split(hint)[1:] + ["--total-steps", "64"]
    (tmp_path / "elsewhere").mkdir()  # the command works from another folder too
    resumed = pgrad(*args[:2], str(events.resolve()), *args[3:], cwd=tmp_path / "elsewhere")
    assert resumed.returncode == 0, resumed.stderr
    # without --agent: one line that gives the command
    bare = pgrad("train", "--resume", "runs/mine", cwd=tmp_path)
    assert_clean_error(bare, "resume with: pgrad train --resume runs/mine --agent ")


def test_extending_a_finished_run_rescales_its_schedules(tmp_path):
    first = pgrad(
        "train",
        "--agent",
        "a2c",
        "--total-steps",
        "2048",
        "--num-envs",
        "4",
        "--set",
        "learning_rate_final=0",
        "--set",
        "num_steps=16",
        "--run-name",
        "r",
        "--quiet",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    run = tmp_path / "runs" / "r"
    more = pgrad("train", "--resume", str(run), "--total-steps", "4096", "--quiet", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "extending" in more.stderr and "4,096" in more.stderr
    assert json.loads((run / "config.json").read_text())["total_steps"] == 4096
    steps, lr = read_scalars(run, "charts/learning_rate")
    after = lr[steps > 2048]
    # not trained at a learning rate of 0: half way through the new total, about half of 1e-3
    assert after.size and after[0] > 4e-4 and np.all(np.diff(after) <= 0), after
    assert np.all(np.diff(steps) > 0)  # one curve


def test_flags_that_would_change_a_resumed_run_are_refused(tmp_path):
    first = pgrad(
        "train",
        "--agent",
        "a2c",
        "--total-steps",
        "256",
        "--num-envs",
        "4",
        "--run-name",
        "r",
        "--quiet",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    for flag, value in (("--num-envs", "8"), ("--seed", "3"), ("--set", "gamma=0.9")):
        result = pgrad("train", "--resume", "runs/r", flag, value, cwd=tmp_path)
        assert_clean_error(result, f"{flag} cannot change a resumed run")


def test_agent_modules_are_found_in_the_current_folder(tmp_path):
    (tmp_path / "my_module.py").write_text(AGENT_FILE)
    result = pgrad(
        "train",
        "CartPole-v1",
        "--agent",
        "my_module:MyAgent",
        "--total-steps",
        "64",
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr


ENV_MODULE = """
import gymnasium as gym
import numpy as np


class Echo(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, horizon=3):
        self.horizon = horizon

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 1.0, self.t >= self.horizon, False, {}


gym.register(id="Echo-v0", entry_point=Echo)
"""


def test_gymnasium_module_ids_and_env_kwargs(tmp_path):
    (tmp_path / "my_envs.py").write_text(ENV_MODULE)
    result = pgrad(
        "train",
        "my_envs:Echo-v0",
        "--agent",
        "reinforce",
        "--env-kwargs",
        "horizon=7",
        "--total-steps",
        "64",
        "--num-envs",
        "2",
        "--run-name",
        "e",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "mean return 7.00" in result.stdout, result.stdout  # every episode lasts 7 steps
    config = json.loads((tmp_path / "runs" / "e" / "config.json").read_text())
    assert config["env_kwargs"] == {"horizon": 7} and config["env_id"] == "my_envs:Echo-v0"
    bad = pgrad("train", "CartPole-v1", "--env-kwargs", "not a pair", cwd=tmp_path)
    assert_clean_error(bad, "--env-kwargs expects key=value")


def test_checkpoint_messages_say_what_is_wrong(tmp_path):
    import pytest
    import torch

    from pgrad import A2C
    from pgrad import checkpoint as ckpt
    from pgrad.errors import CheckpointError

    agent = A2C(num_envs=2, quiet=True)
    data = agent.save(tmp_path / "a.pt").read_bytes()
    cases = {
        "truncated.pt": (data[: len(data) // 2], "truncated or damaged"),
        "text.pt": (b"hello, I am a text file\n", "not a torch archive"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            ckpt.load(tmp_path / name)
        result = pgrad("eval", name, cwd=tmp_path)
        assert_clean_error(result, message)
    wider = A2C(num_envs=2, quiet=True, hidden=(32,))
    with pytest.raises(
        CheckpointError, match=r"net.0.weight: checkpoint \[64, 4\], agent \[32, 4\]"
    ):
        wider.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True))
    agent.envs.close()
    wider.envs.close()
