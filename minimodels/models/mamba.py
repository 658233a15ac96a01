"""Mamba: a language model built from selective state space blocks instead of attention.

Each block mixes the sequence with a recurrence whose step size delta, input matrix B and output matrix C
depend on the current token ("selection"): a large delta lets a token overwrite the state, a tiny one lets
the state pass through untouched. The computation is that of mamba-ssm and of Hugging Face's
MambaForCausalLM (see minimodels/hf/mamba.py), whose weights load into `MambaLM` by plain renaming.

    model = MambaLM(MambaConfig(vocab_size=96, d_model=64, n_layers=2))
    logits = model(ids)                              # (B, T, V), parallel over T (training, prefill)
    logits, state = model.prefill(ids)               # same, plus the recurrent state after the last token
    logits = model.step(next_ids, state)             # (B, V), one token, constant memory (decoding)

The scan runs on the Triton kernel for CUDA tensors and on the chunked PyTorch scan on CPU (`scan="auto"`);
`import minimodels.models.mamba` never imports triton.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kernels.ops.selective_scan.chunked import selective_scan_chunked
from kernels.ops.selective_scan.ref import prepare_delta, selective_scan_ref, selective_state_update_ref
from minimodels.layers.norms import RMSNorm
from minimodels.models.inputs import check_token_ids
from minimodels.runtime import num_parameters

SCANS = ("auto", "chunked", "triton", "ref")


@dataclass
class MambaConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    d_state: int = 16  # N, size of each channel's state
    expand: int = 2  # d_inner = expand * d_model channels inside a block
    d_conv: int = 4  # width of the causal depthwise convolution
    dt_rank: int | str = "auto"  # rank of the delta projection; "auto" = ceil(d_model / 16)
    dt_min: float = 1e-3  # initial step sizes are drawn log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False  # biases of in_proj and out_proj
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    residual_in_fp32: bool = True  # keep the residual stream in float32 (matters in half precision)
    scan: str = "auto"  # "auto" (Triton on CUDA, chunked on CPU), "chunked", "triton" or "ref"
    chunk_size: int = 32  # chunk length of the chunked PyTorch scan (CPU)

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "d_state", "expand", "d_conv", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MambaConfig.{name} must be a positive int, got {value!r}")
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        if not isinstance(self.dt_rank, int) or isinstance(self.dt_rank, bool) or self.dt_rank < 1:
            raise ValueError(f"MambaConfig.dt_rank must be 'auto' or a positive int, got {self.dt_rank!r}")
        if not 0 < self.dt_min < self.dt_max:
            raise ValueError(
                f"MambaConfig.dt_min must satisfy 0 < dt_min < dt_max, got dt_min={self.dt_min}, "
                f"dt_max={self.dt_max}"
            )
        if self.dt_init_floor <= 0:
            raise ValueError(f"MambaConfig.dt_init_floor must be > 0, got {self.dt_init_floor}")
        if self.norm_eps <= 0:
            raise ValueError(f"MambaConfig.norm_eps must be > 0, got {self.norm_eps}")
        if self.scan not in SCANS:
            raise ValueError(f"MambaConfig.scan must be one of {SCANS}, got {self.scan!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model


@dataclass
class MambaState:
    """Everything a Mamba LM remembers about the past: per layer the last d_conv convolution inputs
    (B, d_inner, d_conv), oldest first, and the SSM state (B, d_inner, N) in float32. Its size does not
    depend on how many tokens were read."""

    conv: list[torch.Tensor]
    ssm: list[torch.Tensor]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.conv + self.ssm)


def _use_triton(kind: str, x: torch.Tensor) -> bool:
    return kind == "triton" or (kind == "auto" and x.is_cuda)


class MambaMixer(nn.Module):
    """The Mamba block: in_proj -> (x, z); x -> causal conv -> SiLU -> selective scan (D skip, SiLU(z) gate)
    -> out_proj. delta, B and C come from x through x_proj (and dt_proj for delta)."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        d, di, n, r = config.d_model, config.d_inner, config.d_state, config.dt_rank
        self.in_proj = nn.Linear(d, 2 * di, bias=config.bias)
        self.conv1d = nn.Conv1d(di, di, config.d_conv, groups=di, padding=config.d_conv - 1, bias=config.conv_bias)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)  # -> (dt, B, C)
        self.dt_proj = nn.Linear(r, di, bias=True)  # its bias is the scan's delta_bias
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.A_log._no_weight_decay = True  # as in mamba-ssm: decay would pull A toward -1 for every channel
        self.out_proj = nn.Linear(di, d, bias=config.bias)
        self.reset_dt()

    @torch.no_grad()
    def reset_dt(self) -> None:
        """Mamba's delta initialization: softplus(dt_proj.bias) log-uniform in [dt_min, dt_max]."""
        c = self.config
        nn.init.uniform_(self.dt_proj.weight, -(c.dt_rank**-0.5), c.dt_rank**-0.5)
        log_dt = torch.rand(c.d_inner) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min)
        dt = log_dt.exp().clamp(min=c.dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus

    def A(self) -> torch.Tensor:
        """A = -exp(A_log), (d_inner, N), float32: negative, so every channel's state decays."""
        return -torch.exp(self.A_log.float())

    def _selection(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input-dependent dt (before bias and softplus) (..., d_inner), B and C (..., N) from x (..., d_inner)."""
        c = self.config
        dt, B, C = self.x_proj(x).split([c.dt_rank, c.d_state, c.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """Causal depthwise convolution then SiLU: x (B, d_inner, T) -> (B, d_inner, T)."""
        return F.silu(self.conv1d(x)[..., : x.shape[-1]])

    def _scan_inputs(self, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """From hidden (B, T, d_model): the conv input x_in, then the scan's u, z, dt (before bias and
        softplus), all (B, d_inner, T), and B, C (B, N, T)."""
        x_in, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, T) each
        x = self._conv(x_in)
        dt, B, C = self._selection(x.transpose(1, 2))  # (B, T, d_inner), (B, T, N), (B, T, N)
        return x_in, x, z, dt.transpose(1, 2), B.transpose(1, 2), C.transpose(1, 2)

    def time_steps(self, hidden: torch.Tensor) -> torch.Tensor:
        """The scan's delta = softplus(dt + dt_bias) (B, d_inner, T) for the block's input hidden (B, T, d_model)."""
        _, _, _, dt, _, _ = self._scan_inputs(hidden)
        return prepare_delta(dt, self.dt_proj.bias.float(), softplus=True)

    def forward(self, hidden: torch.Tensor, return_state: bool = False):
        """hidden (B, T, d_model) -> (B, T, d_model); with return_state also (conv_state, ssm_state)."""
        T = hidden.shape[1]
        x_in, x, z, dt, B, C = self._scan_inputs(hidden)
        args = (x, dt, self.A(), B, C, self.D.float(), z, self.dt_proj.bias.float())
        kwargs = dict(delta_softplus=True, return_last_state=return_state)
        kind = self.config.scan
        if _use_triton(kind, x):
            from kernels.ops.selective_scan.triton import selective_scan  # imports triton: only on this path

            result = selective_scan(*args, **kwargs)
        elif kind == "ref":
            result = selective_scan_ref(*args, **kwargs)
        else:
            result = selective_scan_chunked(*args, **kwargs, chunk_size=self.config.chunk_size)
        y, ssm_state = result if return_state else (result, None)
        out = self.out_proj(y.transpose(1, 2))  # (B, T, d_model)
        if not return_state:
            return out
        d_conv = self.config.d_conv
        conv_state = F.pad(x_in, (max(0, d_conv - T), 0))[..., -d_conv:]  # last d_conv inputs, zero-padded
        return out, (conv_state.contiguous(), ssm_state)

    def step(self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor) -> torch.Tensor:
        """One token: hidden (B, d_model) -> (B, d_model); updates both states in place."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, d_inner) each
        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = x
        x = (conv_state * self.conv1d.weight[:, 0, :]).sum(-1)  # (B, d_inner): the conv at the newest step
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        dt, B, C = self._selection(x)  # (B, d_inner), (B, N), (B, N)
        args = (ssm_state, x, dt, self.A(), B, C, self.D.float(), z, self.dt_proj.bias.float())
        if _use_triton(self.config.scan, x):
            from kernels.ops.selective_scan.triton import selective_state_update

            y = selective_state_update(*args, dt_softplus=True)
        else:
            y = selective_state_update_ref(*args, dt_softplus=True)
        return self.out_proj(y)


class MambaBlock(nn.Module):
    """Pre-norm residual block: x + mixer(RMSNorm(x))."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = RMSNorm(config.d_model, eps=config.norm_eps)
        self.mixer = MambaMixer(config)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() if self.residual_in_fp32 else x

    def forward(self, x: torch.Tensor, return_state: bool = False):
        out = self.mixer(self.norm(x.to(self.norm.weight.dtype)), return_state)
        if return_state:
            out, state = out
            return self._residual(x) + out, state
        return self._residual(x) + out

    def step(self, x: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor) -> torch.Tensor:
        return self._residual(x) + self.mixer.step(self.norm(x.to(self.norm.weight.dtype)), conv_state, ssm_state)


class MambaLM(nn.Module):
    """Embedding -> n_layers Mamba blocks -> RMSNorm -> LM head (tied to the embedding by default).

    model(input_ids (B, T)) -> logits (B, T, V). No position embedding: the recurrence knows the order.
    """

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(MambaBlock(config) for _ in range(config.n_layers))
        self.norm_f = RMSNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self._init_weights()
        if config.tie_embeddings:
            self.lm_head.weight = self.embedding.weight

    @torch.no_grad()
    def _init_weights(self) -> None:
        """mamba-ssm's: embedding N(0, 0.02), zero linear biases (but dt_proj's), out_proj scaled by depth."""
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.lm_head.weight, std=0.02)
        for layer in self.layers:
            mixer = layer.mixer
            for linear in (mixer.in_proj, mixer.out_proj):
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
            mixer.out_proj.weight /= math.sqrt(self.config.n_layers)

    def num_parameters(self) -> int:
        return num_parameters(self)

    def _check_ids(self, input_ids: torch.Tensor) -> None:
        if input_ids.dim() != 2 or input_ids.shape[1] < 1:
            raise ValueError(f"input_ids must be (batch, time) with time >= 1, got shape {tuple(input_ids.shape)}")
        check_token_ids(input_ids, self.config.vocab_size)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm_f(x).to(self.lm_head.weight.dtype))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self._check_ids(input_ids)
        x = self.embedding(input_ids)  # (B, T, d_model)
        for layer in self.layers:
            x = layer(x)
        return self._head(x)  # (B, T, V)

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, MambaState]:
        """The forward over a prompt (B, T), in parallel, plus the state after its last token."""
        self._check_ids(input_ids)
        x = self.embedding(input_ids)
        conv, ssm = [], []
        for layer in self.layers:
            x, (conv_state, ssm_state) = layer(x, return_state=True)
            conv.append(conv_state)
            ssm.append(ssm_state.float())
        return self._head(x), MambaState(conv, ssm)

    def init_state(self, batch_size: int) -> MambaState:
        """The state before any token: zeros, (B, d_inner, d_conv) and (B, d_inner, N) per layer."""
        c, weight = self.config, self.lm_head.weight
        conv = [weight.new_zeros(batch_size, c.d_inner, c.d_conv) for _ in self.layers]
        ssm = [weight.new_zeros(batch_size, c.d_inner, c.d_state, dtype=torch.float32) for _ in self.layers]
        return MambaState(conv, ssm)

    @torch.no_grad()
    def step(self, token_ids: torch.Tensor, state: MambaState) -> torch.Tensor:
        """Read one token per sequence, token_ids (B,); update `state` in place; return logits (B, V)."""
        if token_ids.dim() != 1:
            raise ValueError(f"token_ids must be (batch,), got shape {tuple(token_ids.shape)}")
        check_token_ids(token_ids, self.config.vocab_size, "token_ids")
        if len(state.ssm) != len(self.layers) or state.ssm[0].shape[0] != token_ids.shape[0]:
            raise ValueError(
                f"state holds {len(state.ssm)} layers of batch {state.ssm[0].shape[0]}; the model has "
                f"{len(self.layers)} layers and token_ids a batch of {token_ids.shape[0]}"
            )
        x = self.embedding(token_ids)  # (B, d_model)
        for layer, conv_state, ssm_state in zip(self.layers, state.conv, state.ssm, strict=True):
            x = layer.step(x, conv_state, ssm_state)
        return self._head(x)  # (B, V)
