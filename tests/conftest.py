"""Small Gymnasium environments that cover the action and observation spaces the agents handle."""

from __future__ import annotations

import signal
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.envs.registration import register, registry

from pgrad import Agent

warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")


class TargetEnv(gym.Env):
    """Reward for matching a random target; the action space is given, episodes last 5 steps."""

    def __init__(self, action_space: spaces.Space, dict_obs: bool = False) -> None:
        self.action_space = action_space
        self.size = int(np.prod(action_space.shape)) if action_space.shape else 1
        box = spaces.Box(-1.0, 1.0, (self.size,), np.float32)
        self.observation_space = (
            spaces.Dict({"target": box, "t": spaces.Discrete(6)}) if dict_obs else box
        )
        self.dict_obs = dict_obs

    def _obs(self):
        if self.dict_obs:
            return {"target": self.target, "t": self.t}
        return self.target

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.target = self.np_random.uniform(-1, 1, self.size).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(action), f"{action!r} not in {self.action_space}"
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        reward = float(-np.abs(np.sign(self.target) - (a > 0) * 2 + 1).mean())
        self.t += 1
        self.target = self.np_random.uniform(-1, 1, self.size).astype(np.float32)
        return self._obs(), reward, False, self.t >= 5, {}


TEST_ENVS = {
    "pgradtest/MultiDiscrete-v0": dict(action_space=spaces.MultiDiscrete([2, 3, 2])),
    "pgradtest/MultiBinary-v0": dict(action_space=spaces.MultiBinary(3)),
    "pgradtest/BoxAction-v0": dict(action_space=spaces.Box(-2.0, 2.0, (2,), np.float32)),
    "pgradtest/DictObs-v0": dict(action_space=spaces.Discrete(2), dict_obs=True),
}
for env_id, kwargs in TEST_ENVS.items():
    if env_id not in registry:
        register(id=env_id, entry_point=TargetEnv, kwargs=kwargs)


@pytest.fixture
def run_root(tmp_path):
    return tmp_path / "runs"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Each test leaves the process as it found it.

    Every agent built during the test has its vector environment closed afterwards (async ones
    hold subprocesses). Torch's thread count, which an agent sets from its config, is restored.
    A test that leaves SIGINT's handler changed fails, after the handler is put back, so that
    Ctrl-C still stops the rest of the session.
    """
    handler = signal.getsignal(signal.SIGINT)
    threads = torch.get_num_threads()
    agents: list[Agent] = []
    build = Agent.__init__

    def build_and_track(self, *args, **kwargs):
        agents.append(self)
        build(self, *args, **kwargs)

    monkeypatch.setattr(Agent, "__init__", build_and_track)
    yield
    for agent in agents:
        envs = getattr(agent, "envs", None)
        if envs is not None:
            envs.close()
    torch.set_num_threads(threads)
    leaked = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, handler)
    assert leaked == handler, f"the test left SIGINT's handler set to {leaked!r}"
