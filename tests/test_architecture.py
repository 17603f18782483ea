"""The agent layer's shape: one-way imports, hooks that take spaces, overridable losses without
side channels, merged defaults, the update callback, versioned checkpoints, a full disk."""

from __future__ import annotations

import ast
import errno
import subprocess
import sys

import pytest
import torch

import pgrad
from pgrad import A2C, Config, LossParts, Reinforce
from pgrad import checkpoint as ckpt
from pgrad.errors import CheckpointError, TrainingError

from helpers import ROOT, assert_clean_error
from helpers import pgrad as run_cli

PACKAGES = {"pgrad": ROOT / "pgrad", "pgrad.agents": ROOT / "agents", "pgrad.envs": ROOT / "envs"}


def import_graph() -> dict[str, set[str]]:
    """Module -> the pgrad modules it imports at module level (not inside functions)."""
    graph: dict[str, set[str]] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            deps: set[str] = set()
            for node in ast.parse(path.read_text()).body:  # module level only
                if isinstance(node, ast.ImportFrom) and node.module:
                    deps.add(node.module)
                    deps.update(f"{node.module}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names)
            graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_import_cycle_among_pgrad_modules():
    graph = import_graph()
    # a package imports its own submodules (re-exports); that is not a cycle between modules
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in edges[module]:
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep] if dep in path else [module, dep]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_distributed_never_imports_the_agent_and_the_agent_imports_no_ray():
    graph = import_graph()
    assert "pgrad.agent" not in graph["pgrad.distributed"]
    assert "pgrad.distributed" not in graph["pgrad.agent"]
    source = (ROOT / "pgrad" / "distributed.py").read_text()
    assert "pgrad.agent" not in source  # not even for type checking
    code = "import sys, pgrad, pgrad.agents; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class ExtraTerm(A2C):
    """A loss override that never calls super(): a term of its own, nothing else."""

    def loss(self, batch, entropy_coef):
        dist = self.policy(batch.obs)
        policy = -(dist.log_prob(batch.actions) * batch.advantages)[batch.mask].mean()
        l2 = sum(p.pow(2).sum() for p in self.policy.parameters())
        return LossParts(total=policy + 1e-4 * l2, policy=policy, entropy=dist.entropy().mean())


def test_loss_overridable_without_super_with_gradient_diagnostics(tmp_path):
    agent = ExtraTerm(
        env_id="CartPole-v1",
        num_envs=8,
        num_steps=16,
        total_steps=512,
        grad_diagnostics=True,
        quiet=True,
        run_dir=tmp_path / "run",
    )
    metrics = agent.update(agent.collect())
    assert metrics["diagnostics/grad_variance"] > 0 and metrics["diagnostics/grad_snr"] > 0
    assert "losses/value_loss" not in metrics  # the override's parts are what is logged
    agent.envs.close()


def test_hooks_receive_spaces(tmp_path):
    seen = {}

    class Spy(A2C):
        def make_policy(self, obs_space, action_space):
            seen["policy"] = (obs_space, action_space)
            return super().make_policy(obs_space, action_space)

        def make_critic(self, obs_space):
            seen["critic"] = obs_space
            return super().make_critic(obs_space)

    agent = Spy(env_id="pgradtest/DictObs-v0", num_envs=2, quiet=True, run_dir=tmp_path / "r")
    assert seen["policy"] == (agent.obs_space, agent.action_space)
    assert isinstance(seen["critic"], pgrad.encoders.gym.spaces.Dict)
    rollout = agent.collect()
    assert isinstance(rollout.obs, dict) and set(rollout.obs) == {"target", "t"}
    agent.envs.close()


def test_a_plain_module_as_policy_is_refused_with_what_it_lacks(tmp_path):
    class Bad(A2C):
        def make_policy(self, obs_space, action_space):
            return torch.nn.Linear(4, 2)

    with pytest.raises(ValueError, match="lacks mode, to_env"):
        Bad(env_id="CartPole-v1", num_envs=2, quiet=True)


def test_subclass_defaults_merge_over_the_parents():
    class R(Reinforce):
        defaults = {"num_envs": 4}

    config = R.default_config()
    assert config.num_envs == 4 and config.rollout == "episodes" and config.gae_lambda == 1.0


def test_callback_sees_every_update_and_can_stop_training(tmp_path):
    steps = []

    def callback(agent, metrics):
        steps.append((agent.global_step, "losses/policy_loss" in metrics))
        if len(steps) == 3:
            agent.request_stop()

    agent = A2C(num_envs=4, num_steps=8, total_steps=10_000, quiet=True, run_dir=tmp_path / "r")
    agent.train(callback=callback)
    assert steps == [(32, True), (64, True), (96, True)]
    assert agent.global_step == 96 and not agent.interrupted
    assert ckpt.list_checkpoints(tmp_path / "r" / "checkpoints")[-1].name == "step_000000000096.pt"


