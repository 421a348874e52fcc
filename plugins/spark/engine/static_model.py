"""A Qwen2 causal LM run over a static, slot-addressed KV cache.

The Hugging Face model supplies the weights and the layer modules (projections, norms, MLPs);
this module owns the cache and the attention, so that rows of one batch can sit at different
positions (continuous batching) and every decode step has the same shapes (CUDA graphs).

The cache holds ``slots`` sequences of up to ``max_len`` tokens each, allocated once. Rows of a
decode step are the slots ``[0, B)``: the engine keeps live sequences packed at the front and
moves a sequence with ``move`` when one before it leaves. Keys beyond a row's position are never
read (they are masked), so a padding row may write junk into a free slot.
"""

from __future__ import annotations

from typing import Any

import torch


class StaticQwen2:
    """Prefill and decode over a fixed-size KV cache for a Hugging Face ``Qwen2ForCausalLM``."""

    def __init__(self, model: Any, slots: int, max_len: int) -> None:
        cfg = model.config
        layer_types = getattr(cfg, "layer_types", None) or []
        if getattr(cfg, "use_sliding_window", False) or any(t != "full_attention" for t in layer_types):
            raise ValueError("sliding-window attention is not supported by the static cache")
        inner = model.model
        self.model = model
        self.layers = list(inner.layers)
        self.embed = inner.embed_tokens
        self.norm = inner.norm
        self.lm_head = model.lm_head
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.group = self.heads // self.kv_heads
        self.scale = self.head_dim ** -0.5
        self.slots = slots
        self.max_len = max_len
        self.vocab = self.lm_head.weight.shape[0]
        weight = self.lm_head.weight
        self.device, self.dtype = weight.device, weight.dtype
        rotary = inner.rotary_emb
        positions = torch.arange(max_len, device=self.device, dtype=torch.float32)
        freqs = positions[:, None] * rotary.inv_freq.to(self.device, torch.float32)[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        scaling = float(getattr(rotary, "attention_scaling", 1.0))
        self.cos = (emb.cos() * scaling).to(self.dtype)
        self.sin = (emb.sin() * scaling).to(self.dtype)
        shape = (len(self.layers), slots, self.kv_heads, max_len, self.head_dim)
        self.k = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.v = torch.zeros(shape, dtype=self.dtype, device=self.device)

    @property
    def cache_bytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def forward(self, first_slot: int, ids: torch.Tensor, positions: torch.Tensor,
                kv_len: int, last: torch.Tensor | None = None) -> torch.Tensor:
        """Runs ``ids`` (B, Q) at ``positions`` (B, Q) for slots ``[first_slot, first_slot+B)``.

        Writes their keys and values into the cache, attends causally to the first ``kv_len``
        cached positions, and returns float32 logits (B, V) at query index ``last`` (B,) of each
        row (default: the last query).
        """
        rows, q_len = ids.shape
        slot = slice(first_slot, first_slot + rows)
        cos = self.cos[positions].unsqueeze(1)  # (B, 1, Q, D)
        sin = self.sin[positions].unsqueeze(1)
        keys = torch.arange(kv_len, device=ids.device)
        visible = keys[None, None, :] <= positions[:, :, None]  # (B, Q, K)
        visible = visible.unsqueeze(1).repeat(1, 1, self.group, 1)  # (B, 1, group*Q, K)
        write = positions[:, None, :, None].expand(rows, self.kv_heads, q_len, self.head_dim)
        h = self.embed(ids)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)
            k_cache, v_cache = self.k[i, slot], self.v[i, slot]
            k_cache.scatter_(2, write, k)
            v_cache.scatter_(2, write, v)
            h = self._rest(layer, h, q, k_cache[:, :, :kv_len], v_cache[:, :, :kv_len], visible)
        if last is None:
            h = h[:, -1]
        else:
            h = h[torch.arange(rows, device=h.device), last]
        return self.lm_head(self.norm(h)).float()

    def prefill(self, slot_ids: torch.Tensor, ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Runs whole prompts ``ids`` (R, Q) from position 0 into the slots ``slot_ids`` (R,).

        Attention needs only the prompts' own keys, so nothing is read from the cache and the
        slots need not be contiguous (shapes are fixed: a CUDA graph can hold this). Returns
        float32 logits (R, V) at query index ``last`` (R,) of each row.
        """
        rows, q_len = ids.shape
        positions = torch.arange(q_len, device=ids.device)
        cos, sin = self.cos[:q_len], self.sin[:q_len]
        causal = (positions[None, :] <= positions[:, None]).repeat(self.group, 1)  # (G*Q, Q)
        h = self.embed(ids)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)
            self.k[i, :, :, :q_len].index_copy_(0, slot_ids, k)
            self.v[i, :, :, :q_len].index_copy_(0, slot_ids, v)
            h = self._rest(layer, h, q, k, v, causal)
        h = h[torch.arange(rows, device=h.device), last]
        return self.lm_head(self.norm(h)).float()

    def _qkv(self, layer: Any, h: torch.Tensor, cos: torch.Tensor,
             sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The layer's queries (B, H, Q, D), keys and values (B, KVH, Q, D), rotated."""
        rows, q_len, _ = h.shape
        attn = layer.self_attn
        x = layer.input_layernorm(h)
        q = attn.q_proj(x).view(rows, q_len, self.heads, self.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(rows, q_len, self.kv_heads, self.head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(rows, q_len, self.kv_heads, self.head_dim).transpose(1, 2)
        return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin, v

    def _rest(self, layer: Any, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Attention over ``k``, ``v`` where ``visible``, output projection and MLP, with the
        residuals: the layer's output."""
        rows, q_len, _ = h.shape
        out = _attend(q.reshape(rows, self.kv_heads, self.group * q_len, self.head_dim),
                      k, v, visible, self.scale)
        out = out.view(rows, self.heads, q_len, self.head_dim).transpose(1, 2)
        h = h + layer.self_attn.o_proj(out.reshape(rows, q_len, self.heads * self.head_dim))
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def move(self, src: int, dst: int) -> None:
        """Copies the cached sequence of slot ``src`` into slot ``dst``."""
        self.k[:, dst].copy_(self.k[:, src])
        self.v[:, dst].copy_(self.v[:, src])


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor,
            scale: float) -> torch.Tensor:
    """Grouped-query attention: q (B, KVH, G*Q, D) over k, v (B, KVH, K, D)."""
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    scores = scores.masked_fill(~visible, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(v.dtype)
    return torch.matmul(weights, v)
