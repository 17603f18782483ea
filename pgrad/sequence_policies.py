"""Policies for sequence environments: next tokens from a causal language model, next cities from
Kool's attention model. Sampling tokens is sampling actions.

Both keep the policy contract (``forward(obs)`` -> a fresh distribution, ``mode``, ``to_env``;
see ``pgrad.policies.check_policy``), so the collector, evaluation, checkpoints and Ray workers
use them unchanged. :func:`sequence_policy_for` picks one by the observation's keys:

=====================  ===========================================  ==============================
observation keys       environment                                  policy
=====================  ===========================================  ==============================
``tokens``,            the token tasks (:mod:`pgrad.envs.tokens`)   :class:`TokenPolicy` over a
``length``,                                                         :class:`~pgrad.transformer.
``action_mask``                                                     CausalTransformer`
``coords``,            ``pgrad/TSP-v0`` (:mod:`pgrad.envs.tsp`)     :class:`TourPolicy` over an
``current``,                                                        :class:`~pgrad.attention_model.
``first``,                                                          AttentionModel`
``action_mask``
=====================  ===========================================  ==============================

**One forward per sequence in an update.** An update scores ``[T, N]`` observations: ``T``
prefixes of each of ``N`` sequences. Read environment by environment, each observation extends
the one before by one token until the episode ends, and with causal attention the logits of
every prefix are rows of the forward pass over the longest one. :class:`TokenPolicy` finds these
chains (same prefix, one token longer) and runs the model once per chain, not once per
observation: ``T`` times fewer token passes. :class:`TourPolicy` likewise encodes each instance
once however many tours and steps share it, and decodes all their steps against that one
encoding.

**Caches while collecting.** Under ``torch.no_grad`` (the collector's inference mode) and for a
batch ``[N]`` of observations, :class:`TokenPolicy` keeps the model's key-value cache
(:class:`~pgrad.transformer.KVCache`) between calls: a row whose tokens extend the previous
call's row by one token is decoded in one position; any other row (a reset, a new episode) is
prefilled afresh. :class:`TourPolicy` keeps the instance encodings while the cities stay the
same. Both caches are keyed on the parameters' version counters, so an optimizer step or a
``load_state_dict`` empties them; a cached step is exactly the full forward's distribution up to
rounding (``tests/test_sequence_agent.py`` checks it along a rollout).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Distribution

from pgrad.attention_model import AttentionModel, Encoding
from pgrad.obs import Obs
from pgrad.policies import GumbelCategorical
from pgrad.transformer import CausalTransformer, KVCache, mask_logits

TOKEN_KEYS = ("tokens", "length", "action_mask")
"""The observation keys of a token environment."""
TOUR_KEYS = ("coords", "current", "first", "action_mask")
"""The observation keys of a tour-building environment (TSP)."""


def is_token_space(space: gym.Space) -> bool:
    """A ``Dict`` with ``tokens`` (a 1-d ``MultiDiscrete``), ``length`` and ``action_mask``."""
    return (
        isinstance(space, spaces.Dict)
        and all(k in space.spaces for k in TOKEN_KEYS)
        and isinstance(space["tokens"], spaces.MultiDiscrete)
        and len(space["tokens"].shape) == 1
    )


def is_tour_space(space: gym.Space) -> bool:
    """A ``Dict`` with ``coords`` (a ``[n, 2]`` ``Box``), ``current``, ``first``, ``action_mask``."""
    return (
        isinstance(space, spaces.Dict)
        and all(k in space.spaces for k in TOUR_KEYS)
        and isinstance(space["coords"], spaces.Box)
        and len(space["coords"].shape) == 2
        and space["coords"].shape[1] == 2
    )


def _versions(module: nn.Module) -> tuple[int, ...]:
    """The parameters' in-place version counters: any optimizer step or load changes them."""
    return tuple(p._version for p in module.parameters())


def _env_major(x: Tensor, batch_ndim: int) -> Tensor:
    """``[T, N, ...]`` -> ``[N * T, ...]`` (environment by environment); ``[N, ...]`` as is."""
    if batch_ndim == 2:
        return x.transpose(0, 1).flatten(0, 1)
    return x.flatten(0, batch_ndim - 1) if batch_ndim > 1 else x


