"""MusicGen's decoder, re-expressed for fast decoding: static KV cache, fewer Python ops,
weights in fp32, bf16 or int8.

transformers' decoder grows its KV cache with ``torch.cat`` every step and runs many small
modules; decoding is memory-bound (each step reads every weight), so the levers are fewer
bytes per weight (bf16: 2, int8: 1 plus a per-channel scale) and less work around them.
The maths is the model's own (pre-norm layers: causal self-attention, cross-attention to
the text, GELU feed-forward; sinusoidal positions; one head per codebook), checked against
transformers' logits in tests.

MusicGen-melody (``MusicgenMelodyForConditionalGeneration``) has no cross-attention: its
conditioning (projected chroma frames, then projected text states) is a *prefix* of the
decoder's input sequence, and takes positions like the tokens after it. ``start`` runs the
prefix into the static KV cache; ``step`` then decodes exactly as for text-only MusicGen.
Rows whose prefixes differ in length are left-padded with masked slots and each row counts
positions from its own first prefix slot, so a row computes what it would alone.

Shapes: ``B`` rows (with guidance: conditional rows first, then their unconditional
twins), ``K`` codebooks, ``V`` = 2048 codes, ``D`` hidden size, ``H`` heads.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from generation.engines.musicgen import attention_kernel as _kernel_module


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
    ``precise_activations`` removes nearly all of the activation error at almost no cost:
    each row goes in twice, as ``round(x / s)`` and as the rounding residual times 254, in
    the SAME fbgemm call (decoding is memory-bound: the weights are read once, extra rows
    are nearly free), and the two results are recombined, about 15 bits of activation
    precision. The decoder uses it for ``fc2`` (GELU outputs, heavy-tailed) and the heads
    (they write the logits). On CUDA, int8 keeps activations in bf16 and only the weights
    in int8 (``_weight_int8pack_mm``).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        fmt: WeightFormat,
        compute_dtype: torch.dtype,
        *,
        precise_activations: bool = False,
    ):
        super().__init__()
        self.fmt = fmt
        self.precise = precise_activations
        self.out_features = int(weight.shape[0])
        self.packed: Any = None
        self.scales: torch.Tensor | None
        self.weight: torch.Tensor
        if fmt is WeightFormat.INT8 and weight.device.type == "cpu":
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
            self._row_buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
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

    def _rows(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A reusable ``[n + 1, K]`` input buffer whose last row is the anchor (it spans
        exactly [-128, 127], so fbgemm picks scale 1 and zero point 128), and a view of its
        first ``n`` rows, where the inputs go."""
        buffers = self._row_buffers.get(n)
        if buffers is None:
            rows = torch.zeros(n + 1, self.in_features)
            rows[n, 0], rows[n, 1] = -128.0, 127.0
            buffers = self._row_buffers[n] = (rows, rows[:n])
        return buffers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            flat = x.reshape(-1, x.shape[-1])
            m = flat.shape[0]
            scale = flat.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-12).div_(127.0)
            if not self.precise:
                rows, head = self._rows(m)
                torch.div(flat, scale, out=head).round_()  # |x / scale| <= 127
                out = torch.ops.quantized.linear_dynamic(rows, self.packed, False)[:m]
                return out.mul_(scale).view(*x.shape[:-1], self.out_features)
            rows, head = self._rows(2 * m)
            scaled = flat / scale  # within [-127, 127]
            coarse = torch.round(scaled, out=head[:m])
            torch.sub(scaled, coarse, out=rows[m : 2 * m]).mul_(254.0).round_()  # |r| <= 0.5
            out = torch.ops.quantized.linear_dynamic(rows, self.packed, False)
            fine = out[m : 2 * m].div_(254.0)
            return out[:m].add_(fine).mul_(scale).view(*x.shape[:-1], self.out_features)
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
    ln3: nn.LayerNorm
    fc1: PackedLinear
    fc2: PackedLinear
    # Cross-attention to the text; None in MusicGen-melody (its conditioning is a prefix).
    ln2: nn.LayerNorm | None = None
    cross_q: PackedLinear | None = None
    cross_kv: PackedLinear | None = None  # applied once per batch to the text states
    cross_out: PackedLinear | None = None


def _norm(source: nn.LayerNorm, dtype: torch.dtype) -> nn.LayerNorm:
    norm = nn.LayerNorm(source.normalized_shape, eps=source.eps)
    norm.load_state_dict(source.state_dict())
    return norm.to(dtype)


