"""A small causal transformer for token tasks, with a key-value cache for batched decoding.

Sampling tokens is sampling actions: the model's last-position logits are a policy over the
vocabulary. :class:`CausalTransformer` maps token ids to next-token logits (a pre-norm GPT block
stack: Radford et al., 2019; attention by ``F.scaled_dot_product_attention``), and reads the
token environments' observations directly (:meth:`CausalTransformer.policy_logits`), so it can
serve as a policy's encoder.

Generating ``T`` tokens for ``N`` sequences by re-running the full forward pass costs
``O(T^2)`` token passes per sequence; with a :class:`KVCache` each new token is one batched
forward of one position per sequence, attending to the cached keys and values of the earlier
positions. Rows may sit at different positions (prompts of different lengths): each row writes
its own position and attends to its own prefix.

==============  ==============  ============================================================
symbol          shape           meaning
==============  ==============  ============================================================
``tokens``      ``[B, L]``      token ids, right-padded; position ``t`` sees ``0..t`` only
``lengths``     ``[B]``         how many entries of each row are real
logits          ``[B, L, V]``   next-token logits at every position
``KVCache``     per layer       keys and values ``[B, H, max_length, d_head]``, ``positions
                                [B]`` (the next position each row writes)
==============  ==============  ============================================================
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass
class KVCache:
    """Keys and values of every layer for the positions decoded so far.

    Attributes:
        keys: per layer, ``[B, H, max_length, d_head]``; entries at and beyond ``positions`` are
            stale and never attended to.
        values: per layer, same shape.
        positions: ``[B]`` the position each row writes next (its current length).
    """

    keys: list[Tensor]
    values: list[Tensor]
    positions: Tensor


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (Vaswani et al., 2017) over a whole sequence or one step.

    Args:
        d_model: embedding width; a multiple of ``num_heads``.
        num_heads: attention heads.
    """

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, T, D]`` -> query, key, value ``[B, H, T, D / H]``."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return tuple(t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, T, D]`` -> (output ``[B, T, D]``, keys, values ``[B, H, T, D / H]``)."""
        q, k, v = self._heads(x)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(attended.transpose(1, 2).flatten(2)), k, v

    def step(self, x: Tensor, keys: Tensor, values: Tensor, positions: Tensor) -> Tensor:
        """One new position per row: ``x [B, 1, D]`` written at ``positions [B]`` of the cache.

        The cache tensors are updated in place; row ``b`` attends to its positions
        ``0..positions[b]``.
        """
        q, k, v = self._heads(x)
        rows = torch.arange(x.shape[0], device=x.device)
        keys[rows, :, positions] = k[:, :, 0]
        values[rows, :, positions] = v[:, :, 0]
        visible = torch.arange(keys.shape[2], device=x.device) <= positions[:, None]  # [B, S]
        attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible[:, None, None])
        return self.out(attended.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, num_heads)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        attended, k, v = self.attention(self.norm_attention(x))
        x = x + attended
        return x + self.mlp(self.norm_mlp(x)), k, v

    def step(self, x: Tensor, keys: Tensor, values: Tensor, positions: Tensor) -> Tensor:
        x = x + self.attention.step(self.norm_attention(x), keys, values, positions)
        return x + self.mlp(self.norm_mlp(x))


