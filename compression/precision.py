"""The training precision this machine runs well: bf16 autocast only where the hardware computes in bfloat16.

On a CPU without bfloat16 instructions (AVX512-BF16 or AMX-BF16; an AVX2-only AMD EPYC, say) PyTorch emulates
bf16 matrix products: one all-MiniLM-L6-v2 training step of 8 x 128 tokens took 16.2 s there against 0.92 s in fp32
(`python tools/measure_training_precision.py all-MiniLM-L6-v2 --length 128 --batch-size 8`). Recipes ask for bf16
because it pays where it is native, so a run elsewhere trains in fp32 and says so.
"""

from __future__ import annotations

import logging

import torch

from compression.training_loop import Precision

log = logging.getLogger(__name__)


def native_bf16() -> bool:
    """Whether training here would compute bf16 autocast's products in hardware (the GPU if one is used)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def runnable_precision(precision: Precision) -> Precision:
    """``precision``, or fp32 (with a warning) where bf16 would only be emulated."""
    if precision != "bf16" or native_bf16():
        return precision
    log.warning("this machine has no bfloat16 arithmetic (%s CPU, no AVX512-BF16 or AMX): bf16 autocast would run "
                "many times slower than fp32, so training runs in fp32", torch.backends.cpu.get_cpu_capability())
    return "fp32"
