"""Action masks: masked actions are never taken, log-probs and entropy are over legal actions,
the masked policy's gradient is exact, and a mask that allows nothing is an error."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.envs.registration import register, registry

from pgrad import A2C, Reinforce, policy_for
from pgrad.losses import entropy_bonus


class FatalMaskEnv(gym.Env):
    """Each step a random non-empty set of the 4 actions is legal; an illegal action raises.

    Reward 1 for the legal action named by the observation's ``hint``. The observation after
    the 5th step (the episode's last) allows no action at all: nothing may act on it.
    """

    def __init__(self, empty_at: int | None = None):
        self.observation_space = spaces.Dict(
            {"hint": spaces.Discrete(4), "action_mask": spaces.MultiBinary(4)}
        )
        self.action_space = spaces.Discrete(4)
        self.empty_at = empty_at

    def _observe(self):
        if self.t >= 5 or self.t == self.empty_at:
            self.mask = np.zeros(4, dtype=np.int8)
        else:
            self.mask = (self.np_random.random(4) < 0.5).astype(np.int8)
            self.mask[self.np_random.integers(4)] = 1
        self.hint = int(self.np_random.choice(np.flatnonzero(self.mask))) if self.mask.any() else 0
        return {"hint": self.hint, "action_mask": self.mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        if not self.mask[int(action)]:
            raise RuntimeError(f"illegal action {action} under mask {self.mask}")
        reward = float(int(action) == self.hint)
        self.t += 1
        return self._observe(), reward, self.t >= 5, False, {}


for name, kwargs in {"Fatal": {}, "Empty": {"empty_at": 3}}.items():
    if f"pgradtest/Mask{name}-v0" not in registry:
        register(id=f"pgradtest/Mask{name}-v0", entry_point=FatalMaskEnv, kwargs=kwargs)


@pytest.mark.parametrize("agent_cls", [Reinforce, A2C])
def test_masked_actions_are_never_taken_and_the_task_is_learned(agent_cls, tmp_path):
    agent = agent_cls(
        env_id="pgradtest/MaskFatal-v0",
        num_envs=8,
        num_steps=10,
        total_steps=12_000,
        learning_rate=1e-2,
        vectorization="sync",
        quiet=True,
        eval_episodes=0,
        run_dir=tmp_path / "run",
    )
    before = agent.evaluate(episodes=20, deterministic=False)["mean_return"]
    agent.train()  # an illegal action would raise inside the environment
    after = agent.evaluate(episodes=20)["mean_return"]  # deterministic: argmax over legal ones
    agent.envs.close()
    assert before < 3.5 and after >= 4.8, (before, after)


def test_a_mask_that_allows_nothing_names_the_env_and_step(tmp_path):
    agent = A2C(
        env_id="pgradtest/MaskEmpty-v0",
        num_envs=2,
        num_steps=8,
        vectorization="sync",
        quiet=True,
        run_dir=tmp_path / "run",
    )
    # the third step's observations (t = 2; 2 environments: global step 4) allow nothing
    with pytest.raises(
        ValueError, match=r"action mask of environment 0 allows no action at step 4"
    ):
        agent.collect()
    agent.envs.close()


def test_masked_distribution_is_the_softmax_over_legal_actions():
    space = spaces.Dict({"x": spaces.Box(-1, 1, (3,)), "action_mask": spaces.MultiBinary(5)})
    policy = policy_for(space, spaces.Discrete(5), hidden=(8,))
    obs = {"x": torch.randn(6, 3), "action_mask": torch.tensor([[1, 0, 1, 1, 0]] * 6)}
    dist = policy(obs)
    logits = policy.net(policy.encoder(obs))
    legal = torch.tensor([0, 2, 3])
    expected = torch.softmax(logits[:, legal], -1)
    torch.testing.assert_close(dist.probs[:, legal], expected)
    assert (dist.probs[:, [1, 4]] == 0).all()
    expected_entropy = -(expected * expected.log()).sum(-1)
    torch.testing.assert_close(dist.entropy(), expected_entropy)
    torch.testing.assert_close(entropy_bonus(dist), expected_entropy.mean())
    samples = dist.sample((2000,))
    assert set(samples.unique().tolist()) <= {0, 2, 3}
    assert set(policy.mode(dist).tolist()) <= {0, 2, 3}
    # masked logits get no gradient
    (dist.log_prob(torch.full((6,), 2))).sum().backward()
    last = policy.net[-1]
    assert torch.all(last.weight.grad[[1, 4]] == 0) and torch.all(last.bias.grad[[1, 4]] == 0)


def test_multidiscrete_masks_are_flat_per_component():
    space = spaces.Dict({"x": spaces.Box(-1, 1, (2,)), "action_mask": spaces.MultiBinary(5)})
    policy = policy_for(space, spaces.MultiDiscrete([2, 3]), hidden=())
    mask = torch.tensor([[0, 1, 1, 0, 1]] * 4)  # component 0: only 1; component 1: 0 or 2
    dist = policy({"x": torch.randn(4, 2), "action_mask": mask})
    samples = dist.sample((500,))
    assert (samples[..., 0] == 1).all()
    assert set(samples[..., 1].unique().tolist()) <= {0, 2}
    assert torch.all(dist.log_prob(torch.tensor([[1, 0]] * 4)) > -math.inf)


# -- the exact gradient of a masked policy on a small masked MDP ------------------------------
# state 0 (legal 0, 1, 2): 0 -> state 1, 1 -> state 2, 2 -> end with reward 0.5
# state 1 (legal 1, 3): 1 -> reward 1.0, 3 -> reward -1.0;  state 2 (legal 0): reward 0.2
MASKS = torch.tensor([[1, 1, 1, 0], [0, 1, 0, 1], [1, 0, 0, 0]], dtype=torch.bool)
FIRST_REWARD = torch.tensor([0.0, 0.0, 0.5, 0.0])
NEXT_STATE = torch.tensor([1, 2, -1, -1])
SECOND_REWARD = torch.tensor([[0.0] * 4, [0.0, 1.0, 0.0, -1.0], [0.2, 0.0, 0.0, 0.0]])
SPACE = spaces.Dict({"state": spaces.Discrete(3), "action_mask": spaces.MultiBinary(4)})


def _exact_gradient(policy, masked: bool = True) -> list[torch.Tensor]:
    """dJ/dtheta by enumeration, the masked softmax written out by hand."""
    logits = policy.net(torch.eye(3))
    if masked:
        logits = logits.masked_fill(~MASKS, -math.inf)
    probs = torch.softmax(logits, -1)
    value = 0.0
    for a0 in range(4):
        if not MASKS[0, a0]:
            continue
        tail = 0.0
        if NEXT_STATE[a0] >= 0:
            s1 = int(NEXT_STATE[a0])
            tail = (probs[s1] * SECOND_REWARD[s1]).sum()
        value = value + probs[0, a0] * (FIRST_REWARD[a0] + tail)
    return list(torch.autograd.grad(value, list(policy.parameters())))


def _estimated_gradients(policy, episodes: int, chunks: int) -> torch.Tensor:
    """REINFORCE estimates of dJ/dtheta through pgrad's masked policy, one per chunk."""
    states = torch.zeros(episodes, dtype=torch.long)
    first = policy({"state": states, "action_mask": MASKS[states]})
    a0 = first.sample()
    assert MASKS[0, a0].all()
    s1 = NEXT_STATE[a0]
    alive = s1 >= 0
    s1c = s1.clamp(min=0)
    second = policy({"state": s1c, "action_mask": MASKS[s1c]})
    a1 = second.sample()
    assert MASKS[s1c[alive], a1[alive]].all()
    ret = FIRST_REWARD[a0] + torch.where(alive, SECOND_REWARD[s1c, a1], 0.0)
    per_episode = first.log_prob(a0) * ret + torch.where(alive, second.log_prob(a1) * ret, 0.0)
    grads = []
    for chunk in per_episode.chunk(chunks):
        g = torch.autograd.grad(chunk.mean(), list(policy.parameters()), retain_graph=True)
        grads.append(torch.cat([x.flatten() for x in g]))
    return torch.stack(grads)


def test_masked_policy_gradient_matches_the_exact_one():
    torch.manual_seed(0)
    policy = policy_for(SPACE, spaces.Discrete(4), hidden=())
    with torch.no_grad():
        policy.net[-1].weight.normal_(0, 1.0)  # away from uniform, so the gradient is large
    exact = torch.cat([g.flatten() for g in _exact_gradient(policy)])
    unmasked = torch.cat([g.flatten() for g in _exact_gradient(policy, masked=False)])
    estimates = _estimated_gradients(policy, episodes=40_000, chunks=40)
    mean = estimates.mean(0)
    se = estimates.std(0) / math.sqrt(len(estimates)) + 1e-6
    assert ((mean - exact).abs() / se).max() < 4.5, (mean - exact) / se
    # the negative control: the softmax over all actions is a different gradient, rejected
    assert ((mean - unmasked).abs() / se).max() > 8