def _from_env_major(x: Tensor, batch: torch.Size) -> Tensor:
    """Undo :func:`_env_major`: ``[N * T, ...]`` -> ``[T, N, ...]``."""
    if len(batch) == 2:
        return x.unflatten(0, (batch[1], batch[0])).transpose(0, 1)
    return x.unflatten(0, batch) if len(batch) != 1 else x


class _SequencePolicy(nn.Module):
    """The categorical head both sequence policies share: masked logits to a distribution."""

    action_space: spaces.Discrete

    def distribution(self, logits: Tensor) -> Distribution:
        return GumbelCategorical(logits=logits, validate_args=False)

    def mode(self, dist: Distribution) -> Tensor:
        """The most likely token or city (greedy decoding)."""
        return dist.logits.argmax(-1)  # type: ignore[attr-defined]

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.cpu().numpy()


@dataclass
class _TokenCache:
    key: tuple[Any, ...]
    tokens: Tensor
    lengths: Tensor
    cache: KVCache


class _NativeCache:
    """The cache of a model with ``prefill(tokens, lengths)`` and ``decode(cache, tokens)``,
    as :class:`~pgrad.transformer.CausalTransformer`: a :class:`~pgrad.transformer.KVCache`
    with room for ``max_length`` positions per row."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def prefill(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, KVCache]:
        return self.model.prefill(ids, lengths)

    def decode(self, cache: KVCache, ids: Tensor, positions: Tensor) -> Tensor:
        cache.positions = positions
        return self.model.decode(cache, ids)

    def splice(self, cache: KVCache, rows: Tensor, fresh: KVCache) -> bool:
        for old, new in zip((*cache.keys, *cache.values), (*fresh.keys, *fresh.values)):
            old[rows] = new
        cache.positions[rows] = fresh.positions
        return True

    def full(self, cache: KVCache, length: int) -> bool:
        return False


@dataclass
class _HFState:
    cache: Any
    """The model's own cache object (a ``DynamicCache``): ``[B, H, S, d]`` per layer."""
    mask: Tensor
    """``[B, S]``: 1 for the cache entries a row attends to."""


class _HFCache:
    """The cache of a Hugging Face causal LM, driven through its ``forward``.

    Rows are right-padded: a row's entries are its tokens, then padding (masked by
    ``attention_mask``); each decoding step appends one entry to every row at the row's own
    ``position_ids``. A row that restarts gets its fresh prompt's entries written over the first
    slots of its cache and the rest masked (``DynamicCache`` layers with ``keys`` and
    ``values``; otherwise every row is prefilled again).
    """

    def __init__(self, model: nn.Module, cache_argument: str) -> None:
        self.model = model
        self.cache_argument = cache_argument

    def _run(self, ids: Tensor, mask: Tensor, positions: Tensor, cache: Any) -> tuple[Tensor, Any]:
        extra = {self.cache_argument: cache} if cache is not None else {}
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra
        )
        new_cache = out.get("cache") if out.get("cache") is not None else out.past_key_values
        return out.logits, new_cache

    def prefill(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, _HFState]:
        width = ids.shape[1]
        positions = torch.arange(width, device=ids.device).expand(ids.shape[0], width)
        mask = (positions < lengths[:, None]).long()
        logits, cache = self._run(ids, mask, positions, None)
        rows = torch.arange(ids.shape[0], device=ids.device)
        return logits[rows, lengths - 1], _HFState(cache, mask)

    def decode(self, state: _HFState, ids: Tensor, positions: Tensor) -> Tensor:
        state.mask = torch.cat([state.mask, state.mask.new_ones(len(ids), 1)], dim=1)
        logits, state.cache = self._run(ids[:, None], state.mask, positions[:, None], state.cache)
        return logits[:, 0]

    def splice(self, state: _HFState, rows: Tensor, fresh: _HFState) -> bool:
        layers = getattr(state.cache, "layers", None)
        fresh_layers = getattr(fresh.cache, "layers", None)
        width = fresh.mask.shape[1]
        if layers is None or fresh_layers is None or width > state.mask.shape[1]:
            return False
        for layer, new in zip(layers, fresh_layers):
            layer.keys[rows, :, :width] = new.keys
            layer.values[rows, :, :width] = new.values
        state.mask[rows] = 0
        state.mask[rows, :width] = fresh.mask
        return True

    def full(self, state: _HFState, length: int) -> bool:
        return state.mask.shape[1] >= 2 * length


