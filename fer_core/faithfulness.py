"""Faithfulness of explanation maps: deletion/insertion AUC, ROAD, model-randomisation sanity check."""
from __future__ import annotations

import copy
import functools
import weakref

import cv2
import numpy as np
import torch
from torch import nn

from .models import FerNet


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


def relevance_order(cam: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices of `cam`, most relevant first, with tied pixels in a seeded random order (not the
    image's raster order: after Grad-CAM's ReLU most of a map is exactly zero)."""
    flat = np.asarray(cam, dtype=np.float64).reshape(-1)
    tie_break = np.random.default_rng(seed).random(flat.size)
    return np.lexsort((tie_break, -flat))  # the last key sorts first


def tie_broken(cam: np.ndarray, seed: int = 0) -> np.ndarray:
    """`cam` as distinct values in [0, 1] with its order kept and ties broken at random (seeded): pixel i gets its
    rank from the least relevant. A percentile of it splits the pixels at exactly that share, which a percentile of
    a map that is mostly one value cannot."""
    order = relevance_order(cam, seed)[::-1]
    ranks = np.empty(order.size, dtype=np.float64)
    ranks[order] = np.arange(order.size)
    return (ranks / max(order.size - 1, 1)).reshape(np.shape(cam)).astype(np.float32)


def deletion_insertion(
    model: nn.Module, x: torch.Tensor, cam: np.ndarray, target: int, *, steps: int = 16, seed: int = 0,
    tie_orders: int = 1,
) -> tuple[float, float]:
    """(deletion AUC, insertion AUC) of the target probability as the most relevant pixels (by `cam`,
    (S, S) at the input size) are removed (replaced by the grey mean) or inserted into a blurred copy.
    Lower deletion and higher insertion mean a more faithful map. Tied pixels go in a seeded random order
    (relevance_order); with `tie_orders` > 1 the AUCs are the mean over that many orders (seeds `seed`,
    `seed` + 1, ...). One batched forward pass per order."""
    if tie_orders > 1:
        runs = [deletion_insertion(model, x, cam, target, steps=steps, seed=seed + k) for k in range(tie_orders)]
        return float(np.mean([r[0] for r in runs])), float(np.mean([r[1] for r in runs]))
    s = x.shape[-1]
    order = relevance_order(cam, seed)
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
               percentiles: tuple[int, ...] = (20, 40, 60, 80), seed: int = 0) -> float:
    """ROAD (Rong et al. 2022) via pytorch-grad-cam: mean of (LeRF - MoRF) confidence drops with
    noisy-linear imputation; higher = more faithful. The map goes in tie-broken (tie_broken): pytorch-grad-cam
    thresholds it at a percentile, which on a map that is mostly zeros would impute all of it or none of it
    instead of the percentile's share. The imputation's noise is seeded too."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    state = np.random.get_state()  # the imputer draws its noise from numpy's global generator
    np.random.seed(seed)
    try:
        with torch.inference_mode(False), torch.no_grad():
            score = ROADCombined(percentiles=list(percentiles))(
                x, tie_broken(cam, seed)[None], [ClassifierOutputSoftmaxTarget(target)], model
            )
    finally:
        np.random.set_state(state)
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


def is_constant(a: np.ndarray) -> bool:
    """A map with one value everywhere (after the ReLU, often all zeros): it ranks no pixel above another."""
    a = np.asarray(a)
    return a.size == 0 or bool(np.all(a == a.reshape(-1)[0]))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps, tied pixels at their average rank (scipy.stats.spearmanr); NaN
    where either map is constant (a rank correlation is undefined there)."""
    from scipy.stats import spearmanr

    if is_constant(a) or is_constant(b):
        return float("nan")
    return float(spearmanr(np.asarray(a, dtype=np.float64).reshape(-1),
                           np.asarray(b, dtype=np.float64).reshape(-1)).statistic)


def map_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (scikit-image) of two maps, each scaled to [0, 1] by its own range (a constant map
    is all zeros): a second view of "are the two maps alike", by local structure rather than global rank."""
    from skimage.metrics import structural_similarity

    def unit(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, dtype=np.float64)
        span = m.max() - m.min() if m.size else 0.0
        return (m - m.min()) / span if span > 0 else np.zeros_like(m)

    return float(structural_similarity(unit(a), unit(b), data_range=1.0))


def sanity_verdict(similarity: float, randomised_constant: bool) -> tuple[float, bool]:
    """The sanity check's number and whether the map collapsed: a map that becomes constant on the randomised
    model has changed completely (it no longer ranks any pixel), so it counts as similarity 0, never as a match."""
    if randomised_constant or np.isnan(similarity):
        return 0.0, True
    return similarity, False


def sanity_similarity(model: FerNet, x: torch.Tensor, cam: np.ndarray, target: int, *, method: str,
                      layer: str | None = None, options: dict | None = None, seed: int = 0,
                      bf16: bool | None = None, detail: bool = False) -> float | dict:
    """Spearman rank correlation (ties at their average rank) between the map and the same method's map (same
    layer and options, e.g. occlusion's window and stride) on a randomised model: near 1 means the map ignores what
    the model learned (fails the sanity check). A randomised map that is constant counts as 0 (the map changed;
    sanity_verdict). `seed` picks the random re-initialisation; one face's value depends on it (see
    bench/explain.py --sanity-seeds). With `detail`, a dict: `sanity_similarity`, `sanity_ssim` (map_ssim of
    the two maps) and `sanity_collapsed` (the randomised map, or the map itself, was constant).

    `bf16` (None = where the CPU has native bfloat16): forward-only methods (occlusion, hundreds of
    passes) run the randomised copy under bf16 autocast, about half the time. On 20 RAF-DB faces x 3
    seeds (docs/decisions.md) that moved one face's occlusion value by 0.12 on average
    (0.43 at most) and raised the mean from 0.10 to 0.18 — towards "fails", so never a false pass —
    while the choice of random draw alone moved one face by 0.29 on average."""
    from .device import bf16_supported, forward_logits
    from .explainers import explain, get_explainer

    rnd = randomised_copy(model, seed)
    forward = None
    if get_explainer(method).forward_only and (bf16_supported(x.device) if bf16 is None else bf16):
        forward = functools.partial(forward_logits, rnd, tta_flip=False, bf16=True)
    other = explain(rnd, x, target, method, layer=layer, forward=forward, **(options or {}))
    similarity, collapsed = sanity_verdict(spearman(cam, other), is_constant(other))
    if not detail:
        return similarity
    return {"sanity_similarity": similarity, "sanity_ssim": map_ssim(cam, other), "sanity_collapsed": collapsed}


def faithfulness_scores(model: FerNet, x: torch.Tensor, cam: np.ndarray, target: int, *, method: str,
                        scorer: nn.Module | None = None, layer: str | None = None, road: bool = False,
                        sanity: bool = True, options: dict | None = None) -> dict[str, float]:
    """Faithfulness numbers for one map (S, S) of `model` at its input size, made by `method` with `options`.
    `scorer`: the module that predicts (an int8 or frozen copy of `model`; default `model`), which deletion and
    insertion run. ROAD is opt-in: its noisy linear imputation solves a sparse system per percentile (seconds per
    map on 2 cores)."""
    from .explainers import model_lock

    with model_lock(model):  # these passes may run the eager model, which another thread may be hooking
        dele, ins = deletion_insertion(scorer or model, x, cam, target)
        out = {"deletion_auc": dele, "insertion_auc": ins}
        if road:
            out["road"] = road_score(model, x, cam, target)
    if sanity:
        out.update(sanity_similarity(model, x, cam, target, method=method, layer=layer, options=options,
                                     detail=True))
    return out
