"""ONNX: a checkpoint exported as a portable model (float32, or int8 by ONNX Runtime's own static quantisation), and
an ONNX Runtime module that predictions can run instead of torch.

The exported graph is the network's forward pass on a normalised batch (N, 3, S, S), dynamic N, opset 18; what a
caller needs around it travels in the model's metadata (`fer_core.spec`: the checkpoint's spec as JSON — classes,
input size, mean/std, grey input, flip averaging, calibration temperatures). Explanations keep running in torch
(they need gradients and hooks); only predictions use this runtime (`FER_RUNTIME=onnx`, docs/training.md).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoints import ModelSpec, load_checkpoint, resolve_checkpoint
from .errors import CheckpointError, UsageError

SPEC_KEY = "fer_core.spec"
OPSET = 18
RUNTIMES = ("torch", "onnx")


def requested_runtime(runtime: str | None = None) -> str:
    """`runtime`, else FER_RUNTIME, else "torch"; one of RUNTIMES (UsageError otherwise)."""
    value = runtime or os.environ.get("FER_RUNTIME", "torch")
    if value not in RUNTIMES:
        raise UsageError(f"FER_RUNTIME={value!r}: choose from {', '.join(RUNTIMES)}")
    return value


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, *, int8: bool = False,
                calibration: torch.Tensor | None = None, samples: int = 512, seed: int = 0) -> Path:
    """Write `checkpoint` as an ONNX model at `out` (float32; with `int8`, statically quantised by ONNX Runtime,
    QDQ format, per-channel weights, activation ranges from `calibration` — a uint8 batch (N, 3, S, S) of training
    faces — or, when None, `samples` faces drawn from the checkpoint's own training split, never a test face)."""
    import onnx

    model, spec = load_checkpoint(resolve_checkpoint(checkpoint))
    model = model.float().eval()
    out = Path(out)
    size = spec.input_size
    example = torch.zeros(2, 3, size, size)
    float_path = out if not int8 else out.with_name(out.stem + ".float.tmp.onnx")
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET, input_names=["input"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(float_path))
    if int8:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        faces = calibration if calibration is not None else _training_faces(spec, samples, seed)
        x = _normalised(faces, spec)
        if spec.tta_flip:
            x = torch.cat([x, torch.flip(x, dims=[3])])

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([x[i:i + 64].numpy() for i in range(0, len(x), 64)])

            def get_next(self):
                b = next(self.batches, None)
                return None if b is None else {"input": b}

        try:
            quantize_static(str(float_path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        finally:
            float_path.unlink(missing_ok=True)
    proto = onnx.load(str(out))
    _set_metadata(proto, spec, int8)
    onnx.save(proto, str(out))
    return out


def _set_metadata(proto, spec: ModelSpec, int8: bool) -> None:
    from . import __version__

    for key, value in ((SPEC_KEY, spec.to_json()), ("fer_core.version", __version__),
                       ("fer_core.precision", "int8" if int8 else "float32")):
        entry = next((p for p in proto.metadata_props if p.key == key), None) or proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "fer_core"


def _normalised(x_u8: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    from .preprocess import grey_uint8, normalize

    return normalize(grey_uint8(x_u8) if spec.grayscale else x_u8, spec).float().contiguous()


def _training_faces(spec: ModelSpec, samples: int, seed: int) -> torch.Tensor:
    """`samples` faces drawn (seeded) from the checkpoint's own training split: what int8 ranges are measured on."""
    from .evaluation import training_splits

    x_u8, _, train_idx, _ = training_splits(spec)
    pick = np.sort(np.random.default_rng(seed).choice(train_idx, size=min(samples, len(train_idx)), replace=False))
    return x_u8[torch.from_numpy(pick)]


def read_onnx(path: str | os.PathLike):
    """(an ONNX Runtime session, the spec in its metadata, its precision); CheckpointError for a file that is not an
    ONNX model or was not exported by fer_core."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own classes for every kind of bad file
        raise CheckpointError(f"{path.name} is not an ONNX model ONNX Runtime can load "
                              f"({str(exc).strip().splitlines()[0][:200]})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if SPEC_KEY not in meta:
        raise CheckpointError(f"{path.name} is an ONNX model, but not one fer_core exported (no {SPEC_KEY} in its "
                              "metadata); export one with: fer export MODEL --onnx OUT.onnx")
    try:
        spec = ModelSpec.from_json(meta[SPEC_KEY])
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path.name}: its {SPEC_KEY} metadata cannot be read ({exc})") from None
    return session, spec, meta.get("fer_core.precision", "float32")


class OnnxModule(nn.Module):
    """An ONNX Runtime session as a module: a normalised float batch in, float32 logits out (CPU tensors). It has no
    parameters, so code that asks a module for its device finds the CPU."""

    def __init__(self, session, precision: str = "float32") -> None:
        super().__init__()
        self.session, self.precision = session, precision
        self.input_name = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().float().contiguous().cpu().numpy()})[0]
        return torch.from_numpy(out)


def cached_export(checkpoint: str | os.PathLike) -> Path:
    """The float32 ONNX export of a checkpoint, made once per checkpoint file (keyed by its bytes) under
    FER_CACHE/onnx."""
    from .data import cache_dir

    path = resolve_checkpoint(checkpoint)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    out = cache_dir() / "onnx" / f"{path.stem}-{digest}.onnx"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.onnx")
        export_onnx(path, tmp)
        os.replace(tmp, out)
    return out


def onnx_module_for(checkpoint: str | os.PathLike, spec: ModelSpec, onnx_path: str | os.PathLike | None = None) -> OnnxModule:
    """The ONNX Runtime module for a checkpoint: `onnx_path` (FER_ONNX_MODEL: an export of your own, int8 included),
    else the cached float32 export. A file whose classes or input differ from the checkpoint's is refused."""
    path = Path(onnx_path) if onnx_path else cached_export(checkpoint)
    session, onnx_spec, precision = read_onnx(path)
    reads = lambda s: (tuple(s.classes), s.input_size, s.grayscale, tuple(s.mean), tuple(s.std))  # noqa: E731
    if reads(onnx_spec) != reads(spec):
        raise CheckpointError(f"{path.name} was exported from another model ({onnx_spec.arch}, classes "
                              f"{', '.join(onnx_spec.classes)}) than {spec.arch}'s checkpoint")
    return OnnxModule(session, precision)