class CausalTransformer(nn.Module):
    """A decoder-only transformer: token ids ``[B, L]`` to next-token logits ``[B, L, V]``.

    Learned token and position embeddings, ``num_layers`` pre-norm blocks, a final LayerNorm and
    a linear head. Padding needs no attention mask: with right padding and causal attention no
    real position ever sees a pad.

    Three ways in:

    * ``model(tokens)``: logits at every position, for the loss (one pass over whole sequences);
    * ``model.policy_logits(obs)``: a token environment's (batched) observation to the masked
      logits of the next token ``[B, V]``, recomputing the whole prefix (a policy encoder's view);
    * ``model.prefill(tokens, lengths)`` then ``model.decode(cache, next_tokens)``: the same
      next-token logits, one position per call, with a :class:`KVCache`.

    Example:
        >>> model = CausalTransformer(vocab_size=13, max_length=16)
        >>> tokens = torch.randint(3, 13, (4, 5))
        >>> logits, cache = model.prefill(tokens, torch.full((4,), 5))
        >>> logits.shape, model.decode(cache, logits.argmax(-1)).shape
        (torch.Size([4, 13]), torch.Size([4, 13]))

    Args:
        vocab_size: ``V``, number of token ids.
        max_length: the longest sequence (prompt and generated tokens) the model will see.
        d_model: embedding width.
        num_heads: attention heads; must divide ``d_model``.
        num_layers: transformer blocks.

    Raises:
        ValueError: for a size below 1 or ``d_model`` not a multiple of ``num_heads``.
    """

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
    ) -> None:
        super().__init__()
        for name, value in [
            ("vocab_size", vocab_size),
            ("max_length", max_length),
            ("d_model", d_model),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
        ]:
            _check_size(name, value)
        vocab_size, max_length = int(vocab_size), int(max_length)
        d_model, num_heads, num_layers = int(d_model), int(num_heads), int(num_layers)
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_length, d_model)
        self.blocks = nn.ModuleList(Block(d_model, num_heads) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(_init_weights)

    def forward(self, tokens: Tensor) -> Tensor:
        """``[B, L]`` token ids -> ``[B, L, V]`` logits; position ``t`` predicts token ``t + 1``."""
        return self._forward(tokens)[0]

    def policy_logits(self, obs: dict[str, Tensor]) -> Tensor:
        """The next-token logits ``[B, V]`` for a batch of token-environment observations.

        Args:
            obs: ``tokens [B, L]``, ``length [B]`` and ``action_mask [B, V]`` as the token
                environments give them (:mod:`pgrad.envs.tokens`), batched as tensors.

        Returns:
            ``[B, V]`` logits at position ``length - 1``; masked tokens get the lowest finite
            float, so they have probability 0 and are never sampled or chosen.
        """
        tokens = obs["tokens"].long()
        last = obs["length"].long().reshape(-1) - 1
        logits = self(tokens)[torch.arange(tokens.shape[0], device=tokens.device), last]
        return mask_logits(logits, obs["action_mask"])

    def prefill(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, KVCache]:
        """Run the prompts once and cache their keys and values.

        Args:
            tokens: ``[B, P]`` right-padded prompts, ``P <= max_length``.
            lengths: ``[B]`` prompt lengths in ``[1, P]``.

        Returns:
            ``(logits [B, V], cache)``: the next-token logits after each prompt, and a cache
            whose ``positions`` are ``lengths``.
        """
        batch, length = tokens.shape
        logits, keys, values = self._forward(tokens)
        full = (batch, keys[0].shape[1], self.max_length, keys[0].shape[-1])
        cache = KVCache([], [], lengths.long().clone())
        for k, v in zip(keys, values):
            cache.keys.append(k.new_zeros(full))
            cache.values.append(v.new_zeros(full))
            cache.keys[-1][:, :, :length] = k
            cache.values[-1][:, :, :length] = v
        rows = torch.arange(batch, device=tokens.device)
        return logits[rows, cache.positions - 1], cache

    def decode(self, cache: KVCache, tokens: Tensor) -> Tensor:
        """Append one token per row and return the logits of the token after it.

        Args:
            cache: from :meth:`prefill`, updated in place (each row's position advances by 1).
            tokens: ``[B]`` the tokens to append.

        Returns:
            ``[B, V]`` next-token logits.

        Raises:
            ValueError: if a row would pass ``max_length``.
        """
        if int(cache.positions.max()) >= self.max_length:
            raise ValueError(f"a sequence would exceed max_length={self.max_length}")
        positions = cache.positions
        x = (
            self.token_embedding(tokens.long())[:, None]
            + self.position_embedding(positions)[:, None]
        )
        for block, keys, values in zip(self.blocks, cache.keys, cache.values):
            x = block.step(x, keys, values, positions)
        cache.positions = positions + 1
        return self.head(self.norm(x[:, 0]))

    def _forward(self, tokens: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        if tokens.ndim != 2 or tokens.shape[1] > self.max_length:
            raise ValueError(
                f"tokens must be [B, L] with L <= max_length={self.max_length}, got "
                f"{tuple(tokens.shape)}"
            )
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens.long()) + self.position_embedding(positions)
        keys, values = [], []
        for block in self.blocks:
            x, k, v = block(x)
            keys.append(k)
            values.append(v)
        return self.head(self.norm(x)), keys, values


@torch.no_grad()
def generate(
    model: CausalTransformer,
    tokens: Tensor,
    lengths: Tensor,
    steps: int,
    *,
    greedy: bool = False,
    action_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Continue ``B`` prompts by ``steps`` tokens each, one batched forward per token.

    Args:
        model: the transformer.
        tokens: ``[B, P]`` right-padded prompts.
        lengths: ``[B]`` prompt lengths.
        steps: tokens to generate per row; ``max(lengths) + steps <= model.max_length``.
        greedy: take the argmax instead of sampling.
        action_mask: ``[V]`` or ``[B, V]``, 1 for the tokens that may be generated.
        generator: the random source for sampling.
        use_cache: decode with a :class:`KVCache` (one position per step); ``False`` re-runs
            the whole prefix every step, the reference the cache must agree with.

    Returns:
        ``[B, steps]`` the generated tokens.
    """
    batch = tokens.shape[0]
    rows = torch.arange(batch, device=tokens.device)
    positions = lengths.long().clone()
    buffer = tokens.new_zeros(batch, int(positions.max()) + steps)
    buffer[:, : tokens.shape[1]] = tokens
    generated = tokens.new_zeros(batch, steps)
    if use_cache:
        logits, cache = model.prefill(tokens, positions)
    for t in range(steps):
        if not use_cache:
            logits = model(buffer[:, : int(positions.max())])[rows, positions - 1]
        if action_mask is not None:
            logits = mask_logits(logits, action_mask)
        if greedy:
            token = logits.argmax(-1)
        else:
            token = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
        generated[:, t] = token
        buffer[rows, positions] = token
        positions = positions + 1
        if use_cache and t < steps - 1:
            logits = model.decode(cache, token)
    return generated


def mask_logits(logits: Tensor, action_mask: Tensor) -> Tensor:
    """``logits`` with the entries where ``action_mask`` is 0 set to the lowest finite float.

    The lowest finite value rather than ``-inf``: the probability is still exactly 0 after a
    softmax, and a row with every action masked gives a uniform distribution instead of nan.
    """
    return logits.masked_fill(action_mask == 0, torch.finfo(logits.dtype).min)


def _check_size(name: str, value: int) -> None:
    try:
        valid = not isinstance(value, bool) and operator.index(value) >= 1
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _init_weights(module: nn.Module) -> None:
    # GPT-2's initialisation: small normal weights, zero biases.
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


__all__ = ["CausalTransformer", "KVCache", "generate", "mask_logits"]
