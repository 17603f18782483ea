"""Every Python block in README.md runs as written, with small budgets.

The blocks are read from the README's fenced ``python`` code, so an edit there is tested here.
Each block is named by its first line and prepared as follows:

* ``import gymnasium as gym`` (the subclass example): trained through the CLI by
  ``test_cli.py::test_readme_subclass_example_trains``; not run again here.
* ``from pgrad.agents import CartPole`` (the Python API): the preset's 150,000-step budget is
  cut to 2,048 steps by patching ``CartPole.defaults`` for the test, ``obs`` is a CartPole
  observation from a seeded reset, and the block runs in a temporary directory, where its
  ``cartpole.pt`` and run directory land.
* ``import pgrad`` (the REINFORCE core): ``rewards``, ``terminated``, ``truncated``, ``v_next``,
  ``values``, ``dist``, ``actions`` and ``mask`` are a small ``[T, N] = [5, 3]`` rollout of a
  two-action categorical policy, made by :func:`core_inputs`.
* ``import torch`` (the estimators): self-contained, runs as is.

A block that is not in this list fails the test until it is added with its preparation.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import gymnasium as gym
import pytest
import torch

from pgrad.agents import CartPole

from helpers import ROOT

SUBCLASS_EXAMPLE = "import gymnasium as gym"


def readme_blocks() -> dict[str, str]:
    """The README's Python blocks keyed by their first line."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return {block.splitlines()[0]: block for block in blocks}


def core_inputs() -> dict[str, object]:
    """A [5, 3] rollout: an episode ends in env 0 at t=1 (terminated) and env 2 at t=3 (time
    limit); env 0's last step is padding after its next episode ended at t=3."""
    gen = torch.Generator().manual_seed(0)
    T, N = 5, 3
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.zeros(T, N, dtype=torch.bool)
    terminated[1, 0] = terminated[3, 0] = True
    truncated[3, 2] = True
    mask = torch.ones(T, N, dtype=torch.bool)
    mask[4, 0] = False
    values = torch.randn(T, N, generator=gen).requires_grad_()
    logits = torch.randn(T, N, 2, generator=gen).requires_grad_()
    dist = torch.distributions.Categorical(logits=logits)
    return {
        "rewards": torch.rand(T, N, generator=gen),
        "terminated": terminated,
        "truncated": truncated,
        "mask": mask,
        "values": values,
        "v_next": torch.randn(T, N, generator=gen),
        "dist": dist,
        "actions": dist.sample(),
        "policy_logits": logits,  # the leaf: the block's loss must reach it
    }


def check_core(namespace: dict) -> None:
    loss = namespace["loss"]
    assert loss.shape == () and torch.isfinite(loss) and loss.requires_grad
    assert namespace["returns"].shape == namespace["advantages"].shape == (5, 3)
    loss.backward()
    assert namespace["policy_logits"].grad is not None and namespace["values"].grad is not None


def prepare_api(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, object]:
    monkeypatch.setitem(CartPole.defaults, "total_steps", 2048)
    monkeypatch.chdir(tmp_path)
    obs, _ = gym.make("CartPole-v1").reset(seed=0)
    return {"obs": obs}


def check_api(namespace: dict) -> None:
    assert namespace["agent"].global_step >= 2048
    assert namespace["action"] in (0, 1)
    assert namespace["agent"].config.total_steps == 2048


def check_estimators(namespace: dict) -> None:
    # the score-function loss's value is the mean cost; its gradient reached the logits
    assert namespace["loss"].item() == pytest.approx(namespace["cost"].mean().item())
    assert namespace["logits"].grad is not None
    assert namespace["layer"].weight.abs().max() <= 1.0


PREPARED: dict[str, tuple[Callable[..., dict], Callable[[dict], None]]] = {
    "from pgrad.agents import CartPole": (prepare_api, check_api),
    "import pgrad": (lambda monkeypatch, tmp_path: core_inputs(), check_core),
    "import torch": (lambda monkeypatch, tmp_path: {}, check_estimators),
}


def test_every_block_is_prepared_or_run_elsewhere():
    blocks = readme_blocks()
    assert SUBCLASS_EXAMPLE in blocks, "test_cli.py runs the subclass example: keep its first line"
    unknown = set(blocks) - set(PREPARED) - {SUBCLASS_EXAMPLE}
    assert not unknown, f"README Python blocks with no preparation here: {sorted(unknown)}"


@pytest.mark.parametrize("first_line", sorted(PREPARED))
def test_readme_block_runs(first_line, monkeypatch, tmp_path, capsys):
    block = readme_blocks()[first_line]
    prepare, check = PREPARED[first_line]
    namespace = prepare(monkeypatch, tmp_path)
    exec(compile(block, f"README.md: {first_line}", "exec"), namespace)
    check(namespace)
