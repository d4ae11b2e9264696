"""The Predictor runtime: a loaded checkpoint ready for many faces (precision, the int8 or frozen copy,
calibration temperatures), and load_predictor, which loads one once per process."""
from __future__ import annotations

import functools
import os
import threading
from typing import Sequence

import numpy as np
import torch

from .checkpoints import ModelSpec, load_checkpoint, resolve_checkpoint
from .device import (
    AutocastBf16, fastest_module, forward_logits, frozen_for_inference, requested_precision, resolve_precision,
)
from .models import FerNet
from .preprocess import faces_to_uint8, grayscale_mask, normalize
from .onnx_runtime import requested_runtime
from .quantize import int8_for_inference, int8_supported

DEFAULT_CHECKPOINT = "fernet"


def probs_from_logits(logits: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> np.ndarray:
    """The one softmax of the project: calibrated probabilities (N, K) that sum to 1 (one temperature,
    or (N, 1) of them: Predictor.face_temperatures)."""
    return torch.softmax(logits.float() / temperature, dim=1).cpu().numpy()


class Predictor:
    """A loaded checkpoint, ready for many faces; safe to share between threads.

    `precision` applies to predictions only ("auto": bfloat16 autocast where the CPU has native
    bf16, else float32; "int8": the quantized copy that the checkpoint's stored calibration
    rebuilds, see fer_core.quantize; the FER_PRECISION environment variable overrides auto).
    Explainers always run the model in float32, in eager mode (they hook its layers).
    Float32 CPU predictions may run a compiled copy, built on the first prediction (~1 s): a
    TorchScript-frozen float32 copy or, with "auto" precision and a calibrated checkpoint, the int8 copy.
    `frozen=True` always (int8 where available; load_predictor's default), None the int8 copy where there
    is one, else the faster of eager and frozen as measured on this machine (the app; ~1 s more), False
    (this class's default) never. `runtime` and `precision` say what runs.
    """

    def __init__(self, model: FerNet, spec: ModelSpec, name: str = "", *, precision: str | None = None,
                 frozen: bool | None = False, runtime: str | None = None, path: str | os.PathLike | None = None) -> None:
        # channels_last: 1.6x faster CPU inference here (batch of 225, as in occlusion)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.spec = spec
        self.name = name or spec.arch
        self.device = next(model.parameters()).device
        requested = requested_precision(precision)
        self._float_precision = resolve_precision(requested, self.device)
        cpu = self.device.type == "cpu"
        self._cpu32 = self._float_precision == "float32" and cpu
        # int8 on any CPU with the engine: where bf16 is native too, "auto" takes the int8 copy over bf16 eager
        # (about 3x faster there: docs/results.md)
        self._int8_ok = requested in ("auto", "int8") and cpu and bool(spec.int8) and int8_supported()
        if requested == "int8" and not self._int8_ok:
            why = ("the CPU lacks the x86 int8 engine" if spec.int8 and self.device.type == "cpu" else
                   "it runs on CUDA" if spec.int8 else "it has no int8 calibration (run train/quantize.py)")
            raise ValueError(f"{self.name} cannot predict in int8: {why}")
        self._frozen_choice = True if requested == "int8" else frozen
        self._int8: torch.nn.Module | None = None
        # FER_RUNTIME=onnx: predictions run an ONNX Runtime session (fer_core.onnx_runtime) of this checkpoint's
        # export, or of FER_ONNX_MODEL; explanations still run the torch model
        self._onnx_wanted = requested_runtime(runtime) == "onnx"
        if self._onnx_wanted and path is None and not os.environ.get("FER_ONNX_MODEL"):
            raise ValueError("the ONNX runtime needs the checkpoint's path (load_predictor passes it) or FER_ONNX_MODEL")
        self._path = path
        self._onnx: torch.nn.Module | None = None
        # the module predictions run; None until the first prediction builds and picks it
        self._fast: torch.nn.Module | None = (
            None if self._onnx_wanted or (self._frozen_choice is not False and (self._cpu32 or self._int8_ok))
            else self.model)
        self._lock = threading.Lock()

    @property
    def runtime(self) -> str:
        """How predictions run: 'onnx' (ONNX Runtime), 'torchscript' (a compiled copy) or 'eager'."""
        fast = self.prediction_model()
        return "onnx" if fast is self._onnx else "eager" if fast is self.model else "torchscript"

    @property
    def precision(self) -> str:
        """What predictions compute in: 'float32', 'bfloat16' or 'int8'."""
        fast = self.prediction_model()
        if fast is self._onnx:
            return self._onnx.precision
        return "int8" if fast is self._int8 else self._float_precision

    def prediction_model(self) -> torch.nn.Module:
        """The module predictions run (a compiled copy once chosen, else the eager model)."""
        if self._fast is None:
            with self._lock:
                if self._fast is None:
                    self._fast = self._choose_fast()
        return self._fast

    def _choose_fast(self) -> torch.nn.Module:
        if self._onnx_wanted:
            from .onnx_runtime import onnx_module_for

            self._onnx = onnx_module_for(self._path, self.spec, os.environ.get("FER_ONNX_MODEL") or None)
            return self._onnx
        size = self.spec.input_size
        # a batch of 2 = one face with flip averaging, the app's commonest call
        example = self.inputs([np.zeros((size, size, 3), np.uint8)] * 2).to(self.device)
        self._int8 = int8_for_inference(self.model, example, self.spec.int8) if self._int8_ok else None
        # the int8 copy is taken unmeasured: it was the fastest on every CPU timed, and building and timing the
        # float32 copies for nothing took seconds a model (most of the Compare page's first load)
        if self._int8 is not None:
            return self._int8
        bf16 = self._float_precision == "bfloat16"
        # the frozen copy is float32, so it stands in only for float32 predictions
        frozen = frozen_for_inference(self.model, example) if self._cpu32 else None
        if self._frozen_choice:
            return frozen or self.model
        candidates = {"eager": AutocastBf16(self.model) if bf16 else self.model, "torchscript": frozen}
        choice = fastest_module(candidates, example)
        return self.model if choice == "eager" else candidates[choice]  # fastest_module names only built ones

    def scorer(self) -> torch.nn.Module:
        """The module predictions run, as a plain batch -> logits function without flip averaging (bf16
        autocast included where predictions use it): what forward-only explanations (occlusion) and
        deletion/insertion scores should call, so they measure the model that made the prediction."""
        model = self.prediction_model()
        return AutocastBf16(model) if model is self.model and self._float_precision == "bfloat16" else model

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def inputs(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 faces -> (B, 3, S, S) float32 model input, channels_last like the model."""
        return self._model_input(faces_to_uint8(faces, self.spec))

    def _model_input(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """Resized uint8 faces (faces_to_uint8) -> float32 model input, channels_last like the model."""
        return normalize(x_uint8, self.spec).contiguous(memory_format=torch.channels_last)

    def input_tensor(self, face: np.ndarray) -> torch.Tensor:
        """One RGB uint8 face -> (1, 3, S, S) float32 model input."""
        return self.inputs([face])

    def logits(self, faces: Sequence[np.ndarray], *, batch_size: int = 64) -> torch.Tensor:
        """Raw logits (N, K); with the spec's tta_flip, the mean over the face and its mirror."""
        return self._forward(faces, batch_size)[0]

    @torch.inference_mode()
    def _forward(self, faces: Sequence[np.ndarray], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, K) and which faces are black and white (N,), from one resize of each face."""
        out, gray = [], []
        model = self.prediction_model()
        for i in range(0, len(faces), batch_size):
            u8 = faces_to_uint8(faces[i:i + batch_size], self.spec)
            gray.append(grayscale_mask(u8))
            x = self._model_input(u8)
            bf16 = self._float_precision == "bfloat16" and model is self.model  # compiled copies run as built
            out.append(forward_logits(model, x, tta_flip=self.spec.tta_flip, bf16=bf16))
        if not out:
            return torch.zeros(0, len(self.classes)), torch.zeros(0, dtype=torch.bool)
        return torch.cat(out), torch.cat(gray)

    @property
    def temperatures(self) -> tuple[float, float]:
        """The calibration temperatures (colour faces, black-and-white faces) of what predicts: the int8
        copy's own where it runs and the checkpoint has them (train/quantize.py), else the float32 model's."""
        own = (self.spec.int8 if self.precision == "int8" and self.runtime != "onnx" and self.spec.int8.get("temperature")
               else None)
        t, t_gray = (own["temperature"], own.get("temperature_gray")) if own else (
            self.spec.temperature, self.spec.temperature_gray)
        return float(t), float(t_gray or t)

    def face_temperatures(self, gray: torch.Tensor) -> torch.Tensor:
        """(N, 1) temperature of each face from grayscale_mask's (N,) answer, for probs_from_logits."""
        t, t_gray = self.temperatures
        return torch.where(gray, t_gray, t).float()[:, None]

    def predict(self, faces: Sequence[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
        """Calibrated probabilities (N, K) for RGB uint8 faces of any size."""
        logits, gray = self._forward(faces, batch_size)
        return probs_from_logits(logits, self.face_temperatures(gray))


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, mtime: float, precision: str, frozen: bool | None, runtime: str, onnx_model: str) -> Predictor:
    model, spec = load_checkpoint(path)
    return Predictor(model, spec, os.path.splitext(os.path.basename(path))[0], precision=precision, frozen=frozen,
                     runtime=runtime, path=path)


def load_predictor(name_or_path: str | os.PathLike = DEFAULT_CHECKPOINT, *, precision: str | None = None,
                   frozen: bool | None = True) -> Predictor:
    """Load (once per process, precision and `frozen` choice; see Predictor) a checkpoint by name in
    checkpoints/ or by path.

    By default it predicts as the app does (`frozen=True`): with the int8 copy where the checkpoint is calibrated
    and the CPU has the engine, so the library, the CLI and the app give the same numbers, those of
    checkpoints/results.json (the eager float32 model gave another class for 0.2% of RAF-DB test faces,
    probabilities up to 0.13 apart). The copy is built on the first prediction, about a second, which a folder
    of photos earns back; elsewhere the frozen float32 copy or eager bfloat16, whose
    logits are eager float32's to ~1e-6. `frozen=False` for the eager model alone, `precision="float32"` for
    float32 predictions."""
    path = resolve_checkpoint(name_or_path)
    with _LOAD_LOCK:  # one load per checkpoint when two threads ask at once (the app preloads on a thread)
        return _load_cached(str(path), path.stat().st_mtime, requested_precision(precision), frozen,
                            requested_runtime(), os.environ.get("FER_ONNX_MODEL", ""))

