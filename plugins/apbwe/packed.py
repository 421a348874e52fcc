"""The generator's weights rearranged for the batched step (``rows.py``)."""

from __future__ import annotations

import torch

from veena.plugins.apbwe.dsp import sinc_kernel
from veena.plugins.apbwe.model import APBWEGenerator


DEPTHWISE = ("taps", "conv")
"""How the ConvNeXt depthwise convolutions run: ``taps``, seven shifted multiply-adds over
both streams at once (a fixed summation order on every device); ``conv``, one grouped
convolution per stream over channels-last views (cuDNN on a GPU: reads the frames once
instead of seven times, but its algorithm, so its rounding, may vary with the shape)."""


class PackedWeights:
    """The generator's weights rearranged for the batched step, on ``device`` in ``dtype``.

    Mag and phase stacks are stacked on a leading axis of 2 so each layer is one batched
    matrix product (``torch.baddbmm``) for both."""

    def __init__(self, model: APBWEGenerator, device: torch.device | str, dtype: torch.dtype,
                 depthwise: str = "taps") -> None:
        if depthwise not in DEPTHWISE:
            raise ValueError(f"depthwise must be one of {DEPTHWISE}, not {depthwise!r}")
        cfg = self.config = model.config
        self.device = torch.device(device)
        self.dtype = dtype
        self.depthwise = depthwise

        def put(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(device=self.device, dtype=dtype).contiguous()

        def pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return put(torch.stack([a, b]))

        pre_m, pre_p = model.conv_pre_mag, model.conv_pre_pha
        # (2, K, bins, C): tap k of the embedding as a bins x C matrix
        self.pre_w_taps = pair(pre_m.weight.permute(2, 1, 0), pre_p.weight.permute(2, 1, 0))
        self.pre_b = pair(pre_m.bias, pre_p.bias)[:, None]
        self.pre_ln = (pair(model.norm_pre_mag.weight, model.norm_pre_pha.weight)[:, None],
                       pair(model.norm_pre_mag.bias, model.norm_pre_pha.bias)[:, None])
        self.blocks: list[dict[str, torch.Tensor]] = []
        for bm, bp in zip(model.convnext_mag, model.convnext_pha):
            self.blocks.append(dict(
                dw_w=pair(bm.dwconv.weight[:, 0], bp.dwconv.weight[:, 0])[:, None],  # (2,1,C,K)
                dw_b=pair(bm.dwconv.bias, bp.dwconv.bias)[:, None],
                dw_conv=put(torch.cat([bm.dwconv.weight, bp.dwconv.weight])),  # (2C, 1, K)
                dw_b_flat=put(torch.cat([bm.dwconv.bias, bp.dwconv.bias])),
                dw_w2d=pair(bm.dwconv.weight, bp.dwconv.weight)[:, :, :, None],  # (2,C,1,1,K)
                ln_w=pair(bm.norm.weight, bp.norm.weight)[:, None],
                ln_b=pair(bm.norm.bias, bp.norm.bias)[:, None],
                w1=pair(bm.pwconv1.weight.t(), bp.pwconv1.weight.t()),
                b1=pair(bm.pwconv1.bias, bp.pwconv1.bias)[:, None],
                w2=pair(bm.pwconv2.weight.t(), bp.pwconv2.weight.t()),
                b2=pair(bm.pwconv2.bias, bp.pwconv2.bias)[:, None],
                gamma=pair(bm.gamma, bp.gamma)[:, None],
            ))
        self.post_ln = (pair(model.norm_post_mag.weight, model.norm_post_pha.weight)[:, None],
                        pair(model.norm_post_mag.bias, model.norm_post_pha.bias)[:, None])
        self.mag_w = put(model.linear_post_mag.weight.t())
        self.mag_b = put(model.linear_post_mag.bias)
        self.pha_w = put(torch.cat([model.linear_post_pha_r.weight, model.linear_post_pha_i.weight]).t())
        self.pha_b = put(torch.cat([model.linear_post_pha_r.bias, model.linear_post_pha_i.bias]))
        self.window = torch.hann_window(cfg.win_size, device=self.device)
        self.window_sq = (self.window ** 2)[None]
        taps, self.resampler_width = sinc_kernel(cfg.ratio)
        self.resampler_taps = torch.from_numpy(taps).to(self.device)
        self.pad = ((cfg.n_fft - cfg.win_size) // 2, cfg.n_fft - cfg.win_size - (cfg.n_fft - cfg.win_size) // 2)
