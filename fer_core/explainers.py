"""EXPLAINERS registry. Every method maps (model, x (1, 3, S, S), target class) to a float32 (S, S)
map in [0, 1] at the model's input size; `fer_core.pipeline` resizes it to the face crop.

Hook-based methods register hooks on the shared model, so every call holds that model's lock:
several threads (Streamlit sessions) may explain with one loaded model at once.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from .models import FerNet

# what the app explains with until a person picks others: three maps that differ (CAM, the fourth candidate, is
# Grad-CAM's map for GAP + linear models: SAME_AS_CAM), the seed's Grad-CAM and the two most faithful by deletion and
# insertion (docs/explanations.md)
DEFAULT_METHODS = ("gradcam", "integrated_gradients", "occlusion")
OCCLUSION_WINDOW, OCCLUSION_STRIDE = 8, 4  # occlusion's window and stride (px at the model's input)

@dataclass(frozen=True)
class Explainer:
    name: str
    label: str
    family: str  # "grad-cam" (pytorch-grad-cam), "captum" or "ours"
    fn: Callable[..., np.ndarray]
    uses_layer: bool = True
    needs_gap_linear: bool = False
    fails_sanity: bool = False  # known to fail the model-randomisation sanity check
    forward_only: bool = False  # needs only forward passes, so it may run a compiled copy of the model
    note: str = ""


EXPLAINERS: dict[str, Explainer] = {}


def register_explainer(name: str, **info) -> Callable:
    def deco(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in EXPLAINERS:
            raise ValueError(f"explainer {name!r} is already registered")
        EXPLAINERS[name] = Explainer(name=name, fn=fn, **info)
        return fn

    return deco


def list_explainers() -> list[str]:
    return list(EXPLAINERS)


def get_explainer(name: str) -> Explainer:
    if name not in EXPLAINERS:
        raise ValueError(f"unknown explanation method {name!r}; choose from {', '.join(EXPLAINERS)}")
    return EXPLAINERS[name]


def unsupported_reason(model: FerNet, name: str) -> str | None:
    """Why `name` cannot explain `model`, or None when it can."""
    e = get_explainer(name)
    if e.needs_gap_linear and model.gap_linear is None:
        return (
            f"CAM needs a global-average-pool + single linear head; {model.arch} ends in a multi-layer "
            "head, so CAM is undefined for it (use Grad-CAM, which generalises CAM)"
        )
    return None


def supported_explainers(model: FerNet) -> list[str]:
    return [n for n in EXPLAINERS if unsupported_reason(model, n) is None]


# For a model whose head is a global average pool + one linear layer, at the layer that feeds the pool, the gradient
# of a class score with respect to each activation is that class's head weight divided by the map's area, the same
# everywhere; so Grad-CAM's channel weights, HiResCAM's gradient × activation and XGrad-CAM's weights all reduce to
# CAM's (Zhou et al.), and after ReLU and scaling the four maps are one (tests/test_explain.py checks it numerically).
SAME_AS_CAM = ("cam", "gradcam", "hirescam", "xgradcam")


def repeated_maps(model: FerNet, methods: list[str] | tuple[str, ...], layer: str | None = None) -> dict[str, str]:
    """{method: the earlier method of `methods` whose map it repeats exactly for this model and layer}: what a page
    says in a line instead of drawing the same map twice. Empty where the model's head is not GAP + one linear
    layer, or where the layer-based methods look at another layer than the pooled one."""
    if model.gap_linear is None:
        return {}
    pooled = model.pooled_layer is not None and (layer or model.default_layer) == model.pooled_layer
    same = [m for m in methods if m in SAME_AS_CAM and (m == "cam" or pooled)]
    return {m: same[0] for m in same[1:]}


_locks: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    with _locks_guard:
        lock = _locks.get(model)
        if lock is None:
            lock = _locks[model] = threading.RLock()
        return lock


def normalize_map(a: np.ndarray) -> np.ndarray:
    """Shift to 0 and scale to max 1; an all-constant map becomes zeros."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float32))
    a = a - a.min()
    m = a.max()
    return (a / m).astype(np.float32) if m > 0 else np.zeros_like(a, dtype=np.float32)


def explain(
    model: FerNet, x: torch.Tensor, target: int, method: str, *, layer: str | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None, **options
) -> np.ndarray:
    """Map for `target` on input `x` (1, 3, S, S) -> float32 (S, S) in [0, 1].

    `forward`: a faster stand-in for `model`'s forward pass with the same logits up to rounding — the
    compiled copy a Predictor predicts with (`Predictor.scorer()`, int8 where calibrated). Only
    forward-only methods (occlusion) use it; the others need the eager model's hooks and gradients."""
    reason = unsupported_reason(model, method)
    if reason:
        raise ValueError(reason)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"explain takes one input (1, 3, S, S), got {tuple(x.shape)}")
    e = get_explainer(method)
    if e.forward_only and forward is not None:
        # the lock still: `forward` may be the eager model itself, whose passes another thread's hooks would record
        with model_lock(model), torch.inference_mode():
            return normalize_map(e.fn(forward, x.detach().float(), int(target), layer=layer, **options))
    with model_lock(model), torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().float().contiguous(memory_format=torch.channels_last)
        out = e.fn(model, x, int(target), layer=layer, **options)
    return normalize_map(out)


# ---------------------------------------------------------------- pytorch-grad-cam family
def _gradcam_family(cls_name: str, **cam_kwargs) -> Callable[..., np.ndarray]:
    def run(model: FerNet, x: torch.Tensor, target: int, *, layer: str | None = None, **_) -> np.ndarray:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = getattr(pytorch_grad_cam, cls_name)
        with cls(model=model, target_layers=[model.explain_layer(layer)]) as cam:
            for k, v in cam_kwargs.items():
                setattr(cam, k, v)
            out = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        model.zero_grad(set_to_none=True)
        return out[0]

    return run