def test_minibatches_partition_the_batch_and_epochs_repeat_it(tmp_path):
    agent = A2C(
        num_envs=4,
        num_steps=8,
        update_epochs=3,
        num_minibatches=4,
        quiet=True,
        run_dir=tmp_path / "r",
    )
    batch = agent.prepare(agent.collect())
    seen = []
    for minibatch in batch.minibatches(4, torch.Generator().manual_seed(0)):
        assert len(minibatch) == 8 and minibatch.mask.dim() == 1
        seen.append(minibatch.advantages)
    assert torch.equal(
        torch.sort(torch.cat(seen)).values, torch.sort(batch.advantages.flatten()).values
    )
    calls = []
    agent.loss = lambda b, c: calls.append(len(b)) or A2C.loss(agent, b, c)
    metrics = agent.update(agent.collect())
    assert calls == [8] * 12 and metrics["diagnostics/epochs"] == 3
    agent.envs.close()


def test_optional_schedule_ends_take_none():
    config = Config().with_overrides(["learning_rate_final=0.001", "ent_coef_final=none"])
    assert config.learning_rate_final == 0.001 and config.ent_coef_final is None
    assert Config.from_dict({"learning_rate_final": -1.0}).learning_rate_final is None
    with pytest.raises(ValueError, match="learning_rate_final must be >= 0 or none"):
        Config(learning_rate_final=-0.5)


# -- checkpoints -------------------------------------------------------------------------------
def test_checkpoints_carry_a_format_version_and_a_newer_one_is_refused(tmp_path):
    agent = A2C(num_envs=2, quiet=True)
    path = agent.save(tmp_path / "a.pt")
    state = torch.load(path, weights_only=True)
    assert state["format"] == "pgrad-checkpoint" and state["format_version"] == ckpt.FORMAT_VERSION
    state["format_version"] = ckpt.FORMAT_VERSION + 1
    torch.save(state, tmp_path / "newer.pt")
    with pytest.raises(
        CheckpointError, match="checkpoint format 3; this pgrad reads formats 1 to 2"
    ):
        ckpt.load(tmp_path / "newer.pt")
    result = run_cli("eval", str(tmp_path / "newer.pt"), cwd=tmp_path)
    assert_clean_error(result, "upgrade pgrad")
    agent.envs.close()


def test_format_1_checkpoints_still_load(tmp_path):
    agent = Reinforce(baseline="ema", num_envs=2, quiet=True)
    agent.algorithm.ema.update(torch.tensor([5.0]))
    state = agent.state_dict()
    old = {k: v for k, v in state.items() if k != "algorithm"}
    old["ema"] = state["algorithm"]["ema"]
    old["config"] = {**state["config"], "learning_rate_final": -1.0, "ent_coef_final": -1.0}
    for key in ("update_epochs", "num_minibatches", "value_epochs", "share_encoder"):
        old["config"].pop(key)
    torch.save({"format": "pgrad-checkpoint-1", **old}, tmp_path / "v1.pt")
    loaded = Reinforce.load(tmp_path / "v1.pt")
    assert loaded.algorithm.ema.value == 5.0 and loaded.config.learning_rate_final is None
    for a, b in zip(agent.policy.parameters(), loaded.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    agent.envs.close()
    loaded.envs.close()


def test_a_full_disk_keeps_the_previous_checkpoint_and_stops_in_one_line(tmp_path, monkeypatch):
    agent = A2C(num_envs=4, num_steps=8, total_steps=64, quiet=True, run_dir=tmp_path / "r")
    agent.train()
    before = ckpt.latest_loadable(tmp_path / "r" / "checkpoints")[0]

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(TrainingError, match="No space left on device; the previous checkpoint"):
        agent.train(128)
    monkeypatch.undo()
    folder = tmp_path / "r" / "checkpoints"
    assert ckpt.latest_loadable(folder)[0] == before
    assert not list(folder.glob(".*.tmp"))  # no partial file left behind
    agent.envs.close()


def test_the_python_api_takes_what_python_users_pass():
    config = Config(hidden=[32, 32], total_steps=1e5, num_envs=4.0)
    assert config.hidden == (32, 32) and config.total_steps == 100_000 and config.num_envs == 4
    assert isinstance(config.total_steps, int)
    for bad in (1e5 + 0.5,):
        with pytest.raises(ValueError, match="total_steps must be int"):
            Config(total_steps=bad)
    assert Config(device="cuda:1").device == "cuda:1" and Config(device="mps").device == "mps"
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda, cuda:N or mps"):
        Config(device="gpu")
    with pytest.raises(ValueError, match="torch sees no CUDA device|torch sees 0 CUDA"):
        A2C(device="cuda:1", num_envs=1, quiet=True)


def test_fixed_length_rollouts_without_a_critic_are_refused():
    """Cut episodes would bootstrap from 0: a biased return, refused in one line."""
    for baseline in ("none", "ema", "loo", "group"):
        with pytest.raises(ValueError, match="rollout=steps needs baseline=value"):
            Config(rollout="steps", baseline=baseline, group_size=2)
    result = run_cli("train", "--agent", "a2c", "--set", "baseline=ema", cwd=ROOT)
    assert_clean_error(result, "rollout=steps needs baseline=value")


def test_config_typos_get_the_closest_key():
    with pytest.raises(
        ValueError, match=r"unknown config key 'lerning_rate' \(did you mean learning_rate\?\)"
    ):
        A2C(lerning_rate=1e-3, quiet=True)