def _pack_layer(layer: Any, weights: WeightFormat, dt: torch.dtype) -> _Layer:
    """A transformers decoder layer's weights, packed (cross-attention only if it has one)."""
    sa = layer.self_attn
    qkv = torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight])
    packed = _Layer(
        ln1=_norm(layer.self_attn_layer_norm, dt),
        qkv=PackedLinear(qkv, weights, dt),
        out=PackedLinear(sa.out_proj.weight, weights, dt),
        ln3=_norm(layer.final_layer_norm, dt),
        fc1=PackedLinear(layer.fc1.weight, weights, dt),
        fc2=PackedLinear(layer.fc2.weight, weights, dt, precise_activations=True),
    )
    ca = getattr(layer, "encoder_attn", None)
    if ca is not None:
        cross_kv = torch.cat([ca.k_proj.weight, ca.v_proj.weight])
        packed.ln2 = _norm(layer.encoder_attn_layer_norm, dt)
        packed.cross_q = PackedLinear(ca.q_proj.weight, weights, dt)
        packed.cross_kv = PackedLinear(cross_kv, weights, dt)
        packed.cross_out = PackedLinear(ca.out_proj.weight, weights, dt)
    return packed


class FastDecoder(nn.Module):
    """The decoder of a loaded ``MusicgenForConditionalGeneration`` (or
    ``MusicgenMelodyForConditionalGeneration``), for incremental decoding.

    Call ``start(encoder_states, encoder_mask, max_steps)`` once per batch, then ``step``
    with the token columns for positions ``[pos, pos + n)``; it returns float32 logits
    ``[B, K, V]`` for the last position. ``attention_kernel``: on the int8 CPU path, keep
    the attention cache in fp16 and read it with the project's kernel where it can be built
    (``FAST_ATTENTION_KERNEL``); False keeps an fp32 cache and PyTorch's attention.
    """

    def __init__(
        self,
        model: Any,
        weights: WeightFormat = WeightFormat.FLOAT32,
        *,
        on_packed: Callable[[nn.Module], object] | None = None,
        attention_kernel: bool = True,
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
        # The KV cache follows the activations (PyTorch's bf16/fp16 attention on CPU is
        # slower than fp32), except on the default CPU path (int8 weights): there an fp16
        # cache read by the project's AVX-512 kernel halves the bytes each step reads.
        self._kernel = (
            _kernel_module.load()
            if attention_kernel and weights is WeightFormat.INT8 and self.device.type == "cpu"
            else None
        )
        self.kv_dtype = torch.float16 if self._kernel is not None else self.dtype
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
        self._sinusoids = decoder.embed_positions.get_embedding  # to grow ``positions``
        # MusicGen-melody: the conditioning is a prefix of the input, not cross-attended.
        self.prefix_conditioning = not hasattr(decoder.layers[0], "encoder_attn")
        self.chroma_length = int(getattr(model.config, "chroma_length", 0))
        self.num_chroma = int(getattr(model.config, "num_chroma", 0))
        layers = []
        for layer in decoder.layers:
            layers.append(_pack_layer(layer, weights, dt))
            if on_packed is not None:
                on_packed(layer)  # the source layer is no longer needed
        self.layers = layers
        self._modules_list = nn.ModuleList(
            [m for layer in layers for m in vars(layer).values() if m is not None]
        )  # so .to() and state_dict see them
        self.final_norm = _norm(decoder.layer_norm, dt)
        # The heads write the logits directly: precise (two-part) activations there.
        self.heads = PackedLinear(
            torch.cat([h.weight for h in model.decoder.lm_heads]),
            weights,
            dt,
            precise_activations=True,
        )  # [K * V, D]
        self.vocab = int(model.decoder.lm_heads[0].weight.shape[0])
        self.enc_to_dec = getattr(model, "enc_to_dec_proj", None)
        self.chroma_to_dec = getattr(model, "audio_enc_to_dec_proj", None)
        self.to(self.device)
        self._cache_k: torch.Tensor | None = None
        self._cache_v: torch.Tensor | None = None
        self._cross: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._cross_mask: torch.Tensor | None = None
        # Prefix models: cache slot of token position 0, each row's left padding (its
        # positions start that many slots later) and the padding as an additive key mask.
        self._offset = 0
        self._pads: torch.Tensor | None = None
        self._key_mask: torch.Tensor | None = None
        self._key_mask_rows: torch.Tensor | None = None  # [B, slots] fp32, for the kernel

    def project_text(self, text_states: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Text-encoder states ``[B, L, d_text]`` -> decoder space ``[B, L, D]``, masked."""
        states = text_states
        if self.enc_to_dec is not None:
            states = self.enc_to_dec(states)
        return states * text_mask[..., None].to(states.dtype)

    def project_chroma(self, chroma: torch.Tensor) -> torch.Tensor:
        """Chroma ``[B, T, num_chroma]`` -> decoder space ``[B, chroma_length, D]``.

        As transformers' melody model does it: project each frame, then repeat the frames
        until they fill ``chroma_length`` (a short melody loops) and cut there.
        """
        states = chroma
        if self.chroma_to_dec is not None:
            states = self.chroma_to_dec(states)
        frames = states.shape[1]
        if frames < self.chroma_length:
            states = states.repeat(1, math.ceil(self.chroma_length / frames), 1)
        return states[:, : self.chroma_length]

    def start(self, encoder_states: torch.Tensor, encoder_mask: torch.Tensor, max_len: int) -> None:
        """Prepare a batch: the conditioning and an empty self-attention cache.

        ``encoder_states`` ``[B, L, D]`` (already projected and masked), ``encoder_mask``
        ``[B, L]`` (1 = attend), ``max_len`` the most token positions this batch will reach.
        Text-only MusicGen cross-attends to them. A prefix model (MusicGen-melody) runs them
        through its layers as the first ``L`` positions; each row's masked slots must come
        first (left padding), and the row's positions start after them.
        """
        batch, length = encoder_mask.shape
        states = encoder_states.to(self.dtype)
        self._cross = []
        self._offset, self._pads, self._key_mask = 0, None, None
        self._key_mask_rows = None
        slots = max_len
        if self.prefix_conditioning:
            slots += length
            self._offset = length
        if slots > self.positions.shape[0]:  # as transformers does: more sinusoids
            self.positions = self._sinusoids(slots, self.hidden).to(self.dtype).to(self.device)
        # Keys are kept transposed, [..., Dh, slots]: q @ K^T then reads each key
        # dimension's run of positions contiguously, measured 25% faster on CPU than
        # [..., slots, Dh]; values stay [..., slots, Dh], the faster layout for p @ V.
        layers, heads, dh = len(self.layers), self.num_heads, self.head_dim
        # Uninitialised: attention only reads slots [0, end), all written before (no memset
        # of hundreds of MB per batch).
        self._cache_k = torch.empty(
            (layers, batch, heads, dh, slots), dtype=self.kv_dtype, device=self.device
        )
        self._cache_v = torch.empty(
            (layers, batch, heads, slots, dh), dtype=self.kv_dtype, device=self.device
        )
        if self.prefix_conditioning:
            self._prefill(states, encoder_mask.bool(), slots)
            return
        for layer in self.layers:
            assert layer.cross_kv is not None
            kv = layer.cross_kv(states).view(batch, length, 2, self.num_heads, self.head_dim)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, Dh] each
            self._cross.append((k.transpose(-1, -2).contiguous(), v.contiguous()))
        # Additive mask; fully masked rows (guidance's null condition) attend uniformly to
        # zero states, which yields zeros, as in transformers.
        blocked = torch.finfo(self.dtype).min
        mask = torch.zeros(batch, 1, 1, length, dtype=self.dtype, device=self.device)
        self._cross_mask = mask.masked_fill(~encoder_mask.bool()[:, None, None, :], blocked)

    def _prefill(self, states: torch.Tensor, keep: torch.Tensor, slots: int) -> None:
        """Run a prefix ``[B, L, D]`` (``keep`` ``[B, L]``: False on left padding) into cache
        slots ``[0, L)``."""
        batch, length = keep.shape
        pads = (~keep).sum(dim=1)
        slot = torch.arange(length, device=self.device)
        if not torch.equal(keep, slot[None, :] >= pads[:, None]):
            raise ValueError("a prefix's masked slots must all come before its states")
        if bool(pads.any()):
            self._pads = pads
            blocked = torch.arange(slots, device=self.device)[None, :] < pads[:, None]
            mask = torch.zeros(batch, 1, 1, slots, dtype=self.kv_dtype, device=self.device)
            self._key_mask = mask.masked_fill(
                blocked[:, None, None, :], torch.finfo(mask.dtype).min
            )
            self._key_mask_rows = self._key_mask[:, 0, 0, :].float().contiguous()
        # Padding slots hold zeros at position 0: finite, and no real slot attends to them.
        x = torch.where(keep[..., None], states, torch.zeros_like(states))
        x = x + self.positions[(slot[None, :] - pads[:, None]).clamp(min=0)]
        self._layers(x, 0)

    def release(self) -> None:
        """Free the batch's caches (hundreds of MB for long batches) until the next start."""
        self._cache_k = self._cache_v = self._cross_mask = self._key_mask = self._pads = None
        self._key_mask_rows = None
        self._cross = []

    def step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Run positions ``[pos, pos + n)`` of ``tokens`` ``[B, K, n]``; logits ``[B, K, V]``
        (float32) for the last of them."""
        batch, _, n = tokens.shape
        x = self.embed[0][tokens[:, 0]]
        for k in range(1, self.num_codebooks):
            x = x + self.embed[k][tokens[:, k]]
        slot = self._offset + pos
        if self._pads is None:
            x = x + self.positions[slot : slot + n]
        else:  # each row counts positions from its own first prefix slot
            ids = torch.arange(slot, slot + n, device=self.device)[None, :] - self._pads[:, None]
            x = x + self.positions[ids]
        x = self._layers(x, slot)
        last = self.final_norm(x[:, -1])
        logits = self.heads(last).view(batch, self.num_codebooks, self.vocab)
        return logits.float()

    def _layers(self, x: torch.Tensor, slot: int) -> torch.Tensor:
        """Run the embedded inputs ``x`` ``[B, n, D]`` of cache slots ``[slot, slot + n)``
        through every layer, filling the cache; returns the last hidden states."""
        assert self._cache_k is not None and self._cache_v is not None
        batch, n, _ = x.shape
        end = slot + n
        mask = self._self_mask(n, end)
        for index, layer in enumerate(self.layers):
            # Modules' own .forward and F.layer_norm: nn.Module.__call__ costs microseconds
            # per call, and a step makes thousands.
            h = _layer_norm(layer.ln1, x)
            qkv = layer.qkv.forward(h).view(batch, n, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, n, Dh]
            self._cache_k[index, :, :, :, slot:end] = k.transpose(-1, -2)
            self._cache_v[index, :, :, slot:end] = v
            if self._kernel is not None and n == 1:
                attn = _kernel_module.attend(
                    self._kernel,
                    q[:, :, 0].float().contiguous(),
                    self._cache_k[index],
                    self._cache_v[index],
                    mask=self._key_mask_rows,
                    length=end,
                    scale=self.head_dim**-0.5,
                ).unsqueeze(2)  # [B, H, 1, Dh]
            else:
                attn = _attend(
                    q.to(self.dtype),
                    self._cache_k[index, :, :, :, :end].to(self.dtype),
                    self._cache_v[index, :, :, :end].to(self.dtype),
                    mask,
                ).to(x.dtype)
            x = x + layer.out.forward(attn.transpose(1, 2).reshape(batch, n, self.hidden))
            if layer.cross_q is not None:
                assert layer.ln2 is not None and layer.cross_out is not None
                h = _layer_norm(layer.ln2, x)
                q = layer.cross_q.forward(h)
                q = q.view(batch, n, self.num_heads, self.head_dim).transpose(1, 2)
                ck, cv = self._cross[index]
                attn = _attend(q, ck, cv, self._cross_mask)
                x = x + layer.cross_out.forward(attn.transpose(1, 2).reshape(batch, n, self.hidden))
            h = _layer_norm(layer.ln3, x)
            x = x + layer.fc2.forward(F.gelu(layer.fc1.forward(h)))
        return x

    def _self_mask(self, n: int, end: int) -> torch.Tensor | None:
        """Additive self-attention mask for ``n`` queries ending at slot ``end``: causal when
        ``n > 1``, plus the rows' left padding; None when nothing is masked."""
        if self._key_mask is None:
            return self._causal(n, end) if n > 1 else None
        keys = self._key_mask[..., :end]
        if n == 1:
            return keys
        # One fill, not a sum: two minima would add up to -inf, and a padding query with
        # every key at -inf would turn NaN (and NaN times a zero weight is still NaN).
        blocked = (keys < 0) | (self._causal(n, end) < 0)
        return torch.zeros_like(blocked, dtype=self.kv_dtype).masked_fill(
            blocked, torch.finfo(self.kv_dtype).min
        )

    def _causal(self, n: int, end: int) -> torch.Tensor:
        """Additive mask ``[n, end]`` for ``n`` queries ending at position ``end`` (prefill)."""
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


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _attend(
    q: torch.Tensor, k_t: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with the keys given transposed (``k_t``
    ``[..., Dh, T]``), written out: for a single query, PyTorch's CPU SDPA kernel costs
    several times more than these three ops."""
    scores = torch.matmul(q, k_t).mul_(q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.add_(mask)
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype), v)
