"""Faithfulness of explanation maps: deletion/insertion AUC, ROAD, model-randomisation sanity check."""
from __future__ import annotations

import copy
import functools
import weakref
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch import nn

from .models import FerNet

if TYPE_CHECKING:
    from .inference import Predictor


def _target_probs(model: nn.Module, xs: torch.Tensor, target: int, batch_size: int = 64) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(xs), batch_size):
            out.append(torch.softmax(model(xs[i:i + batch_size]).float(), 1)[:, target])
    return torch.cat(out).cpu().numpy()


def _blurred(x: torch.Tensor) -> torch.Tensor:
    img = x[0].permute(1, 2, 0).cpu().numpy()
    k = max(3, (x.shape[-1] // 4) | 1)
    return torch.from_numpy(cv2.GaussianBlur(img, (k, k), 0)).permute(2, 0, 1)[None]


def deletion_insertion(
    model: nn.Module, x: torch.Tensor, cam: np.ndarray, target: int, *, steps: int = 16
) -> tuple[float, float]:
    """(deletion AUC, insertion AUC) of the target probability as the most relevant pixels (by `cam`,
    (S, S) at the input size) are removed (replaced by the grey mean) or inserted into a blurred copy.
    Lower deletion and higher insertion mean a more faithful map. One batched forward pass."""
    s = x.shape[-1]
    order = np.argsort(-cam.reshape(-1), kind="stable")
    fractions = np.linspace(0, 1, steps + 1)
    masks = np.zeros((steps + 1, s * s), dtype=np.float32)
    for i, f in enumerate(fractions):
        masks[i, order[: int(round(f * s * s))]] = 1.0
    m = torch.from_numpy(masks).view(steps + 1, 1, s, s)
    grey = torch.zeros_like(x)
    blur = _blurred(x)
    deleted = x * (1 - m) + grey * m
    inserted = blur * (1 - m) + x * m
    p = _target_probs(model, torch.cat([deleted, inserted]), target)
    trap = getattr(np, "trapezoid", None) or np.trapz
    return float(trap(p[: steps + 1], fractions)), float(trap(p[steps + 1:], fractions))


def road_score(model: nn.Module, x: torch.Tensor, cam: np.ndarray, target: int,
               percentiles: tuple[int, ...] = (20, 40, 60, 80)) -> float:
    """ROAD (Rong et al. 2022) via pytorch-grad-cam: mean of (LeRF - MoRF) confidence drops with
    noisy-linear imputation; higher = more faithful."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    with torch.inference_mode(False), torch.no_grad():
        score = ROADCombined(percentiles=list(percentiles))(
            x, cam[None].astype(np.float32), [ClassifierOutputSoftmaxTarget(target)], model
        )
    return float(np.asarray(score).reshape(-1)[0])


_randomised: "weakref.WeakKeyDictionary[nn.Module, dict[int, nn.Module]]" = weakref.WeakKeyDictionary()


def randomised_copy(model: FerNet, seed: int = 0) -> FerNet:
    """A copy with the head and the deepest explanation stage re-initialised (cascading randomisation
    of the top layers, Adebayo et al. 2018). Cached per model and seed."""
    copies = _randomised.setdefault(model, {})
    if seed in copies:
        return copies[seed]
    rnd = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    last = rnd.stage_modules(list(rnd.explain_layers())[-1])
    head = [m for n, m in rnd.named_modules() if n.endswith(("fc", "head", "classifier"))]
    with torch.no_grad():
        for part in [*last, *head]:
            for p in part.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (p.std() if p.numel() > 1 else 0.1))
    copies[seed] = rnd
    return rnd


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.reshape(-1), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.reshape(-1), kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def sanity_similarity(model: FerNet, x: torch.Tensor, cam: np.ndarray, target: int, *, method: str,
                      layer: str | None = None, options: dict | None = None, seed: int = 0,
                      bf16: bool | None = None) -> float:
    """Spearman rank correlation between the map and the same method's map (same layer and options,
    e.g. occlusion's window and stride) on a randomised model: near 1 means the map ignores what the
    model learned (fails the sanity check). `seed` picks the random re-initialisation; one face's value
    depends on it (see bench/explain.py --sanity-seeds).

    `bf16` (None = where the CPU has native bfloat16): forward-only methods (occlusion, hundreds of
    passes) run the randomised copy under bf16 autocast, about half the time. On 20 RAF-DB faces x 3
    seeds (docs/experiments.md, session 12) that moved one face's occlusion value by 0.12 on average
    (0.43 at most) and raised the mean from 0.10 to 0.18 — towards "fails", so never a false pass —
    while the choice of random draw alone moved one face by 0.29 on average."""
    from .device import bf16_supported, forward_logits
    from .explain import explain, get_explainer

    rnd = randomised_copy(model, seed)
    forward = None
    if get_explainer(method).forward_only and (bf16_supported(x.device) if bf16 is None else bf16):
        forward = functools.partial(forward_logits, rnd, tta_flip=False, bf16=True)
    return spearman(cam, explain(rnd, x, target, method, layer=layer, forward=forward, **(options or {})))


def faithfulness_scores(predictor: "Predictor", x: torch.Tensor, cam: np.ndarray, target: int, *, method: str,
                        layer: str | None = None, road: bool = False, sanity: bool = True,
                        options: dict | None = None) -> dict[str, float]:
    """Faithfulness numbers for one map (S, S) at the model's input size, made by `method` with `options`.
    ROAD is opt-in: its noisy linear imputation solves a sparse system per percentile (seconds per map
    on 2 cores)."""
    from .explain import model_lock

    model = predictor.model
    with model_lock(model):  # these passes may run the eager model, which another thread may be hooking
        dele, ins = deletion_insertion(predictor.scorer(), x, cam, target)  # the module that predicts
        out = {"deletion_auc": dele, "insertion_auc": ins}
        if road:
            out["road"] = road_score(model, x, cam, target)
    if sanity:
        out["sanity_similarity"] = sanity_similarity(model, x, cam, target, method=method, layer=layer,
                                                     options=options)
    return out
