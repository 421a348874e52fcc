"""A Qwen2 causal LM run over a static, slot-addressed KV cache.

The Hugging Face model supplies the weights and the layer modules (projections, norms, MLPs);
this module owns the cache and the attention, so that rows of one batch can sit at different
positions (continuous batching) and every decode step has the same shapes (CUDA graphs).

The cache holds ``slots`` sequences of up to ``max_len`` tokens each, allocated once. Rows of a
decode step are the slots ``[0, B)``: the engine keeps live sequences packed at the front and
moves a sequence with ``move`` when one before it leaves. Keys beyond a row's position are never
read (they are masked), so a padding row may write junk into a free slot.

A decode step is bound by kernel launches, not by weights or arithmetic (a profile counted about
50 GPU kernels per layer), so each layer runs fused: one GEMM for the query, key and value
projections, one for the MLP's gate and up projections, one ``rms_norm`` kernel per norm, the
rotary embedding of queries and keys together, and ``scaled_dot_product_attention``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class _Layer:
    """One decoder layer's weights, laid out for the fused step."""

    __slots__ = ("norm1", "eps1", "qkv", "qkv_bias", "o", "o_bias", "norm2", "eps2", "gate_up",
                 "down", "down_bias", "act")

    def __init__(self, layer: Any) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        self.norm1, self.eps1 = _norm(layer.input_layernorm)
        self.norm2, self.eps2 = _norm(layer.post_attention_layernorm)
        self.qkv = torch.cat([m.weight for m in projections]).detach()
        biases = [m.bias for m in projections]
        self.qkv_bias = None if any(b is None for b in biases) else torch.cat(biases).detach()
        if self.qkv_bias is None and any(b is not None for b in biases):
            raise ValueError("query, key and value projections must all have biases or none")
        self.o, self.o_bias = attn.o_proj.weight, attn.o_proj.bias
        self.gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach()
        if mlp.gate_proj.bias is not None or mlp.up_proj.bias is not None:
            raise ValueError("MLP gate/up projections with biases are not supported")
        # The modules' own weights become views of the fused ones: no second copy in memory.
        _share(projections, self.qkv, "weight")
        if self.qkv_bias is not None:
            _share(projections, self.qkv_bias, "bias")
        _share((mlp.gate_proj, mlp.up_proj), self.gate_up, "weight")
        self.down, self.down_bias = mlp.down_proj.weight, mlp.down_proj.bias
        self.act = mlp.act_fn


def _share(modules: tuple[Any, ...], fused: torch.Tensor, name: str) -> None:
    """Points each module's ``name`` parameter at its rows of ``fused`` (concatenated in order)."""
    start = 0
    for module in modules:
        param = getattr(module, name)
        rows = param.shape[0]
        param.data = fused[start:start + rows]
        start += rows


def _norm(module: Any) -> tuple[torch.Tensor, float]:
    eps = getattr(module, "variance_epsilon", None)
    if eps is None:
        eps = module.eps
    return module.weight, float(eps)


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
        self.fused = [_Layer(layer) for layer in self.layers]
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
        sin = emb.sin() * scaling
        half = sin.shape[-1] // 2
        # rotate_half(x) * sin == cat(x2, x1) * cat(-sin1, sin2): the sign lives in the table.
        self.sin = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1).to(self.dtype)
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
        cos = self.cos[positions].unsqueeze(2)  # (B, Q, 1, D)
        sin = self.sin[positions].unsqueeze(2)
        keys = torch.arange(kv_len, device=ids.device)
        visible = keys[None, None, :] <= positions[:, :, None]  # (B, Q, K)
        visible = visible.unsqueeze(1).repeat(1, 1, self.group, 1)  # (B, 1, group*Q, K)
        write = positions[:, None, :, None].expand(rows, self.kv_heads, q_len, self.head_dim)
        h = self.embed(ids)
        for i, layer in enumerate(self.fused):
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
        cos, sin = self.cos[:q_len, None], self.sin[:q_len, None]  # (Q, 1, D)
        causal = (positions[None, :] <= positions[:, None]).repeat(self.group, 1)  # (G*Q, Q)
        h = self.embed(ids)
        for i, layer in enumerate(self.fused):
            q, k, v = self._qkv(layer, h, cos, sin)
            self.k[i, :, :, :q_len].index_copy_(0, slot_ids, k)
            self.v[i, :, :, :q_len].index_copy_(0, slot_ids, v)
            h = self._rest(layer, h, q, k, v, causal)
        h = h[torch.arange(rows, device=h.device), last]
        return self.lm_head(self.norm(h)).float()

    def _qkv(self, layer: _Layer, h: torch.Tensor, cos: torch.Tensor,
             sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The layer's queries (B, H, Q, D), keys and values (B, KVH, Q, D), rotated."""
        rows, q_len, _ = h.shape
        x = F.rms_norm(h, (h.shape[-1],), layer.norm1, layer.eps1)
        qkv = F.linear(x, layer.qkv, layer.qkv_bias)
        qkv = qkv.view(rows, q_len, self.heads + 2 * self.kv_heads, self.head_dim)
        qk, v = qkv[:, :, :self.heads + self.kv_heads], qkv[:, :, self.heads + self.kv_heads:]
        half = self.head_dim // 2
        qk = qk * cos + torch.cat((qk[..., half:], qk[..., :half]), dim=-1) * sin
        qk = qk.transpose(1, 2)
        return qk[:, :self.heads], qk[:, self.heads:], v.transpose(1, 2)

    def _rest(self, layer: _Layer, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Attention over ``k``, ``v`` where ``visible``, output projection and MLP, with the
        residuals: the layer's output."""
        rows, q_len, _ = h.shape
        out = F.scaled_dot_product_attention(
            q.reshape(rows, self.kv_heads, self.group * q_len, self.head_dim), k, v,
            attn_mask=visible, scale=self.scale)
        out = out.view(rows, self.heads, q_len, self.head_dim).transpose(1, 2)
        h = h + F.linear(out.reshape(rows, q_len, self.heads * self.head_dim), layer.o, layer.o_bias)
        x = F.rms_norm(h, (h.shape[-1],), layer.norm2, layer.eps2)
        gate, up = F.linear(x, layer.gate_up).chunk(2, dim=-1)
        return h + F.linear(layer.act(gate) * up, layer.down, layer.down_bias)

    def move(self, src: int, dst: int) -> None:
        """Copies the cached sequence of slot ``src`` into slot ``dst``."""
        self.k[:, dst].copy_(self.k[:, src])
        self.v[:, dst].copy_(self.v[:, src])
