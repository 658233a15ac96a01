"""Weight quantization for a frozen base: int8 (absmax per output row) and 4-bit NormalFloat (NF4, QLoRA).

    q = quantize_nf4(linear.weight)            # 4-bit codes, two per byte, one absmax per block of 64
    w = dequantize(q)                          # back to float32, error bounded by half a code gap per block
    layer = QuantLinear.from_linear(linear)    # stores q, dequantizes in forward

int8 (Dettmers et al., 2022, LLM.int8(), arXiv:2208.07339, without the outlier split): each output row is
scaled by its absolute maximum so that it spans [-127, 127], then rounded; the error is at most half a step.

NF4 (Dettmers et al., 2023, QLoRA, arXiv:2305.14314): trained weights are close to normally distributed,
so the 16 code values are quantiles of N(0, 1) (each bin holding about the same probability mass, with an
exact zero), scaled to [-1, 1]. A tensor is cut into blocks of `block_size` consecutive values (over the
flattened tensor, as bitsandbytes does); each block is divided by its absolute maximum and every value
becomes the index of the nearest code value. Two indices share one byte, the first in the high nibble. One
float32 absmax per 64 weights costs 0.5 bit per weight (4.5 bits in all); double quantization stores the
absmaxes themselves in 8 bits (one float32 scale per 256 of them), about 4.127 bits per weight.

The NF4 bytes, absmax and dequantized values equal bitsandbytes' `quantize_4bit(..., quant_type="nf4")`
(tests/test_quant.py). Double quantization here uses a linear 8-bit code for the absmaxes, where
bitsandbytes uses its dynamic 8-bit map: same idea and size, different 8-bit values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minimodels.peft.params import replace_module

METHODS = ("int8", "nf4")
# QLoRA's quantile range: (1 - 1/30 + 1 - 1/32) / 2, as bitsandbytes writes it (7 digits; its float32
# rounding is what makes the table equal bitsandbytes' to the last bit).
NF4_OFFSET = 0.9677083
DOUBLE_QUANT_BLOCK = 256  # absmaxes per 8-bit block in double quantization (QLoRA)


def nf4_code() -> torch.Tensor:
    """The 16 NF4 values, sorted, in [-1, 1] with an exact 0: normal quantiles, 8 positive and 7 negative.

    Asymmetric so that zero is representable: the positive half takes 9 quantiles from 0.5 to NF4_OFFSET (the
    first, at probability 0.5, is 0 and dropped), the negative half 8 (likewise), then all are divided by the
    largest. Computed in float32 steps as the reference does, so the table is bit-identical to bitsandbytes'.
    """
    positive = torch.special.ndtri(torch.linspace(NF4_OFFSET, 0.5, 9)[:-1].double())  # 8 values > 0
    negative = -torch.special.ndtri(torch.linspace(NF4_OFFSET, 0.5, 8)[:-1].double())  # 7 values < 0
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).float().sort().values
    return values / values.max()  # (16,)


@dataclass
class QuantizedTensor:
    """A quantized weight: `data` (int8 codes, or uint8 bytes holding two 4-bit codes), and its scales.

    int8: `scale` (rows,) float32, w ~ data * scale[:, None].
    nf4: `absmax` (blocks,) float32, or with double quantization `absmax` (blocks,) int8 codes of
    absmax - `absmax_offset`, with one float32 `absmax_scale` per DOUBLE_QUANT_BLOCK of them.
    """

    method: str
    data: torch.Tensor
    shape: torch.Size
    dtype: torch.dtype
    scale: torch.Tensor | None = None
    absmax: torch.Tensor | None = None
    block_size: int = 64
    absmax_offset: torch.Tensor | None = None
    absmax_scale: torch.Tensor | None = None

    @property
    def numel(self) -> int:
        return int(torch.Size(self.shape).numel())

    @property
    def nbytes(self) -> int:
        """Bytes of everything stored: codes and scales (the memory a quantized layer holds)."""
        parts = (self.data, self.scale, self.absmax, self.absmax_offset, self.absmax_scale)
        return sum(t.numel() * t.element_size() for t in parts if t is not None)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.nbytes / self.numel

    def to(self, device: torch.device | str) -> QuantizedTensor:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return QuantizedTensor(**moved)


def _check_float(w: torch.Tensor, name: str = "w") -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {w.dtype}")
    if w.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(w.shape)}")


def quantize_int8(w: torch.Tensor) -> QuantizedTensor:
    """Symmetric int8 with one absmax scale per output row (dim 0): codes in [-127, 127]."""
    _check_float(w)
    if w.dim() != 2:
        raise ValueError(f"quantize_int8 needs a 2-D weight (out_features, in_features), got shape {tuple(w.shape)}")
    w32 = w.detach().float()
    absmax = w32.abs().amax(dim=1).clamp(min=1e-12)  # (rows,)
    data = torch.round(w32 * (127.0 / absmax)[:, None]).clamp(-127, 127).to(torch.int8)  # (rows, cols)
    return QuantizedTensor("int8", data, w.shape, w.dtype, scale=absmax / 127.0)  # scale: one step per row


def _blocks(flat: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """absmax per block of `block_size` consecutive values (the last may be shorter), and flat / absmax."""
    n = flat.numel()
    pad = (-n) % block_size
    padded = F.pad(flat, (0, pad)).view(-1, block_size)  # (blocks, block_size); zero padding changes no max
    absmax = padded.abs().amax(dim=1)  # (blocks,)
    scaled = padded * (1.0 / absmax.clamp(min=1e-38))[:, None]  # a zero block stays zero
    return absmax, scaled.clamp(-1, 1).reshape(-1)[:n]


def quantize_nf4(w: torch.Tensor, block_size: int = 64, double_quant: bool = False) -> QuantizedTensor:
    """4-bit NormalFloat: per block of the flattened tensor, divide by absmax, take the nearest NF4 value.

    Packed two codes per byte, the first of each pair in the high nibble (bitsandbytes' order); an odd count
    is padded with the code of 0.
    """
    _check_float(w)
    if not isinstance(block_size, int) or block_size < 2 or block_size % 2:
        raise ValueError(f"block_size must be an even int >= 2, got {block_size!r}")
    flat = w.detach().reshape(-1).float()
    absmax, scaled = _blocks(flat, block_size)
    code = nf4_code().to(w.device)
    midpoints = (code[:-1] + code[1:]) / 2  # (15,): a value on a midpoint goes to the lower code
    idx = torch.bucketize(scaled, midpoints).to(torch.uint8)  # (n,) in 0..15
    if idx.numel() % 2:
        idx = torch.cat([idx, torch.full((1,), 7, dtype=torch.uint8, device=idx.device)])  # code 7 is 0.0
    packed = (idx[0::2] << 4) | idx[1::2]  # (ceil(n / 2),) two codes per byte
    q = QuantizedTensor("nf4", packed, w.shape, w.dtype, absmax=absmax, block_size=block_size)
    if double_quant:
        q.absmax, q.absmax_offset, q.absmax_scale = _quantize_absmax(absmax)
    return q


def _quantize_absmax(absmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double quantization: absmax - mean in int8, one float32 scale per DOUBLE_QUANT_BLOCK values."""
    offset = absmax.mean()  # absmaxes are all positive: centring them makes the symmetric code fit better
    centred = absmax - offset
    pad = (-centred.numel()) % DOUBLE_QUANT_BLOCK
    blocks = F.pad(centred, (0, pad)).view(-1, DOUBLE_QUANT_BLOCK)  # (n_blocks, 256)
    scale = blocks.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (n_blocks,)
    codes = torch.round(blocks / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(-1)[: absmax.numel()]
    return codes, offset, scale


def _absmax_of(q: QuantizedTensor) -> torch.Tensor:
    if q.absmax_scale is None:
        return q.absmax
    scale = q.absmax_scale.repeat_interleave(DOUBLE_QUANT_BLOCK)[: q.absmax.numel()]
    return q.absmax.float() * scale + q.absmax_offset


def dequantize(q: QuantizedTensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The float weight a QuantizedTensor stands for (int8 or NF4), in `dtype` (default: the original)."""
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"q must be a QuantizedTensor (from quantize_int8 / quantize_nf4), got {type(q).__name__}")
    dtype = q.dtype if dtype is None else dtype
    if q.method == "int8":
        return (q.data.float() * q.scale[:, None]).to(dtype)
    if q.method != "nf4":
        raise ValueError(f"q.method must be one of {METHODS}, got {q.method!r}")
    n = q.numel
    idx = torch.stack([q.data >> 4, q.data & 0xF], dim=1).reshape(-1)[:n].long()  # (n,) high nibble first
    values = nf4_code().to(q.data.device)[idx]  # (n,) in [-1, 1]
    pad = (-n) % q.block_size
    blocks = F.pad(values, (0, pad)).view(-1, q.block_size) * _absmax_of(q)[:, None]  # (blocks, block_size)
    return blocks.reshape(-1)[:n].view(q.shape).to(dtype)


def quantize(w: torch.Tensor, method: str = "nf4", block_size: int = 64, double_quant: bool = False):
    """quantize_nf4 or quantize_int8 by name."""
    if method == "nf4":
        return quantize_nf4(w, block_size, double_quant)
    if method == "int8":
        return quantize_int8(w)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class QuantLinear(nn.Module):
    """A frozen linear layer whose weight is stored quantized (NF4: 4 bits, two per byte) and dequantized on
    the fly in forward. It has no trainable parameters except an optional float bias; LoRA goes on top
    (QLoRA). Weights are dequantized to the input's dtype, so the matmul runs in that precision.
    """

    def __init__(self, q: QuantizedTensor, bias: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(q, QuantizedTensor):
            raise TypeError(f"q must be a QuantizedTensor, got {type(q).__name__}")
        if len(q.shape) != 2:
            raise ValueError(f"QuantLinear needs a 2-D weight, got shape {tuple(q.shape)}")
        self.out_features, self.in_features = q.shape
        self.method = q.method
        self._meta = {"shape": torch.Size(q.shape), "dtype": q.dtype, "block_size": q.block_size}
        for name in ("data", "scale", "absmax", "absmax_offset", "absmax_scale"):
            self.register_buffer(name, getattr(q, name))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, method: str = "nf4", block_size: int = 64,
                    double_quant: bool = False) -> QuantLinear:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        return cls(quantize(linear.weight, method, block_size, double_quant), linear.bias)

    @property
    def quantized(self) -> QuantizedTensor:
        return QuantizedTensor(self.method, self.data, scale=self.scale, absmax=self.absmax,
                               absmax_offset=self.absmax_offset, absmax_scale=self.absmax_scale, **self._meta)

    @property
    def weight_numel(self) -> int:
        return self.out_features * self.in_features

    @property
    def nbytes(self) -> int:
        """Bytes of the stored weight (codes and scales), plus the bias."""
        bias = 0 if self.bias is None else self.bias.numel() * self.bias.element_size()
        return self.quantized.nbytes + bias

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.quantized, dtype)  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear holding the dequantized weight (what merging LoRA into a 4-bit base needs)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.data.device, dtype=self._meta["dtype"])
        with torch.no_grad():
            linear.weight.copy_(self.dequantized_weight(self._meta["dtype"]))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, method={self.method}, "
                f"bits_per_weight={self.quantized.bits_per_weight:.3f}")


def quantize_model(model: nn.Module, method: str = "nf4", block_size: int = 64, double_quant: bool = False,
                   skip: tuple[str, ...] = ("lm_head",)) -> nn.Module:
    """Replace every nn.Linear (except names ending with one of `skip`) by a frozen QuantLinear, in place.

    The output head stays in float by default, as QLoRA keeps it; a head tied to the embedding is never
    quantized (the embedding is not a linear layer).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not any(name == s or name.endswith("." + s) for s in skip)
               and id(m.weight) not in tied]
    if not targets:
        raise ValueError(f"quantize_model found no nn.Linear to quantize in {type(model).__name__} (skip={skip})")
    for name, linear in targets:
        replace_module(model, name, QuantLinear.from_linear(linear, method, block_size, double_quant))
    return model