for _name, _cls, _label, _kw, _note in [
    ("gradcam", "GradCAM", "Grad-CAM", {}, "gradient-weighted activations (Selvaraju et al. 2017)"),
    ("gradcam++", "GradCAMPlusPlus", "Grad-CAM++", {}, "higher-order gradient weights"),
    ("hirescam", "HiResCAM", "HiResCAM", {}, "element-wise gradient × activation; faithful to the head"),
    ("xgradcam", "XGradCAM", "XGrad-CAM", {}, "axiom-based gradient weights"),
    ("layercam", "LayerCAM", "LayerCAM", {}, "positive gradients per location; good at shallow layers"),
    ("scorecam", "ScoreCAM", "Score-CAM", {"batch_size": 64}, "gradient-free: masks the input by each channel"),
    ("eigencam", "EigenCAM", "Eigen-CAM", {}, "first principal component of the activations; class-agnostic, "
     "and FAILS the model-randomisation sanity check: its map stays similar after the last stage and head are "
     "re-initialised (rank correlation ~0.45 with ties ranked fairly, where Grad-CAM's falls to ~0.05; "
     "docs/explanations.md, bench/ties.py)"),
    ("ablationcam", "AblationCAM", "Ablation-CAM", {"batch_size": 64}, "drop in score when each channel is zeroed"),
]:
    register_explainer(_name, label=_label, family="grad-cam", note=_note,
                       fails_sanity=_name == "eigencam")(_gradcam_family(_cls, **_kw))


# ---------------------------------------------------------------- CAM (ours)
def cam_from_features(feats: torch.Tensor, weight: torch.Tensor, size: int) -> np.ndarray:
    """CAM (Zhou et al. 2016): ReLU(sum_c w_c * A_c) for one sample, min-max scaled, then bilinearly
    resized to `size` (the same order of operations as pytorch-grad-cam, so the two compare exactly).
    feats: (C, h, w); weight: (C,)."""
    cam = torch.einsum("c,chw->hw", weight.float(), feats.float()).clamp(min=0).detach().cpu().numpy()
    cam = cam - cam.min()
    cam = cam / (cam.max() + 1e-7)
    return cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


@register_explainer(
    "cam", label="CAM", family="ours", uses_layer=False, needs_gap_linear=True,
    note="class activation mapping: the linear head's weights over the last feature map (exact, no gradients)",
)
def _cam(model: FerNet, x: torch.Tensor, target: int, **_) -> np.ndarray:
    with torch.no_grad():
        feats = model.forward_features(x)[0]
    return cam_from_features(feats, model.gap_linear.weight[target], x.shape[-1])


# ---------------------------------------------------------------- Captum
def _channel_map(attr: torch.Tensor, *, positive: bool) -> np.ndarray:
    a = attr.detach()[0].float()
    a = a.sum(0) if positive else a.abs().amax(0)
    return (a.clamp(min=0) if positive else a).cpu().numpy()


@register_explainer(
    "occlusion", label="Occlusion", family="captum", uses_layer=False, forward_only=True,
    note="drop in the class score when a grey window covers each spot (window/stride options)",
)
def _occlusion(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: int, *,
               window: int = OCCLUSION_WINDOW, stride: int = OCCLUSION_STRIDE, **_) -> np.ndarray:
    from captum.attr import Occlusion

    with torch.no_grad():
        attr = Occlusion(model).attribute(
            x, target=target, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
            baselines=0.0, perturbations_per_eval=128,
        )
    return _channel_map(attr, positive=True)


@register_explainer(
    "integrated_gradients", label="Integrated Gradients", family="captum", uses_layer=False,
    note="path integral of gradients from a grey image (Sundararajan et al. 2017)",
)
def _ig(model: FerNet, x: torch.Tensor, target: int, *, steps: int = 32, **_) -> np.ndarray:
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=steps, internal_batch_size=steps)
    model.zero_grad(set_to_none=True)
    return _channel_map(attr, positive=True)


@register_explainer(
    "saliency", label="Saliency", family="captum", uses_layer=False,
    note="absolute input gradient (Simonyan et al. 2014); noisy",
)
def _saliency(model: FerNet, x: torch.Tensor, target: int, **_) -> np.ndarray:
    from captum.attr import Saliency

    attr = Saliency(model).attribute(x, target=target, abs=True)
    model.zero_grad(set_to_none=True)
    return _channel_map(attr, positive=False)


@register_explainer(
    "smoothgrad", label="SmoothGrad", family="captum", uses_layer=False,
    note="saliency averaged over noisy copies of the input (NoiseTunnel)",
)
def _smoothgrad(model: FerNet, x: torch.Tensor, target: int, *, samples: int = 16, noise: float = 0.15, **_) -> np.ndarray:
    from captum.attr import NoiseTunnel, Saliency

    attr = NoiseTunnel(Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=samples, stdevs=noise, target=target, abs=True,
    )
    model.zero_grad(set_to_none=True)
    return _channel_map(attr, positive=False)


@register_explainer(
    "guided_gradcam", label="Guided Grad-CAM", family="captum", fails_sanity=True,
    note="Grad-CAM × guided backprop; FAILS the model-randomisation sanity check (Adebayo et al. 2018): "
         "it looks sharp even for a random model, so do not read it as evidence",
)
def _guided_gradcam(model: FerNet, x: torch.Tensor, target: int, *, layer: str | None = None, **_) -> np.ndarray:
    from captum.attr import GuidedGradCam

    attr = GuidedGradCam(model, model.explain_layer(layer)).attribute(x, target=target)
    model.zero_grad(set_to_none=True)
    return _channel_map(attr, positive=False)
