"""Batched token sampling with per-row parameters and per-request reproducible randomness.

Each row of a batch has its own temperature, top-k, top-p, allowed-id mask and random stream.
The randomness is a counter-based hash of (request key, step, candidate), not a shared
``torch.Generator``: a request's draws depend only on its own seed and how many tokens it has
generated, so a seeded request gives the same tokens whichever other requests share its batch,
and sampling needs no host round trip. Drawing with Gumbel noise over the top-k candidates is
the same distribution as ``multinomial`` over their renormalised probabilities.

``sample_allowed`` draws the very same tokens from a gathered table of each row's allowed ids
instead of the whole vocabulary (8,194 candidates instead of 166,000 for the semantic phase):
the same values in the same order, so only ties between equal logits may be broken otherwise.
Its shapes are fixed, so the engine captures it inside the decode step's CUDA graph.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch

from veena.plugins.spark.engine.base import SamplingParams, TokenRequest, TokenSet

_M32 = 0xFFFFFFFF


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (Wellons' lowbias32) applied elementwise to an int64 tensor.

    Values stay in [0, 2**32); products wrap in int64, and only their low 32 bits are kept.
    """
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def request_key(seed: int | None) -> int:
    """The 32-bit key of a request's random stream (a fresh random key without a seed)."""
    if seed is None:
        return secrets.randbits(32)
    lo, hi = torch.tensor([seed & _M32]), torch.tensor([(seed >> 32) & _M32])
    return int(hash32(lo ^ hash32(hi + 0x9E3779B9)))


@dataclass(slots=True)
class RowParams:
    """Sampling inputs of a batch, one entry per row, as tensors on the model's device."""

    temperature: torch.Tensor
    """float32 (B,); 0 means greedy."""
    top_k: torch.Tensor
    """int64 (B,); already clamped to [1, vocab]."""
    top_p: torch.Tensor
    """float32 (B,)."""
    key: torch.Tensor
    """int64 (B,) request keys from ``request_key``."""
    step: torch.Tensor
    """int64 (B,) tokens the request has generated so far."""
    mask_index: torch.Tensor
    """int64 (B,) row of the mask table each row samples from."""

    @classmethod
    def build(cls, params: list[SamplingParams], keys: list[int], steps: list[int],
              mask_index: list[int], vocab: int, device: torch.device) -> RowParams:
        def t(values, dtype):
            return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)

        return cls(t([p.temperature for p in params], torch.float32),
                   t([min(p.top_k, vocab) if p.top_k > 0 else vocab for p in params], torch.int64),
                   t([p.top_p for p in params], torch.float32),
                   t(keys, torch.int64), t(steps, torch.int64), t(mask_index, torch.int64))

    @classmethod
    def buffers(cls, rows: int, device: torch.device) -> RowParams:
        """Fixed tensors for ``rows`` rows (what a CUDA graph reads), filled by ``load``."""
        def t(value, dtype):
            return torch.full((rows,), value, dtype=dtype, device=device)

        return cls(t(1.0, torch.float32), t(1, torch.int64), t(1.0, torch.float32),
                   t(0, torch.int64), t(0, torch.int64), t(0, torch.int64))

    def load(self, params: list[SamplingParams], keys: list[int], steps: list[int],
             mask_index: list[int], vocab: int) -> RowParams:
        """Writes a batch's inputs into rows ``[0, n)`` of these buffers; returns views of them."""
        n = len(params)
        built = RowParams.build(params, keys, steps, mask_index, vocab, torch.device("cpu"))
        views = self.head(n)
        for name in self.__slots__:
            getattr(views, name).copy_(getattr(built, name))
        return views

    def head(self, n: int) -> RowParams:
        """Views of rows ``[0, n)``."""
        return RowParams(*(getattr(self, name)[:n] for name in self.__slots__))


def sample(logits: torch.Tensor, rows: RowParams, masks: torch.Tensor, max_k: int) -> torch.Tensor:
    """One token id per row of ``logits`` (B, V): mask, temperature, top-k, top-p, draw.

    ``masks`` is a (sets, V') bool table of allowed ids (V' >= V is cut to V); ``max_k`` is the
    largest top-k of the batch (a host-side int, so no sync is needed to size the candidates).
    """
    vocab = logits.shape[-1]
    logits = logits.float().masked_fill(~masks[rows.mask_index, :vocab], float("-inf"))
    return _draw(logits, rows, max_k, None)


