"""Int8 CPU predictions: post-training static quantization (PyTorch FX graph mode, x86 engine).

A checkpoint may carry, in its spec's `int8` field, the activation ranges (scale, zero point) that
`calibrate_int8` measured on training faces; `int8_for_inference` rebuilds the quantized model from
them at load time, so no data is needed where the app runs. The int8 `fernet` is 2-3x faster than the frozen
float32 copy on the CPUs measured, with the same test accuracy (docs/results.md, bench/latency.py). Weights are
quantized per channel when the model is built;
batch norm is folded into the convolutions. Explainers never use this copy: they keep the float32
model and its hooks.
"""
from __future__ import annotations

import copy
import logging
import threading
import warnings
from typing import Any, Iterable

import torch

ENGINE = "x86"  # fbgemm/oneDNN kernels; present in every x86 build of torch
_FX_CONFIG_LOCK = threading.Lock()  # see _prepared

# fernet_duo's int8 copy joins its two branches with a quantized cat whose inputs keep their own ranges, and
# torch warns on every such call (the server log filled with it). The cost was measured, not assumed: int8 vs
# float32 duo 0.7243 vs 0.7278 validation macro-F1 (docs/decisions.md). Only this message is
# hidden, from the moment an int8 copy is built (process-wide: the copy is called from any thread).
_QUANTIZED_CAT_WARNING = "All inputs of this cat operator must share the same quantization parameters"


def int8_supported() -> bool:
    return ENGINE in torch.backends.quantized.supported_engines


def _prepared(model: torch.nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """A copy of `model` with an observer after every quantized activation (names activation_post_process_N)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = ENGINE
    model = copy.deepcopy(model).eval().to(memory_format=torch.contiguous_format)
    # FX's quantization tracer records a stack trace per node for debugging, and symbolising the first one imports
    # torch._inductor: most of the int8 copy's build time in a fresh process (the CLI's start).
    # The switch is process-wide, so builds on two threads (the app's preload) take turns to set and restore it.
    with _FX_CONFIG_LOCK:
        config, emitted = torch.fx.config, torch.fx.config.do_not_emit_stack_traces
        config.do_not_emit_stack_traces = True
        try:
            return prepare_fx(model, get_default_qconfig_mapping(ENGINE), (example,))
        finally:
            config.do_not_emit_stack_traces = emitted


def _observers(prepared: torch.nn.Module) -> dict[str, torch.nn.Module]:
    from torch.ao.quantization.observer import ObserverBase

    return {name: m for name, m in prepared.named_modules() if isinstance(m, ObserverBase)}


def calibrate_int8(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, Any]:
    """Activation ranges of `model` over model-input batches (B, 3, S, S) — training faces, each batch
    with its mirror image when predictions average flips — as the spec's `int8` field:
    {"engine", "activations": {observer name: [scale, zero_point]}}."""
    batches = iter(batches)
    first = next(batches)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices; torch is pinned
        prepared = _prepared(model, first[:1].cpu())
        for x in (first, *batches):
            prepared(x.cpu().contiguous())
        ranges = {name: [float(s), int(z)] for name, o in _observers(prepared).items()
                  for s, z in [o.calculate_qparams()]}
    return {"engine": ENGINE, "activations": ranges}


def int8_for_inference(model: torch.nn.Module, example: torch.Tensor,
                       calibration: dict[str, Any] | None) -> torch.nn.Module | None:
    """The int8 TorchScript copy of a float32 CPU model from its stored calibration; None where there
    is none, the CPU lacks the engine, or it does not match this model (then callers keep float32)."""
    if not calibration or example.device.type != "cpu" or not int8_supported():
        return None
    from torch.ao.quantization import FixedQParamsObserver
    from torch.ao.quantization.quantize_fx import convert_fx

    log = logging.getLogger(__name__)
    warnings.filterwarnings("ignore", message=_QUANTIZED_CAT_WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = _prepared(model, example[:1].contiguous())
            observers, ranges = _observers(prepared), calibration.get("activations", {})
            if calibration.get("engine") != ENGINE or set(observers) != set(ranges):
                log.warning("the stored int8 calibration does not match this model; using float32")
                return None
            for name, o in observers.items():
                scale, zero_point = ranges[name]
                setattr(prepared, name, FixedQParamsObserver(
                    scale, zero_point, dtype=o.dtype, qscheme=o.qscheme, quant_min=o.quant_min, quant_max=o.quant_max))
            quantized = convert_fx(prepared)
            with torch.inference_mode():
                # check_trace=False: trace's own re-run check imports torch.distributed (a second or more of a cold build);
                # tests compare the copy's predictions instead
                return torch.jit.freeze(torch.jit.trace(quantized, example.contiguous(), check_trace=False).eval())
    except (RuntimeError, ValueError) as exc:  # an op the int8 kernels lack
        log.warning("int8 conversion failed (%s); using float32", exc)
        return None
