"""Kool et al.'s attention model for routing: a city encoder and a pointer decoder.

Kool, van Hoof and Welling (2019), "Attention, Learn to Solve Routing Problems!". The encoder
embeds the ``n`` cities of an instance with a few layers of multi-head self-attention; the
decoder, at each step, builds a context from the graph embedding (the mean city embedding), the
first and the current city, lets it attend to the cities (a "glimpse"), and scores every city by
a single-head compatibility clipped with ``C * tanh``::

    h_c   = [mean_i h_i, h_first, h_current]          ([v_first, v_current] learned at step 0)
    q     = MHA(W_q h_c; keys, values from h_i; visited cities masked)
    u_j   = C * tanh(q . (W_k h_j) / sqrt(d))         (-> lowest float if j is visited)
    pi(j) = softmax(u)_j

It reads the observations of ``pgrad/TSP-v0`` (:mod:`pgrad.envs.tsp`) as tensors, so it can serve
as a policy's encoder; an all-ones ``action_mask`` marks the first step. Since the cities do not
change during a tour, :meth:`AttentionModel.encode` runs once per instance and
:meth:`AttentionModel.decode` once per step, as in the paper.

One change from the paper: LayerNorm instead of BatchNorm in the encoder. BatchNorm's output for
an instance depends on the rest of the batch in training and on running statistics in evaluation;
a policy-gradient update then scores actions under a slightly different policy than the one that
sampled them. LayerNorm normalises each city on its own.

==================  ==============  =========================================================
symbol              shape           meaning
==================  ==============  =========================================================
``coords``          ``[B, n, 2]``   city positions
``current``         ``[B]``         the city visited last
``first``           ``[B]``         the start city
``action_mask``     ``[B, n]``      1 for the cities not yet visited
logits              ``[B, n]``      masked compatibilities ``u``
==================  ==============  =========================================================
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pgrad.transformer import mask_logits


@dataclass
class Encoding:
    """What the decoder needs of an instance, computed once per instance.

    Attributes:
        nodes: ``[B, n, d]`` city embeddings ``h_i``.
        graph_query: ``[B, d]`` the graph embedding's part of the context query.
        glimpse_keys: ``[B, H, n, d / H]``.
        glimpse_values: ``[B, H, n, d / H]``.
        logit_keys: ``[B, n, d]``.
    """

    nodes: Tensor
    graph_query: Tensor
    glimpse_keys: Tensor
    glimpse_values: Tensor
    logit_keys: Tensor

    def index(self, rows: Tensor) -> Encoding:
        """The encodings of instances ``rows`` (e.g. each repeated for several rollouts)."""
        return Encoding(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))


class EncoderLayer(nn.Module):
    """``h <- norm(h + MHA(h))``, then ``h <- norm(h + FF(h))``."""

    def __init__(self, d_model: int, num_heads: int, ff_hidden: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.norm_attention = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, ff_hidden), nn.ReLU(), nn.Linear(ff_hidden, d_model)
        )
        self.norm_feed_forward = nn.LayerNorm(d_model)

    def forward(self, h: Tensor) -> Tensor:
        h = self.norm_attention(h + self.attention(h, h, h, need_weights=False)[0])
        return self.norm_feed_forward(h + self.feed_forward(h))


class AttentionModel(nn.Module):
    """The attention model: TSP observations ``->`` masked logits over cities ``[B, n]``.

    Example:
        >>> model = AttentionModel(d_model=32, num_heads=4, num_layers=1)
        >>> obs = {"coords": torch.rand(2, 5, 2), "current": torch.tensor([0, 3]),
        ...        "first": torch.tensor([0, 1]),
        ...        "action_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1]])}
        >>> model(obs).softmax(-1)[1, [1, 3]]
        tensor([0., 0.], grad_fn=<IndexBackward0>)

    Args:
        d_model: embedding width ``d`` (128 in the paper).
        num_heads: attention heads ``H``; must divide ``d_model`` (8 in the paper).
        num_layers: encoder layers (3 in the paper).
        ff_hidden: hidden width of the encoder's feed-forward sublayers (512 in the paper).
        clip: ``C`` of ``C * tanh`` (10 in the paper): bounds the logits, which keeps the
            policy from collapsing early and so helps exploration.

    Raises:
        ValueError: for a size below 1, ``d_model`` not a multiple of ``num_heads``, or
            ``clip <= 0``.
    """

    def __init__(
        self,
        d_model: int = 128,
        num_heads: int = 8,
        num_layers: int = 3,
        ff_hidden: int = 512,
        clip: float = 10.0,
    ) -> None:
        super().__init__()
        for name, value in [
            ("d_model", d_model),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
            ("ff_hidden", ff_hidden),
        ]:
            try:
                valid = not isinstance(value, bool) and operator.index(value) >= 1
            except TypeError:
                valid = False
            if not valid:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of num_heads={num_heads}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.d_model, self.num_heads, self.clip = int(d_model), int(num_heads), float(clip)
        self.embed = nn.Linear(2, d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, ff_hidden) for _ in range(num_layers)
        )
        # Context projection W_q split by part: graph, first, current (the paper's concatenation).
        self.query_graph = nn.Linear(d_model, d_model, bias=False)
        self.query_first_current = nn.Linear(2 * d_model, d_model, bias=False)
        self.placeholder = nn.Parameter(torch.empty(2 * d_model).uniform_(-1, 1))
        self.glimpse_kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.glimpse_out = nn.Linear(d_model, d_model, bias=False)
        self.logit_key = nn.Linear(d_model, d_model, bias=False)

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        """Observations (``coords``, ``current``, ``first``, ``action_mask``) -> logits ``[B, n]``."""
        return self.decode(
            self.encode(obs["coords"]), obs["current"], obs["first"], obs["action_mask"]
        )

    def encode(self, coords: Tensor) -> Encoding:
        """Embed the cities of each instance: ``[B, n, 2]`` -> :class:`Encoding`."""
        if coords.ndim != 3 or coords.shape[-1] != 2:
            raise ValueError(f"coords must be [B, n, 2], got {tuple(coords.shape)}")
        h = self.embed(coords.float())
        for layer in self.layers:
            h = layer(h)
        keys, values = self.glimpse_kv(h).chunk(2, dim=-1)
        return Encoding(
            nodes=h,
            graph_query=self.query_graph(h.mean(dim=1)),
            glimpse_keys=self._heads(keys),
            glimpse_values=self._heads(values),
            logit_keys=self.logit_key(h),
        )

    def decode(
        self, encoding: Encoding, current: Tensor, first: Tensor, action_mask: Tensor
    ) -> Tensor:
        """One decoding step: the masked logits of the next city.

        Several partial tours of one instance may be decoded at once: with ``R`` queries per
        instance they attend to the instance's one encoding (POMO's rollouts, or every step of
        a tour in an update) instead of a copy of it per tour.

        Args:
            encoding: from :meth:`encode`, ``U`` instances.
            current: ``[U]`` or ``[U, R]`` the city visited last.
            first: the start city, shaped like ``current``.
            action_mask: ``[U, n]`` or ``[U, R, n]``, 1 for unvisited cities; all ones marks
                the first step.

        Returns:
            ``[U, n]`` or ``[U, R, n]`` logits; visited cities get the lowest finite float
            (probability 0).
        """
        single = current.ndim == 1
        if single:
            current, first, action_mask = current[:, None], first[:, None], action_mask[:, None]
        legal = action_mask != 0  # [U, R, n]
        nodes = encoding.nodes  # [U, n, d]
        width = nodes.shape[-1]

        def gather(cities: Tensor) -> Tensor:  # [U, R] -> [U, R, d]
            return nodes.gather(1, cities.long()[..., None].expand(-1, -1, width))

        ends = torch.cat([gather(first), gather(current)], dim=-1)
        # Before the first city there is no first or current city: the learned placeholders.
        ends = torch.where(legal.all(-1, keepdim=True), self.placeholder.expand_as(ends), ends)
        query = encoding.graph_query[:, None] + self.query_first_current(ends)  # [U, R, d]
        glimpse = nn.functional.scaled_dot_product_attention(
            self._heads(query),
            encoding.glimpse_keys,
            encoding.glimpse_values,
            # A finished tour (nothing legal) attends to every city rather than to none, which
            # gives nan on some torch versions (zeros on recent ones).
            attn_mask=(legal | ~legal.any(-1, keepdim=True))[:, None],
        )  # [U, H, R, d / H]
        query = self.glimpse_out(glimpse.transpose(1, 2).flatten(2))  # [U, R, d]
        compatibility = torch.einsum("urd,und->urn", query, encoding.logit_keys)
        logits = mask_logits(
            self.clip * torch.tanh(compatibility / math.sqrt(self.d_model)), action_mask
        )
        return logits[:, 0] if single else logits

    def _heads(self, x: Tensor) -> Tensor:
        """``[B, m, d]`` -> ``[B, H, m, d / H]``."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)


__all__ = ["AttentionModel", "Encoding"]
