"""Where and in which precision the models run: CUDA when present, bfloat16 only where it is native."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

PRECISIONS = ("auto", "float32", "bfloat16", "int8")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=None)
def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_summary(info: str | None = None) -> str:
    """The CPU model and its widest vector extension, e.g. 'AMD EPYC (AVX-512 BF16)', from `info`
    (default: /proc/cpuinfo): speeds differ several-fold between such hosts, so every measured
    latency records it."""
    if info is None:
        try:
            info = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "CPU")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    ext = next((label for flag, label in [("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2")]
                if flag in flags), "no AVX2")
    return f"{name} ({ext})"


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with native bf16 (AVX-512 BF16 / AMX); on a plain
    AVX2 CPU it was 17x slower than float32 here, so it is off there."""
    if device.type == "cuda":
        return True
    return _cpu_has_native_bf16()


def requested_precision(precision: str | None = None) -> str:
    """`precision`, else the FER_PRECISION environment variable, else 'auto'; one of PRECISIONS."""
    precision = precision or os.environ.get("FER_PRECISION", "auto")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str | None = None, device: torch.device | None = None) -> str:
    """The floating-point precision of a request: 'auto' -> 'bfloat16' where native, else 'float32';
    'int8' -> 'float32' (the model it is quantized from, and what explainers run)."""
    precision = requested_precision(precision)
    if precision == "auto":
        return "bfloat16" if bf16_supported(device or torch.device("cpu")) else "float32"
    return "float32" if precision == "int8" else precision


def frozen_for_inference(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module | None:
    """A TorchScript-frozen copy of an eval-mode CPU model for float32 predictions (batch norm folded
    into the convolutions, oneDNN weight layouts), giving the same logits to ~1e-6. None off the CPU
    or where it cannot be built; callers then keep the eager model."""
    if example.device.type != "cpu":
        return None
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices; torch is pinned
            # check_trace=False: as in quantize.int8_for_inference (tests compare the copy with the eager model)
            traced = torch.jit.trace(model.eval(), example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except RuntimeError as exc:  # an architecture TorchScript cannot trace: eager mode still works
        logging.getLogger(__name__).warning("TorchScript freezing failed (%s); using eager mode", exc)
        return None


def median_ms(fn: Callable[[Any], object], x: Any, repeats: int = 15, warmup: int = 3) -> float:
    """Median wall time of fn(x) in ms after `warmup` calls, under inference mode."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def fastest_module(candidates: dict[str, torch.nn.Module | None], example: torch.Tensor) -> str:
    """The name of the candidate that runs `example` fastest on this machine; the first one (the
    eager model) is the baseline, and a later one must beat the best so far by 5% to be picked
    (None = not available here). Which wins depends on the architecture and the CPU (docs/decisions.md)."""
    names = [n for n, m in candidates.items() if m is not None]
    # 7 timed calls: the pick only sets the speed (the copies' logits agree to ~1e-6), and a close call matters little
    best, best_ms = names[0], median_ms(candidates[names[0]], example, repeats=7, warmup=2)
    for name in names[1:]:
        ms = median_ms(candidates[name], example, repeats=7, warmup=2)
        if ms < 0.95 * best_ms:
            best, best_ms = name, ms
    return best


class AutocastBf16(torch.nn.Module):
    """A model run under bfloat16 autocast, so `fastest_module` times eager bf16 predictions as they run."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_ctx(x.device, True):
            return self.model(x).float()


def autocast_ctx(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def forward_logits(model: torch.nn.Module, x: torch.Tensor, *, tta_flip: bool, bf16: bool) -> torch.Tensor:
    """Float32 logits (B, K) of a model input (B, 3, S, S); with tta_flip, the mean over the face and
    its mirror, run as one batch of 2B. The one forward of predictions (app, CLI and evaluation)."""
    if tta_flip:
        x = torch.cat([x, torch.flip(x, dims=[3])])
    with autocast_ctx(x.device, bf16):
        logits = model(x).float()
    if tta_flip:
        logits = (logits[: len(logits) // 2] + logits[len(logits) // 2:]) / 2
    return logits
