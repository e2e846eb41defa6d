"""Rotary position embedding (NEOX layout: the two rotated halves are the first and second half of a head).

Inverse frequencies and the attention scaling follow transformers' modeling_rope_utils exactly for the
`default` and `yarn` rope types, so logits match Hugging Face at every position.
"""

from __future__ import annotations

import math

import torch

from qcoder.model.config import ModelConfig


def default_inv_freq(head_dim: int, base: float) -> torch.Tensor:
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim
    return 1.0 / (base**exponents)


def yarn_inv_freq(
    head_dim: int, base: float, scaling: dict, max_position_embeddings: int
) -> tuple[torch.Tensor, float]:
    """YaRN: interpolate the low frequencies by `factor`, keep the high ones, ramp linearly in between."""
    original_max = scaling["original_max_position_embeddings"]
    factor = scaling.get("factor") or max_position_embeddings / original_max
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1

    def correction_dim(num_rotations: float) -> float:
        # The dimension whose wavelength fits `num_rotations` times into the original context.
        return head_dim * math.log(original_max / (num_rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero in the ramp

    pos_freqs = base ** (torch.arange(0, head_dim, 2, device="cpu").float() / head_dim)
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp  # 1 keeps the original frequency, 0 takes the interpolated one
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, float(attention_factor)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


class RotaryEmbedding:
    """Holds one fp32 cos/sin table, computed once and grown (doubled) when a longer position is seen."""

    def __init__(self, config: ModelConfig):
        self.head_dim = config.head_dim
        scaling = config.rope_scaling
        if scaling is None:
            self.inv_freq, self.attention_scaling = default_inv_freq(config.head_dim, config.rope_theta), 1.0
        elif scaling["rope_type"] == "yarn":
            self.inv_freq, self.attention_scaling = yarn_inv_freq(
                config.head_dim, config.rope_theta, scaling, config.max_position_embeddings
            )
        else:
            raise ValueError(f"unsupported rope_type {scaling['rope_type']!r}")
        self.cos = self.sin = torch.empty(0, config.head_dim)

    def cos_sin(self, positions: torch.Tensor, max_position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape [T, head_dim] for `positions` (all < max_position; passed to avoid a device sync)."""
        length = self.cos.shape[0]
        if max_position > length:
            self._build(max(max_position, 2 * length, 256), positions.device)
        elif self.cos.device != positions.device:
            self._build(length, positions.device)
        return self.cos.index_select(0, positions), self.sin.index_select(0, positions)

    def _build(self, length: int, device: torch.device) -> None:
        t = torch.arange(length, dtype=torch.float32, device=device)
        freqs = torch.outer(t, self.inv_freq.to(device))
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = emb.cos() * self.attention_scaling
        self.sin = emb.sin() * self.attention_scaling


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [T, heads, head_dim]; cos/sin: [T, head_dim] fp32. Rotates in fp32, returns x's dtype."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos[:, None, :] + rotated * sin[:, None, :]).to(x.dtype)
