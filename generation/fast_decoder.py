"""MusicGen's decoder, re-expressed for fast decoding: static KV cache, fewer Python ops,
weights in fp32, bf16 or int8.

transformers' decoder grows its KV cache with ``torch.cat`` every step and runs many small
modules; decoding is memory-bound (each step reads every weight), so the levers are fewer
bytes per weight (bf16: 2, int8: 1 plus a per-channel scale) and less work around them.
The maths is the model's own (pre-norm layers: causal self-attention, cross-attention to
the text, GELU feed-forward; sinusoidal positions; one head per codebook), checked against
transformers' logits in tests.

Shapes: ``B`` rows (with guidance: conditional rows first, then their unconditional
twins), ``K`` codebooks, ``V`` = 2048 codes, ``D`` hidden size, ``H`` heads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class WeightFormat(StrEnum):
    """How the decoder's linear layers keep their weights."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    INT8 = "int8"  # per-output-channel int8 weights; see PackedLinear


def _quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 weights ``[N, K]`` and their per-output-channel scales ``[N]``."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    return torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8), scales


class PackedLinear(nn.Module):
    """``y = x @ W.T`` (no bias) with W stored as float, bf16/fp16 or int8.

    int8 on CPU uses fbgemm's dynamic-quantized linear (int8 weights per output channel,
    int8 dot products with VNNI): measured here it streams weights from memory faster than
    bf16 or weight-only int8 kernels. fbgemm would quantize the activations with ONE scale
    for the whole batch, which would make a row's result depend on the other rows; so each
    row is quantized here with its own scale, and an anchor row pins fbgemm's scale to
    exactly 1, which makes the integer maths exact and every row independent of the batch.
    ``weight_only`` (and int8 on CUDA) keeps activations in bf16 and only the weights in
    int8 (``_weight_int8pack_mm``): no activation quantization error. The decoder uses it
    for ``fc2`` (GELU outputs, heavy-tailed) and the heads (they write the logits): that
    took the logit error on musicgen-small's architecture from 3.4e-2 to 2.7e-2 at the
    same speed.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        fmt: WeightFormat,
        compute_dtype: torch.dtype,
        *,
        weight_only: bool = False,
    ):
        super().__init__()
        self.fmt = fmt
        self.out_features = int(weight.shape[0])
        self.packed: Any = None
        self.scales: torch.Tensor | None
        self.weight: torch.Tensor
        if fmt is WeightFormat.INT8 and weight.device.type == "cpu" and not weight_only:
            q, scales = _quantize_per_channel(weight)
            self.scales = None
            zeros = torch.zeros(q.shape[0], dtype=torch.long)
            with warnings.catch_warnings():  # quantized tensors are deprecated, still the API
                warnings.simplefilter("ignore")
                qweight = torch._make_per_channel_quantized_tensor(q, scales.double(), zeros, 0)
                self.packed = torch.ops.quantized.linear_prepack(qweight, None)
            self.weight_bytes = q.numel()
            # Spans exactly [-128, 127]: fbgemm then picks scale 1, zero point 128.
            self.in_features = int(weight.shape[1])
            self._row_buffers: dict[int, torch.Tensor] = {}
        elif fmt is WeightFormat.INT8:
            q, scales = _quantize_per_channel(weight)
            self.register_buffer("weight", q.contiguous())
            self.act_dtype = torch.bfloat16 if compute_dtype == torch.float32 else compute_dtype
            self.register_buffer("scales", scales.to(self.act_dtype))
            self.weight_bytes = q.numel()
        else:
            self.scales = None
            dense = weight.detach().to(compute_dtype).contiguous()
            self.register_buffer("weight", dense)
            self.weight_bytes = dense.numel() * dense.element_size()

    def _rows(self, m: int) -> torch.Tensor:
        """A reusable ``[m + 1, K]`` input buffer whose last row is the anchor: it spans
        exactly [-128, 127], so fbgemm picks scale 1 and zero point 128."""
        rows = self._row_buffers.get(m)
        if rows is None:
            rows = torch.zeros(m + 1, self.in_features)
            rows[m, 0], rows[m, 1] = -128.0, 127.0
            self._row_buffers[m] = rows
        return rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            flat = x.reshape(-1, x.shape[-1])
            m = flat.shape[0]
            scale = torch.linalg.vector_norm(flat, ord=float("inf"), dim=-1, keepdim=True)
            scale = scale.clamp_(min=1e-12).div_(127.0)
            rows = self._rows(m)
            torch.div(flat, scale, out=rows[:m]).round_().clamp_(-127, 127)
            out = torch.ops.quantized.linear_dynamic(rows, self.packed, False)[:m]
            return out.mul_(scale).reshape(*x.shape[:-1], self.out_features)
        if self.scales is not None:
            flat = x.reshape(-1, x.shape[-1])
            out = torch._weight_int8pack_mm(flat.to(self.act_dtype), self.weight, self.scales)
            return out.to(x.dtype).reshape(*x.shape[:-1], out.shape[-1])
        return F.linear(x, self.weight)


@dataclass
class _Layer:
    ln1: nn.LayerNorm
    qkv: PackedLinear  # q, k and v stacked: one weight read, one call
    out: PackedLinear
    ln2: nn.LayerNorm
    cross_q: PackedLinear
    cross_kv: PackedLinear  # applied once per batch to the text states
    cross_out: PackedLinear
    ln3: nn.LayerNorm
    fc1: PackedLinear
    fc2: PackedLinear


def _norm(source: nn.LayerNorm, dtype: torch.dtype) -> nn.LayerNorm:
    norm = nn.LayerNorm(source.normalized_shape, eps=source.eps)
    norm.load_state_dict(source.state_dict())
    return norm.to(dtype)


class FastDecoder(nn.Module):
    """The decoder of a loaded ``MusicgenForConditionalGeneration``, for incremental decoding.

    Call ``start(encoder_states, encoder_mask, max_steps)`` once per batch, then ``step``
    with the token columns for positions ``[pos, pos + n)``; it returns float32 logits
    ``[B, K, V]`` for the last position.
    """

    def __init__(
        self,
        model: Any,
        weights: WeightFormat = WeightFormat.FLOAT32,
        *,
        on_packed: Callable[[nn.Module], object] | None = None,
    ) -> None:
        super().__init__()
        decoder = model.decoder.model.decoder
        config = model.decoder.config
        self.weights = weights
        self.device = next(model.parameters()).device
        # Activations and KV cache: fp32 on CPU (bf16 attention is slow there), half on GPU.
        if weights is WeightFormat.FLOAT16:
            self.dtype = torch.float16
        elif weights is WeightFormat.BFLOAT16 or (
            weights is WeightFormat.INT8 and self.device.type == "cuda"
        ):
            self.dtype = torch.bfloat16
        else:
            self.dtype = torch.float32
        # The KV cache follows the activations: measured on this CPU, a bf16 cache with
        # bf16 attention maths was slower than fp32 (and used far more memory).
        self.kv_dtype = self.dtype
        self.num_codebooks = int(config.num_codebooks)
        self.num_heads = int(config.num_attention_heads)
        self.hidden = int(config.hidden_size)
        self.head_dim = self.hidden // self.num_heads
        self.pad_token = int(config.pad_token_id)
        dt = self.dtype
        self.embed = nn.Parameter(
            torch.stack([e.weight.detach() for e in decoder.embed_tokens]).to(dt),
            requires_grad=False,
        )  # [K, V + 1, D]
        self.positions = decoder.embed_positions.weights.detach().to(dt)  # [P, D]
        layers = []
        for layer in decoder.layers:
            sa, ca = layer.self_attn, layer.encoder_attn
            qkv = torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight])
            cross_kv = torch.cat([ca.k_proj.weight, ca.v_proj.weight])
            layers.append(
                _Layer(
                    ln1=_norm(layer.self_attn_layer_norm, dt),
                    qkv=PackedLinear(qkv, weights, dt),
                    out=PackedLinear(sa.out_proj.weight, weights, dt),
                    ln2=_norm(layer.encoder_attn_layer_norm, dt),
                    cross_q=PackedLinear(ca.q_proj.weight, weights, dt),
                    cross_kv=PackedLinear(cross_kv, weights, dt),
                    cross_out=PackedLinear(ca.out_proj.weight, weights, dt),
                    ln3=_norm(layer.final_layer_norm, dt),
                    fc1=PackedLinear(layer.fc1.weight, weights, dt),
                    fc2=PackedLinear(layer.fc2.weight, weights, dt, weight_only=True),
                )
            )
            if on_packed is not None:
                on_packed(layer)  # the source layer is no longer needed
        self.layers = layers
        self._modules_list = nn.ModuleList(
            [m for layer in layers for m in vars(layer).values()]
        )  # so .to() and state_dict see them
        self.final_norm = _norm(decoder.layer_norm, dt)
        # The heads write the logits directly: no activation quantization there.
        self.heads = PackedLinear(
            torch.cat([h.weight for h in model.decoder.lm_heads]), weights, dt, weight_only=True
        )  # [K * V, D]
        self.vocab = int(model.decoder.lm_heads[0].weight.shape[0])
        self.enc_to_dec = getattr(model, "enc_to_dec_proj", None)
        self.to(self.device)
        self._cache_k: torch.Tensor | None = None
        self._cache_v: torch.Tensor | None = None
        self._cross: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._cross_mask: torch.Tensor | None = None

    def project_text(self, text_states: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Text-encoder states ``[B, L, d_text]`` -> decoder space ``[B, L, D]``, masked."""
        states = text_states
        if self.enc_to_dec is not None:
            states = self.enc_to_dec(states)
        return states * text_mask[..., None].to(states.dtype)

    def start(self, encoder_states: torch.Tensor, encoder_mask: torch.Tensor, max_len: int) -> None:
        """Prepare a batch: cross-attention keys/values and an empty self-attention cache.

        ``encoder_states`` ``[B, L, D]`` (already projected and masked), ``encoder_mask``
        ``[B, L]`` (1 = attend), ``max_len`` the most positions this batch will reach.
        """
        batch, length = encoder_mask.shape
        states = encoder_states.to(self.dtype)
        self._cross = []
        for layer in self.layers:
            kv = layer.cross_kv(states).view(batch, length, 2, self.num_heads, self.head_dim)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, Dh] each
            self._cross.append((k.contiguous(), v.contiguous()))
        # Additive mask; fully masked rows (guidance's null condition) attend uniformly to
        # zero states, which yields zeros, as in transformers.
        blocked = torch.finfo(self.dtype).min
        mask = torch.zeros(batch, 1, 1, length, dtype=self.dtype, device=self.device)
        self._cross_mask = mask.masked_fill(~encoder_mask.bool()[:, None, None, :], blocked)
        shape = (len(self.layers), batch, self.num_heads, max_len, self.head_dim)
        self._cache_k = torch.zeros(shape, dtype=self.kv_dtype, device=self.device)
        self._cache_v = torch.zeros(shape, dtype=self.kv_dtype, device=self.device)

    def release(self) -> None:
        """Free the batch's caches (hundreds of MB for long batches) until the next start."""
        self._cache_k = self._cache_v = self._cross_mask = None
        self._cross = []

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Run positions ``[pos, pos + n)`` of ``tokens`` ``[B, K, n]``; logits ``[B, K, V]``
        (float32) for the last of them."""
        assert self._cache_k is not None and self._cache_v is not None
        batch, _, n = tokens.shape
        x = self.embed[0][tokens[:, 0]]
        for k in range(1, self.num_codebooks):
            x = x + self.embed[k][tokens[:, k]]
        x = x + self.positions[pos : pos + n]
        end = pos + n
        for index, layer in enumerate(self.layers):
            h = layer.ln1(x)
            qkv = layer.qkv(h).view(batch, n, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, n, Dh]
            self._cache_k[index, :, :, pos:end] = k
            self._cache_v[index, :, :, pos:end] = v
            attn = _attend(
                q.to(self.kv_dtype),
                self._cache_k[index, :, :, :end],
                self._cache_v[index, :, :, :end],
                self._causal(n, end) if n > 1 else None,
            ).to(x.dtype)
            x = x + layer.out(attn.transpose(1, 2).reshape(batch, n, self.hidden))
            h = layer.ln2(x)
            q = layer.cross_q(h).view(batch, n, self.num_heads, self.head_dim).transpose(1, 2)
            ck, cv = self._cross[index]
            attn = _attend(q, ck, cv, self._cross_mask)
            x = x + layer.cross_out(attn.transpose(1, 2).reshape(batch, n, self.hidden))
            h = layer.ln3(x)
            x = x + layer.fc2(F.gelu(layer.fc1(h)))
        last = self.final_norm(x[:, -1])
        logits = self.heads(last).view(batch, self.num_codebooks, self.vocab)
        return logits.float()

    def _causal(self, n: int, end: int) -> torch.Tensor:
        """Additive mask for ``n`` queries ending at position ``end`` (prefill)."""
        query_pos = torch.arange(end - n, end, device=self.device)[:, None]
        key_pos = torch.arange(end, device=self.device)[None, :]
        blocked = torch.finfo(self.kv_dtype).min
        mask = torch.zeros(n, end, dtype=self.kv_dtype, device=self.device)
        return mask.masked_fill(key_pos > query_pos, blocked)

    @property
    def kv_bytes_per_position(self) -> int:
        """Self-attention cache bytes one row needs per position (all layers, K and V)."""
        itemsize = torch.empty((), dtype=self.kv_dtype).element_size()
        return len(self.layers) * 2 * self.hidden * itemsize

    @property
    def weight_bytes(self) -> int:
        """Bytes of decoder weights read per step."""
        return sum(m.weight_bytes for m in self.modules() if isinstance(m, PackedLinear))


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v, written out: for a single query, PyTorch's CPU
    SDPA kernel costs several times more than these three ops."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores.float(), dim=-1).to(v.dtype), v)
