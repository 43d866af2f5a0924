"""Numeric precision and memory layout, shared by every part.

``auto`` means bf16 autocast on CUDA GPUs that support it and on CPUs whose oneDNN has native bf16
(AVX512-BF16 / AMX: about 2–3× faster convolutions than fp32), fp32 elsewhere; ``fp32`` and ``bf16``
force one. bf16 keeps the course's accuracies: DANN 76.5% against 76.8% in fp32, and the DCGAN's
Fréchet distance within its seed spread (docs/checks/part_c.md, part_d.md). Autocast keeps
the weights and the optimiser in fp32 and runs convolutions and matrix products in bf16.
"""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger("cnnlab")

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16_cpu() -> bool:
    """Whether this CPU's oneDNN runs bf16 natively (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_warned_emulated = False


def use_bf16(precision: str, device: torch.device) -> bool:
    global _warned_emulated
    if precision == "bf16":
        if device.type == "cpu" and not native_bf16_cpu() and not _warned_emulated:
            # emulated bf16 is far slower than fp32 (docs/checks/part_c.md, session 7)
            log.warning("--precision bf16 on a CPU without native bf16 (AVX512-BF16/AMX): it is emulated and many "
                        "times slower than fp32; --precision auto picks fp32 here")
            _warned_emulated = True
        return True
    if precision == "auto" and device.type == "cpu":
        return native_bf16_cpu()
    if precision == "auto" and device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device`` when ``bf16``, else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def autocast_for(precision: str, device: torch.device):
    """:func:`autocast` for a ``--precision`` setting (auto, fp32, bf16) on ``device``."""
    return autocast(device, use_bf16(precision, device))


def memory_format(device: torch.device) -> torch.memory_format:
    """NHWC (channels_last) on CPU and CUDA, where oneDNN/cuDNN convolutions run faster than in NCHW."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def fused_optimizer(device: torch.device) -> bool:
    """Whether ``fused=True`` optimisers (one kernel for all parameters, ~10% of a small CPU step) run here."""
    return device.type in ("cpu", "cuda")
