"""Golden runs: refactors of the agent layer must not change a single number.

Each case trains a preset (or a REINFORCE variant) for a short, fixed budget on the CPU and
reduces what it produced to SHA-256 digests: every TensorBoard scalar (all but ``charts/SPS``,
a wall-clock figure) as float64 bytes, and the final policy and critic weights as bytes (each
tensor by value, whatever its name). The
digests are compared with ``tests/golden.json``.

A change that is meant to change numbers (a fix, a new default) regenerates the file in the
same commit and says so::

    PGRAD_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

The digests depend on torch's CPU kernels; on another CPU family or torch version they may
differ, and the file is then regenerated there once, by the same command, from a commit whose
numbers are known good.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pgrad import A2C, Reinforce
from pgrad.agents import Acrobot, CartPole, CartPoleFast, Pendulum, PendulumA2C

from helpers import all_scalars

GOLDEN = Path(__file__).with_name("golden.json")

CASES = {
    "cartpole": (CartPole, {"total_steps": 6_000}),
    "cartpole-fast": (CartPoleFast, {"total_steps": 3 * 8_192}),
    "acrobot": (Acrobot, {"total_steps": 16 * 16 * 12}),
    "pendulum": (PendulumA2C, {"total_steps": 16 * 8 * 12}),
    "pendulum-ppo": (Pendulum, {"total_steps": 4 * 256 * 2, "num_steps": 256}),
    "dict-obs-a2c": (
        A2C,
        {"env_id": "pgradtest/DictObs-v0", "num_envs": 4, "num_steps": 8, "total_steps": 640},
    ),
    "reinforce-loo": (
        Reinforce,
        {"env_id": "CartPole-v1", "baseline": "loo", "group_size": 4, "total_steps": 4_000},
    ),
}


def digest_run(agent_cls: type, overrides: dict, run_dir: Path) -> dict[str, str]:
    """Train one golden case and reduce its scalars and weights to digests."""
    agent = agent_cls(
        run_dir=run_dir, quiet=True, device="cpu", seed=3, eval_episodes=0, **overrides
    )
    agent.train()
    agent.envs.close()
    out: dict[str, str] = {}
    for tag, points in sorted(all_scalars(run_dir).items()):
        values = np.asarray(points, dtype=np.float64)
        out[f"scalars:{tag}"] = hashlib.sha256(values.tobytes()).hexdigest()[:16]
    nets = {"policy": agent.policy, "critic": getattr(agent, "critic", None)}
    for name, net in nets.items():
        if net is None:
            continue
        # by value, not by name: a module reorganisation renames parameters, and must not
        # change a single one of them
        tensors = sorted(
            hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
            for key, tensor in net.state_dict().items()
            if "obs_norm" not in key  # shared statistics: compared through the scalars
        )
        out[f"weights:{name}"] = hashlib.sha256("".join(tensors).encode()).hexdigest()[:16]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_numbers(case, tmp_path):
    torch.set_num_threads(1)
    agent_cls, overrides = CASES[case]
    got = digest_run(agent_cls, overrides, tmp_path / case)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("PGRAD_UPDATE_GOLDEN"):
        golden[case] = got
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
        pytest.skip("golden digests written")
    assert case in golden, f"no golden digests for {case}; see this module's docstring"
    changed = sorted(k for k in set(golden[case]) | set(got) if golden[case].get(k) != got.get(k))
    assert not changed, f"{case}: these numbers changed: {changed}"
