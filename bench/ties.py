"""How much the faithfulness numbers move when tied pixels are handled correctly, per method, on RAF-DB test faces.

  python bench/ties.py [--n 100] [--road-n 30] [--methods gradcam,cam,occlusion]

For each method and face: deletion/insertion AUC with tied pixels taken in the image's raster order (a stable sort,
the rule before 2026-12-07) against a seeded random order (fer_core.faithfulness.relevance_order) and against the
mean of five random orders; ROAD with the map as it is (pytorch-grad-cam's percentile threshold, which puts all tied
pixels on one side) against the tie-broken map (tie_broken); the sanity check's rank correlation with ranks from a
stable sort (ties in pixel order) against average ranks for ties (scipy), with a map that collapses to a constant
counted as changed (sanity_verdict). It also says what share of each method's maps is tied at its most common value.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


from fer_core.data import datasets_root, load_labelled_folder
from fer_core.explainers import explain
from fer_core.faithfulness import (
    deletion_insertion, is_constant, randomised_copy, road_score, sanity_verdict, spearman,
)
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
from fer_core.io import read_image


def raster_deletion_insertion(model, x, cam, target, steps: int = 16) -> tuple[float, float]:
    """The rule before: tied pixels removed in raster order (np.argsort(kind="stable") of -cam)."""
    import fer_core.faithfulness as f

    keep = f.relevance_order
    f.relevance_order = lambda c, seed=0: np.argsort(-np.asarray(c).reshape(-1), kind="stable")
    try:
        return deletion_insertion(model, x, cam, target, steps=steps)
    finally:
        f.relevance_order = keep


def raw_road(model, x, cam, target) -> float:
    """ROAD on the map as it is, as pytorch-grad-cam thresholds it (the rule before)."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    np.random.seed(0)
    with torch.inference_mode(False), torch.no_grad():
        score = ROADCombined(percentiles=[20, 40, 60, 80])(
            x, cam[None].astype(np.float32), [ClassifierOutputSoftmaxTarget(target)], model)
    return float(np.asarray(score).reshape(-1)[0])


def stable_rank_spearman(a, b) -> float:
    """The rule before: ranks from a stable argsort (tied pixels ranked in pixel order), 0 where undefined."""
    ra = np.argsort(np.argsort(a.reshape(-1), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.reshape(-1), kind="stable"), kind="stable").astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--n", type=int, default=100, help="faces (a fixed seeded sample of RAF-DB test)")
    ap.add_argument("--road-n", type=int, default=30, help="of them, faces for ROAD (seconds a map)")
    ap.add_argument("--methods", default="gradcam,cam,gradcam++,hirescam,eigencam,occlusion")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pred = load_predictor(args.model, precision="auto", frozen=None)  # as the app loads it
    model, scorer = pred.model, pred.scorer()
    folder = load_labelled_folder(datasets_root() / "raf-db" / "test")
    idx = np.sort(np.random.default_rng(0).choice(len(folder), size=min(args.n, len(folder)), replace=False))
    faces = [read_image(folder.paths[i]) for i in idx]
    xs = [pred.input_tensor(f) for f in faces]
    targets = [int(p.argmax()) for p in pred.predict(faces)]
    rnd = randomised_copy(model, 0)
    print(f"model {args.model}; {len(faces)} RAF-DB test faces (ROAD on {min(args.road_n, len(faces))}); "
          f"{args.threads} threads")
    print("| method | tied share (mean) | deletion raster → random (5-order mean) | insertion raster → random (5-order "
          "mean) | largest change of one face (del / ins) | ROAD as is → tie-broken | sanity stable ranks → average "
          "ranks | randomised maps collapsed |")
    print("|---|---|---|---|---|---|---|---|")
    for m in [m for m in args.methods.split(",") if m]:
        tied, d0, d1, d5, i0, i1, i5, r0, r1, s0, s1, collapsed = ([] for _ in range(12))
        for k, (x, t) in enumerate(zip(xs, targets)):
            cam = explain(model, x, t, m, forward=scorer)
            _, counts = np.unique(cam, return_counts=True)
            tied.append(counts.max() / cam.size)
            a, b = raster_deletion_insertion(scorer, x, cam, t)
            c, d = deletion_insertion(scorer, x, cam, t)
            e, f = deletion_insertion(scorer, x, cam, t, tie_orders=5)
            d0.append(a), i0.append(b), d1.append(c), i1.append(d), d5.append(e), i5.append(f)
            other = explain(rnd, x, t, m)
            s0.append(stable_rank_spearman(cam, other))
            v, gone = sanity_verdict(spearman(cam, other), is_constant(other))
            s1.append(v)
            collapsed.append(gone)
            if k < args.road_n:
                r0.append(raw_road(model, x, cam, t))
                r1.append(road_score(model, x, cam, t))
        dd, di = np.abs(np.array(d1) - d0).max(), np.abs(np.array(i1) - i0).max()
        road = f"{np.mean(r0):.3f} → {np.mean(r1):.3f}" if r0 else "—"
        print(f"| {m} | {np.mean(tied):.0%} | {np.mean(d0):.3f} → {np.mean(d1):.3f} ({np.mean(d5):.3f}) | "
              f"{np.mean(i0):.3f} → {np.mean(i1):.3f} ({np.mean(i5):.3f}) | {dd:.3f} / {di:.3f} | {road} | "
              f"{np.mean(s0):.2f} → {np.mean(s1):.2f} | {np.mean(collapsed):.0%} |", flush=True)


if __name__ == "__main__":
    main()
