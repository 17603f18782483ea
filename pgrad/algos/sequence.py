"""Whole-sequence REINFORCE: one reward per generated sequence, groups of completions per prompt.

Sampling tokens is sampling actions. An episode of a token task (or a tour) is a sequence
``o_i = (o_i1, ..., o_i|o_i|)`` whose reward ``R_i`` comes at its end. The rollout holds one
episode per environment, ``[T, N]`` time-major; ``group_size = k`` consecutive environments
started from the same prompt (seeded resets, or a numpy-vectorised form's shared instances). The
policy gradient of ``J = E[R]`` is, by the score function (Williams, 1992),

    grad J = E[ (R_i - b_i) sum_t grad log pi(o_it | o_i<t) ]

and the update prepares one advantage ``A_i`` per sequence, then differentiates

    L = aggregate_{i,t}( -A_i log pi(o_it | o_i<t) ) + beta * aggregate_{i,t}(k3_it)   (k3 only)

with the token aggregation named by the config (``pgrad.losses.sequence_policy_loss``:
``seq_sum``, the default, is the unbiased estimate; ``seq_mean``, ``token_mean`` and
``token_sum_norm`` are GRPO's, DAPO's and Dr. GRPO's).

=================  ===============================================  ===========================
config baseline    advantage ``A_i``                                paper
=================  ===============================================  ===========================
``none``           ``R_i``                                          Williams 1992
``ema``            ``R_i - b``, ``b`` a moving average of past      Williams 1992
                   batches' mean reward
``loo``            ``R_i - mean_{j != i in group} R_j``             Kool et al. 2019 (RLOO)
``group``          ``(R_i - mean_group R) / std_group R``           Shao et al. 2024 (GRPO)
``drgrpo``         ``R_i - mean_group R``                           Liu et al. 2025 (Dr. GRPO)
``rpp``            ``(R_i - mean_group R) / std_batch``             Hu 2025 (REINFORCE++)
``pomo``           ``R_i - mean_group R``, the group being one      Kwon et al. 2020 (POMO)
                   instance toured from each start city
``greedy``         ``R_i - R(greedy decode by a frozen policy)``    Kool et al. 2019
=================  ===============================================  ===========================

**KL to a reference.** With ``kl_coef = beta > 0`` a frozen copy of the starting policy is
kept. ``kl_estimator=k1`` folds ``-beta * sum_t (log pi - log pi_ref)`` into each sequence's
reward before the baseline (the score function then pulls toward the reference; Ziegler et al.,
2019); ``k3`` adds ``beta`` times Schulman's ``k3`` estimate, aggregated like the policy loss, to
the loss (GRPO's choice). Either way ``diagnostics/kl_ref`` is the mean per-sequence
``sum_t (log pi - log pi_ref)``, an unbiased estimate of ``KL(pi || pi_ref)`` per sequence.

**PPO's clipped objective** (``seq_clip=true``; Schulman et al., 2017). ``prepare`` also stores
the rollout's token log-probabilities ``log pi_old(o_it | o_i<t)`` once, without gradient, and
each of the ``update_epochs x num_minibatches`` steps differentiates, on a minibatch of whole
sequences (a sequence is never split: the aggregations divide by its own length or the
minibatch's tokens),

    r_it = exp(log pi(o_it | o_i<t) - log pi_old(o_it | o_i<t))
    L    = -aggregate_{i,t}( min(r_it A_i, clip(r_it, 1 - eps, 1 + eps) A_i) )   (clip_coef = eps)

the sequence's advantage on every token, the same ``aggregation`` as the plain loss: GRPO's own
form is this with ``seq_mean`` (Shao et al., 2024), DAPO's with ``token_mean`` (Yu et al., 2025,
which also widens the clip; one ``clip_coef`` here). At ``pi = pi_old`` every ``r_it = 1`` and
the gradient is the plain loss's, so one epoch of one minibatch learns exactly as without the
switch; later steps reuse the rollout, which the ratio corrects and the clip bounds. Each step
logs ``diagnostics/approx_kl`` and ``diagnostics/clip_fraction`` over its real tokens as PPO does
(:func:`pgrad.algos.ppo.ratio_diagnostics`), and ``target_kl`` ends the epochs early as PPO's.
The advantages stay those of the whole rollout (group baselines need the whole group;
``normalize_advantages`` acts once, in ``prepare``, not per minibatch as PPO's).

It is a switch of its own, not implied by ``update_epochs > 1``: several epochs of the plain
loss (REINFORCE repeated on the same rollout) remain what they were, and with one step the
clipped form costs one more forward pass for the same gradient. ``num_minibatches > 1`` needs
the switch: without the ratio every minibatch after the first would follow the plain gradient
from a policy that no longer collected the data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from pgrad.algos.base import Algorithm
from pgrad.algos.ppo import approx_kl_exceeds, ratio_diagnostics
from pgrad.baselines import (
    EMABaseline,
    GreedyRolloutBaseline,
    group_mean_advantage,
    group_normalize,
    leave_one_out,
    reinforce_pp_advantage,
)
from pgrad.config import Config
from pgrad.envs_util import derive_seed
from pgrad.losses import (
    LossParts,
    clipped_surrogate,
    entropy_bonus,
    kl_k1,
    kl_k3,
    normalize_advantages,
    sequence_policy_loss,
)
from pgrad.obs import map_obs
from pgrad.rollout import Batch, Rollout

SEQUENCE_ESTIMATORS = ("none", "ema", "loo", "group", "drgrpo", "rpp", "pomo", "greedy")
"""The config baselines the sequence algorithm takes (all but the learned critic)."""

GreedyRollout = Callable[[nn.Module, Any], Tensor]
"""``(module, reset_seeds) -> [N]`` rewards of a greedy decode of those episodes by ``module``."""


class SequenceBatch(Batch):
    """A :class:`~pgrad.rollout.Batch` of whole sequences, ``[T, N]``, whose minibatches are
    whole sequences too: a random partition of the ``N`` columns, each minibatch ``[T, M]``.

    The sequence aggregations need a sequence's every token in one place (``seq_mean`` divides
    by its length, the others by counts of sequences or tokens), and the policies run their
    model once per column.
    """

    def minibatches(
        self, num_minibatches: int, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """The whole batch, or ``num_minibatches`` near-equal shuffled groups of sequences."""
        if num_minibatches <= 1:
            yield self
            return
        num_sequences = self.mask.shape[1]
        order = torch.randperm(num_sequences, generator=generator).to(self.mask.device)
        for index in order.tensor_split(num_minibatches):
            yield self._map(lambda x, index=index: x[:, index])


class SequenceAlgorithm(Algorithm):
    """REINFORCE over whole sequences with the config's estimator; see the module docstring.

    ``baseline=greedy`` needs ``greedy_rollout``, set by the agent that owns the environments
    (the ``sequence`` agent does), to decode episodes from the rollout's reset seeds greedily.

    ``seq_clip`` selects PPO's clipped ratio per token (see the module docstring), with the
    config's ``clip_coef``, ``target_kl``, ``update_epochs`` and ``num_minibatches``.

    Raises:
        ValueError: a learned critic (``baseline=value``), ``rollout=steps``, more than one
            minibatch without ``seq_clip`` or more minibatches than environments, or
            ``baseline=greedy`` with Ray workers.
    """

    name = "sequence"

    def __init__(self, policy: nn.Module, critic: nn.Module | None, config: Config) -> None:
        super().__init__(policy, critic, config)
        if config.baseline not in SEQUENCE_ESTIMATORS:
            raise ValueError(
                f"the sequence agent takes baseline {', '.join(SEQUENCE_ESTIMATORS)}; got "
                f"{config.baseline!r} (a critic of one reward per sequence: use --agent a2c)"
            )
        if config.rollout != "episodes":
            raise ValueError("the sequence agent learns from whole episodes: set rollout=episodes")
        if config.baseline == "greedy" and config.workers > 0:
            raise ValueError("baseline=greedy decodes in the learner's process: set workers=0")
        if config.num_minibatches != 1 and not config.seq_clip:
            raise ValueError(
                "the sequence agent's plain loss takes one step per rollout: set "
                f"num_minibatches=1 (or seq_clip=true), got {config.num_minibatches}"
            )
        if config.num_minibatches > config.num_envs:
            raise ValueError(
                "minibatches are whole sequences: num_minibatches must be at most num_envs "
                f"({config.num_envs}), got {config.num_minibatches}"
            )
        self.ema = EMABaseline(config.ema_decay)
        self.reference = _frozen(policy) if config.kl_coef > 0 else None
        self.greedy_rollout: GreedyRollout | None = None
        self.greedy = (
            GreedyRolloutBaseline(policy, self._greedy_returns)
            if config.baseline == "greedy"
            else None
        )
        self.updates = 0
        self._last_seeds: Any = None
        self._test_stats: dict[str, float] = {}

    # -- prepare: one advantage per sequence ------------------------------------------------------
    @torch.no_grad()
    def prepare(self, rollout: Rollout) -> Batch:
        c = self.config
        mask = rollout.mask  # [T, N]; every episode starts at t = 0
        obs = map_obs(lambda x: x[:-1], rollout.obs)
        rewards = torch.where(mask, rollout.rewards, 0.0).sum(0)  # [N] one per sequence
        stats: dict[str, float] = dict(self._test_stats)
        ref_log_probs = old_log_probs = None
        if c.seq_clip or self.reference is not None:
            # pi_old: the weights that collected the rollout have not moved yet
            log_probs = self.policy(obs).log_prob(rollout.actions)  # [T, N]
            old_log_probs = log_probs if c.seq_clip else None
        if self.reference is not None:
            ref_log_probs = self.reference(obs).log_prob(rollout.actions)
            log_ratio = kl_k1(log_probs, ref_log_probs)
            sequence_kl = torch.where(mask, log_ratio, 0.0).sum(0)  # [N]
            stats["diagnostics/kl_ref"] = float(sequence_kl.mean())
            if c.kl_estimator == "k1":
                rewards = rewards - c.kl_coef * sequence_kl
        advantages = self.sequence_advantages(rewards, rollout.reset_seeds)
        if c.normalize_advantages:
            advantages = normalize_advantages(advantages)
        stats["diagnostics/advantage_mean"] = float(advantages.mean())
        stats["diagnostics/advantage_std"] = float(advantages.std()) if len(advantages) > 1 else 0.0
        horizon = mask.shape[0]
        return SequenceBatch(
            obs=obs,
            actions=rollout.actions,
            mask=mask,
            advantages=advantages.expand(horizon, -1),  # [T, N]: A_i at every token of o_i
            returns=rewards.expand(horizon, -1),
            old_log_probs=old_log_probs,
            ref_log_probs=ref_log_probs,
            stats=stats,
        )

    def sequence_advantages(self, rewards: Tensor, reset_seeds: Any = None) -> Tensor:
        """``rewards [N]`` (one per sequence) to advantages ``[N]`` by the config's baseline."""
        c = self.config
        k = c.group_size
        if c.baseline == "ema":
            return rewards - self.ema(rewards)
        if c.baseline == "loo":
            return rewards - leave_one_out(rewards, k)
        if c.baseline == "group":
            return group_normalize(rewards, k)
        if c.baseline in ("drgrpo", "pomo"):
            return group_mean_advantage(rewards, k)
        if c.baseline == "rpp":
            return reinforce_pp_advantage(rewards, k)
        if c.baseline == "greedy":
            assert self.greedy is not None
            if reset_seeds is None:
                raise ValueError("baseline=greedy needs the rollout's reset seeds (workers=0)")
            return rewards - self.greedy(reset_seeds).to(rewards)
        return rewards

    # -- loss: the named token aggregation ------------------------------------------------------
    def loss(self, batch: Batch, entropy_coef: float) -> LossParts:
        c = self.config
        dist = self.policy(batch.obs)
        log_prob = dist.log_prob(batch.actions)  # [T, N]
        assert log_prob.shape == batch.advantages.shape, (log_prob.shape, batch.advantages.shape)
        tokens, mask = log_prob.T, batch.mask.T  # [N, T]: one row per sequence
        # the generation budget of token_sum_norm: the time limit if one is set, else the batch's
        budget = max(c.max_episode_steps, tokens.shape[1])
        extras: dict[str, Tensor] = {}
        if c.seq_clip:
            if batch.old_log_probs is None:
                raise ValueError("seq_clip needs batch.old_log_probs: build the batch with prepare")
            # the clipped objective per token, A_i on each; aggregated as the plain loss's
            # log-probs are, with advantage 1 per sequence (the advantage is inside already)
            objective = clipped_surrogate(
                log_prob, batch.old_log_probs, batch.advantages, c.clip_coef, batch.mask
            ).T
            ones = torch.ones_like(batch.advantages[0])
            policy = sequence_policy_loss(objective, ones, mask, c.aggregation, budget)
            extras = ratio_diagnostics(log_prob, batch.old_log_probs, c.clip_coef, batch.mask)
        else:
            policy = sequence_policy_loss(tokens, batch.advantages[0], mask, c.aggregation, budget)
        entropy = entropy_bonus(dist, log_prob, batch.mask)  # per token
        total = policy - entropy_coef * entropy
        if batch.ref_log_probs is not None and c.kl_estimator == "k3":
            k3 = kl_k3(log_prob, batch.ref_log_probs).T
            # aggregated as the policy loss's tokens are: -(-k3) with advantage 1 per sequence
            ones = torch.ones_like(batch.advantages[0])
            kl = sequence_policy_loss(-k3, ones, mask, c.aggregation, budget)
            total = total + c.kl_coef * kl
        return LossParts(total=total, policy=policy, entropy=entropy, extras=extras)

    def stop_epochs(self, parts: list[LossParts]) -> bool:
        """With ``seq_clip``, PPO's early stop: the epoch's mean approximate KL > ``target_kl``."""
        return self.config.seq_clip and approx_kl_exceeds(parts, self.config.target_kl)

    def after_update(self, batch: Batch) -> None:
        c = self.config
        self.updates += 1
        if c.baseline == "ema":
            self.ema.update(batch.returns[0])
        if self.greedy is not None and self.updates % c.greedy_test_every == 0:
            # a fresh test set after each replacement (Kool et al.), drawn from the run's seed
            seed = derive_seed(c.seed, 0x7E57, self.greedy.num_replacements)
            result = self.greedy.update(self.policy, _like(self._last_seeds, seed))
            self._test_stats = {
                "diagnostics/greedy_test_p_value": result.p_value,
                "diagnostics/greedy_policy_reward": result.policy_mean,
                "diagnostics/greedy_baseline_reward": result.baseline_mean,
                "diagnostics/greedy_replacements": float(self.greedy.num_replacements),
            }

    def _greedy_returns(self, module: nn.Module, reset_seeds: Any) -> Tensor:
        if self.greedy_rollout is None:
            raise ValueError(
                "baseline=greedy needs an agent that sets algorithm.greedy_rollout "
                "(the sequence agent does)"
            )
        self._last_seeds = reset_seeds
        return self.greedy_rollout(module, reset_seeds)

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"ema": self.ema.state_dict(), "updates": self.updates}
        if self.reference is not None:
            state["reference"] = self.reference.state_dict()
        if self.greedy is not None:
            state["greedy"] = self.greedy.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.updates = int(state.get("updates", 0))
        if self.reference is not None and "reference" in state:
            self.reference.load_state_dict(state["reference"])
        if self.greedy is not None and "greedy" in state:
            self.greedy.load_state_dict(state["greedy"])


def _frozen(module: nn.Module) -> nn.Module:
    """A copy that never trains (the KL reference)."""
    frozen = copy.deepcopy(module)
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


def _like(seeds: Any, seed: int) -> Any:
    """Reset seeds of the same form as ``seeds`` (a list per environment, or one int)."""
    if isinstance(seeds, list):
        return [derive_seed(seed, i) for i in range(len(seeds))]
    return seed


__all__ = ["SEQUENCE_ESTIMATORS", "SequenceAlgorithm", "SequenceBatch"]
