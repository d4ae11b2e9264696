"""fer_core: facial-emotion recognition with explanations.

    from fer_core import analyze, load_predictor
    results = analyze("photo.jpg", methods=["gradcam", "cam"])

Importing the package is cheap: torch, OpenCV and the explainers load on first use.
"""
from __future__ import annotations

from importlib import import_module

from .labels import CLASSES_7, EMOTIONS

__version__ = "0.3.0"

_LAZY = {
    "analyze": "pipeline", "explain_face": "pipeline", "FaceResult": "pipeline", "load_predictor": "runtime",
    "Predictor": "runtime",
    "detect_faces": "faces", "FaceBox": "faces", "read_image": "io", "create_model": "models",
    "list_models": "models", "load_checkpoint": "checkpoints", "save_checkpoint": "checkpoints",
    "ModelSpec": "checkpoints", "explain": "explainers", "EXPLAINERS": "explainers", "analyze_video": "video",
    "UnreadableImage": "errors", "NoFaceFound": "errors", "ImageTooLarge": "errors",
    "CheckpointError": "errors", "UnreadableVideo": "errors",
}
__all__ = ["EMOTIONS", "CLASSES_7", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fer_core' has no attribute {name!r}")