def sample_allowed(logits: torch.Tensor, rows: RowParams, allowed: AllowedIds,
                   max_k: int) -> torch.Tensor:
    """``sample`` over each row's allowed ids only (``allowed.ids[rows.mask_index]``): the same
    draws, gathered first. Every row's set must be one ``allowed`` holds (``allowed.holds``)."""
    ids = allowed.ids[rows.mask_index]  # (B, M)
    values = logits.gather(1, ids).float()
    values = values.masked_fill(~allowed.valid[rows.mask_index], float("-inf"))
    return _draw(values, rows, max_k, ids)


def _draw(logits: torch.Tensor, rows: RowParams, max_k: int,
          ids: torch.Tensor | None) -> torch.Tensor:
    """Greedy or top-k/top-p draw per row over masked ``logits`` (B, C); ``ids`` (B, C) maps
    candidate columns to token ids (None: columns are the ids)."""
    greedy = logits.argmax(dim=-1)
    k = max(1, min(max_k, logits.shape[-1]))
    values, indices = torch.topk(logits, k, dim=-1)
    rank = torch.arange(k, device=logits.device)
    values = values.masked_fill(rank[None, :] >= rows.top_k[:, None], float("-inf"))
    temperature = rows.temperature.clamp_min(1e-5)[:, None]
    probs = torch.softmax(values / temperature, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass of the candidates ranked above
    keep = (before < rows.top_p[:, None]) & (probs > 0)
    keep[:, 0] = True
    h = hash32(hash32(rows.key ^ rows.step)[:, None] + rank[None, :] * 0x9E3779B1)
    u = (h.double() + 0.5) / 2.0**32
    gumbel = -torch.log(-torch.log(u))
    scores = (torch.log(probs.double()) + gumbel).masked_fill(~keep, float("-inf"))
    drawn = indices.gather(1, scores.argmax(dim=-1, keepdim=True)).squeeze(1)
    if ids is not None:
        greedy = ids.gather(1, greedy[:, None]).squeeze(1)
        drawn = ids.gather(1, drawn[:, None]).squeeze(1)
    return torch.where(rows.temperature > 0, drawn, greedy)


def max_top_k(requests: list[TokenRequest]) -> int:
    """The largest top-k among ``requests`` (a top-k of 0 means the whole vocabulary)."""
    ks = [r.sampling.top_k for r in requests]
    return 1 << 30 if any(k <= 0 for k in ks) else max(ks)


class MaskTable:
    """Allowed-id rows, one per ``TokenSet`` (found by identity); row 0 allows every id.

    ``table`` is the bool mask ``sample`` reads; ``allowed`` the gathered ids ``sample_allowed``
    reads, allocated once (fixed shapes for CUDA graphs) for up to ``capacity`` sets of at most
    ``width`` ids each.
    """

    def __init__(self, vocab: int, device: torch.device, capacity: int = 16,
                 width: int = 16384) -> None:
        self.vocab = vocab
        self.device = device
        self.sets: list[TokenSet | None] = [None]
        self.table = torch.ones(1, vocab, dtype=torch.bool, device=device)
        self.allowed = AllowedIds(capacity, min(width, vocab), device)

    def index(self, allowed: TokenSet | None) -> int:
        """The row for ``allowed``, added on first use."""
        if allowed is None:
            return 0
        for i, known in enumerate(self.sets):
            if known is allowed:
                return i
        ids = sorted({i for i in allowed.ids if i < self.vocab})
        row = torch.zeros(1, self.vocab, dtype=torch.bool)
        row[0, torch.tensor(ids, dtype=torch.long)] = True
        self.sets.append(allowed)
        self.table = torch.cat([self.table, row.to(self.device)])
        self.allowed.put(len(self.sets) - 1, ids)
        return len(self.sets) - 1


class AllowedIds:
    """Per mask row, its allowed ids in ascending order, padded to ``width`` (``valid`` marks the
    real ones). Row 0 (every id) and sets wider than ``width`` are not held."""

    def __init__(self, capacity: int, width: int, device: torch.device) -> None:
        self.ids = torch.zeros(capacity, width, dtype=torch.long, device=device)
        self.valid = torch.zeros(capacity, width, dtype=torch.bool, device=device)
        self._held = [False] * capacity

    def put(self, row: int, ids: list[int]) -> None:
        if row >= len(self._held) or not ids or len(ids) > self.ids.shape[1]:
            return
        n = len(ids)
        self.ids[row, :n] = torch.tensor(ids, dtype=torch.long).to(self.ids.device)
        self.ids[row, n:] = ids[-1]
        self.valid[row, :n] = True
        self._held[row] = True

    def holds(self, rows: list[int]) -> bool:
        """Whether every mask row in ``rows`` is held (``sample_allowed`` can draw them)."""
        return all(r < len(self._held) and self._held[r] for r in rows)