def _cache_backend(model: nn.Module) -> _NativeCache | _HFCache | None:
    """How to decode ``model`` with a key-value cache, or ``None`` when it has no cache."""
    if all(callable(getattr(model, name, None)) for name in ("prefill", "decode")):
        return _NativeCache(model)
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    if {"attention_mask", "position_ids", "use_cache"} <= set(parameters):
        for name in ("cache", "past_key_values"):  # transformers >= 5 calls it "cache"
            if name in parameters:
                return _HFCache(model, name)
    return None


class TokenPolicy(_SequencePolicy):
    """A causal language model as a policy over a token environment's next token.

    The model is any ``nn.Module`` mapping token ids ``[B, L]`` to next-token logits
    ``[B, L, V_model]`` (or to an output whose ``.logits`` is that, as a Hugging Face causal LM
    returns); position ``t``'s logits predict token ``t + 1``. The policy's distribution at an
    observation is the categorical of the logits at position ``length - 1``, restricted to the
    environment's tokens and masked by its ``action_mask``.

    ================  ==============  ==========================================================
    observation       shape           meaning
    ================  ==============  ==========================================================
    ``tokens``        ``[*B, L]``     prompt, ``<sep>``, tokens so far, then padding
    ``length``        ``[*B]``        how many entries are written
    ``action_mask``   ``[*B, V]``     1 for the tokens the policy may emit
    returned          batch ``B``     a categorical over the environment's ``V`` tokens
    ================  ==============  ==========================================================

    Example (a Hugging Face model with its own vocabulary)::

        ids = tokenizer.convert_tokens_to_ids(list(env.unwrapped.vocabulary))
        policy = TokenPolicy(gpt2, token_ids=ids)

    Args:
        model: the language model. It is kept in ``eval()`` mode: dropout would make the policy
            that samples differ from the one that is scored. A Hugging Face model's own
            ``use_cache`` is turned off (the policy manages caching).
        token_ids: the model's id of each environment token, ``[V]`` (``None``: the same ids,
            ``V_model == V``).
        use_cache: decode with the model's key-value cache while collecting, when the model has
            one: ``prefill(tokens, lengths)`` and ``decode(cache, tokens)``, as
            :class:`~pgrad.transformer.CausalTransformer`, or a Hugging Face causal LM's own
            (``forward`` with ``attention_mask``, ``position_ids`` and a cache argument);
            otherwise every step re-runs the prefix.

    Raises:
        ValueError: ``token_ids`` that is not a 1-d list of non-negative ids.
    """

    def __init__(
        self,
        model: nn.Module,
        token_ids: Sequence[int] | Tensor | None = None,
        use_cache: bool = True,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "use_cache"):
            config.use_cache = False
        if token_ids is not None:
            ids = torch.as_tensor(token_ids, dtype=torch.long)
            if ids.ndim != 1 or ids.numel() == 0 or int(ids.min()) < 0:
                raise ValueError(f"token_ids must be a 1-d list of ids >= 0, got {token_ids!r}")
            self.register_buffer("token_ids", ids, persistent=False)
        else:
            self.token_ids = None
        self._backend = _cache_backend(model)
        self.use_cache = use_cache and self._backend is not None
        self._cache: _TokenCache | None = None

    def train(self, mode: bool = True) -> TokenPolicy:
        super().train(mode)
        self.model.eval()
        return self

    # -- the model, in the environment's vocabulary ---------------------------------------------
    def _model_ids(self, tokens: Tensor) -> Tensor:
        return tokens.long() if self.token_ids is None else self.token_ids[tokens.long()]

    def _env_logits(self, logits: Tensor) -> Tensor:
        return logits if self.token_ids is None else logits[..., self.token_ids]

    def sequence_logits(self, tokens: Tensor) -> Tensor:
        """The model's logits over the environment's tokens at every position: ``[B, L, V]``."""
        out = self.model(self._model_ids(tokens))
        return self._env_logits(getattr(out, "logits", out))

    # -- the policy -------------------------------------------------------------------------------
    def forward(self, obs: Obs) -> Distribution:
        tokens, lengths, mask = obs["tokens"], obs["length"].long(), obs["action_mask"]
        batch = lengths.shape
        if self.use_cache and lengths.ndim == 1 and not torch.is_grad_enabled():
            logits = self._cached_logits(tokens, lengths)
        else:
            logits = _from_env_major(
                self.prefix_logits(_env_major(tokens, len(batch)), _env_major(lengths, len(batch))),
                batch,
            )
        if logits.shape[-1] != mask.shape[-1]:
            raise ValueError(
                f"the model gives logits over {logits.shape[-1]} tokens but the environment "
                f"has {mask.shape[-1]}; pass token_ids to map the environment's tokens"
            )
        return self.distribution(mask_logits(logits, mask))

    def prefix_logits(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Next-token logits ``[B, V]`` of rows ``tokens [B, L]``, one forward per chain.

        Row ``j + 1`` continues row ``j`` when it has the same first ``lengths[j]`` tokens and
        one more; by causality row ``j``'s logits are then those of row ``j + 1``'s forward at
        position ``lengths[j] - 1``. Each chain of continuations runs once, at its last row.
        """
        rows = tokens.shape[0]
        if rows == 0:
            return self.sequence_logits(tokens[:, :1])[:, 0]
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        previous = lengths[:-1]
        same_prefix = ((tokens[1:] == tokens[:-1]) | (positions >= previous[:, None])).all(1)
        continues = same_prefix & (lengths[1:] == previous + 1)
        is_last = torch.ones(rows, dtype=torch.bool, device=tokens.device)
        is_last[:-1] = ~continues
        last = is_last.nonzero().squeeze(1)  # [C] the row that runs each chain
        chain = torch.searchsorted(last, torch.arange(rows, device=tokens.device))
        width = int(lengths[last].max())
        logits = self.sequence_logits(tokens[last, :width])  # [C, width, V]
        return logits[chain, lengths - 1]

    @torch.no_grad()
    def _cached_logits(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``prefix_logits`` for a batch ``[N]``, decoding one position per continued row.

        Rows that do not continue the previous call's (a reset, a new episode) are prefilled
        on their own and spliced into the cache; all rows are prefilled afresh when the cache
        cannot take them (or has grown to twice the observation's length, since rows that
        restart leave unused entries behind in a Hugging Face cache).
        """
        backend = self._backend
        assert backend is not None
        rows = tokens.shape[0]
        key = (rows, torch.is_inference_mode_enabled(), tokens.device, _versions(self))
        state = self._cache
        if state is None or state.key != key or backend.full(state.cache, tokens.shape[1]):
            continues = torch.zeros(rows, dtype=torch.bool, device=tokens.device)
        else:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
            same_prefix = ((tokens == state.tokens) | (positions >= state.lengths[:, None])).all(1)
            continues = same_prefix & (lengths == state.lengths + 1)
        ids = self._model_ids(tokens)
        restart = (~continues).nonzero().squeeze(1)
        logits = None
        if restart.numel() < rows:
            assert state is not None
            cache = state.cache
            # the new token of each continued row at its position; rows that restart write a
            # throwaway entry (at position 0), replaced by the splice below
            newest = ids[torch.arange(rows, device=ids.device), (lengths - 1).clamp(min=0)]
            logits = backend.decode(cache, newest, torch.where(continues, lengths - 1, 0))
            if restart.numel():
                width = int(lengths[restart].max())
                fresh_logits, fresh = backend.prefill(ids[restart, :width], lengths[restart])
                if backend.splice(cache, restart, fresh):
                    logits[restart] = fresh_logits
                else:
                    logits = None
        if logits is None:
            width = int(lengths.max())
            logits, cache = backend.prefill(ids[:, :width], lengths)
        self._cache = _TokenCache(key, tokens.clone(), lengths.clone(), cache)
        return self._env_logits(logits)

    def clear_cache(self) -> None:
        """Forget the key-value cache (it is also dropped whenever the weights change)."""
        self._cache = None


@dataclass
class _TourCache:
    key: tuple[Any, ...]
    coords: Tensor
    encoding: Encoding


class TourPolicy(_SequencePolicy):
    """Kool et al.'s attention model as a policy over the next city of a tour.

    ================  ================  ========================================================
    observation       shape             meaning
    ================  ================  ========================================================
    ``coords``        ``[*B, n, 2]``    the instance's cities
    ``current``       ``[*B]``          the city visited last
    ``first``         ``[*B]``          the start city
    ``action_mask``   ``[*B, n]``       1 for cities not yet visited
    returned          batch ``B``       a categorical over the ``n`` cities
    ================  ================  ========================================================

    Consecutive observations (environment by environment) with equal ``coords`` form a run;
    each run's instance is encoded once and all its rows are decoded against that encoding
    (:meth:`~pgrad.attention_model.AttentionModel.decode` with ``R`` queries per instance), so
    POMO's ``n`` tours of an instance, and every step of them in an update, share one
    encoding.

    Args:
        model: the attention model.
    """

    def __init__(self, model: AttentionModel) -> None:
        super().__init__()
        self.model = model
        self._cache: _TourCache | None = None

    def forward(self, obs: Obs) -> Distribution:
        batch = obs["current"].shape
        flat = [
            _env_major(obs[k], len(batch)) for k in ("coords", "current", "first", "action_mask")
        ]
        # collecting (no gradient, a batch [N]) keeps and reuses the encodings
        cache = len(batch) == 1 and not torch.is_grad_enabled()
        logits = _from_env_major(self.tour_logits(*flat, cache=cache), batch)
        return self.distribution(logits)

    def tour_logits(
        self,
        coords: Tensor,
        current: Tensor,
        first: Tensor,
        action_mask: Tensor,
        cache: bool = False,
    ) -> Tensor:
        """Logits ``[R, n]`` of rows ``coords [R, n, 2]``, ``current``, ``first`` ``[R]``,
        ``action_mask [R, n]``, encoding each run of equal ``coords`` once."""
        rows = coords.shape[0]
        device = coords.device
        new_run = torch.ones(rows, dtype=torch.bool, device=device)
        new_run[1:] = (coords[1:] != coords[:-1]).flatten(1).any(1)
        run = new_run.long().cumsum(0) - 1  # [R] the run of each row
        starts = new_run.nonzero().squeeze(1)  # [U] the first row of each run
        offset = torch.arange(rows, device=device) - starts[run]  # the row's place in its run
        width = int(offset.max()) + 1 if rows else 1
        encoding = self._encode(coords, starts, cache)
        # [U, width] row indices; padding repeats the run's first row, and is dropped below
        index = starts[:, None].repeat(1, width)
        index[run, offset] = torch.arange(rows, device=device)
        logits = self.model.decode(
            encoding, current[index], first[index], action_mask[index]
        )  # [U, width, n]
        return logits[run, offset]

    def _encode(self, coords: Tensor, starts: Tensor, cache: bool) -> Encoding:
        if not cache:
            return self.model.encode(coords[starts])
        key = (torch.is_inference_mode_enabled(), coords.device, _versions(self))
        state = self._cache
        if state is not None and state.key == key and torch.equal(state.coords, coords):
            return state.encoding
        with torch.no_grad():
            encoding = self.model.encode(coords[starts])
        self._cache = _TourCache(key, coords.clone(), encoding)
        return encoding

    def clear_cache(self) -> None:
        """Forget the cached encodings (they are also dropped whenever the weights change)."""
        self._cache = None


def sequence_policy_for(
    obs_space: gym.Space,
    action_space: gym.Space,
    d_model: int = 64,
    num_heads: int = 4,
    num_layers: int = 2,
) -> nn.Module | None:
    """The sequence policy for these spaces, or ``None`` when they are not a sequence task's.

    A token environment (:func:`is_token_space`, ``Discrete(V)`` actions) gets a
    :class:`TokenPolicy` over a fresh :class:`~pgrad.transformer.CausalTransformer`; a tour
    environment (:func:`is_tour_space`) a :class:`TourPolicy` over a fresh
    :class:`~pgrad.attention_model.AttentionModel` (feed-forward width ``4 * d_model``).
    """
    if not isinstance(action_space, spaces.Discrete):
        return None
    if is_token_space(obs_space):
        max_length = int(obs_space["tokens"].shape[0])
        model = CausalTransformer(int(action_space.n), max_length, d_model, num_heads, num_layers)
        policy: _SequencePolicy = TokenPolicy(model)
    elif is_tour_space(obs_space):
        model = AttentionModel(d_model, num_heads, num_layers, ff_hidden=4 * d_model)
        policy = TourPolicy(model)
    else:
        return None
    policy.action_space = action_space
    return policy


__all__ = [
    "TOKEN_KEYS",
    "TOUR_KEYS",
    "TokenPolicy",
    "TourPolicy",
    "is_token_space",
    "is_tour_space",
    "sequence_policy_for",
]
