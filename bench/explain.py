"""Faithfulness and latency of every explanation method on RAF-DB test faces with the default model.

  python bench/explain.py [--n 200] [--road-n 30] [--methods gradcam,cam,...] [--layers]
Prints mean deletion AUC (lower = better), insertion AUC (higher), ROAD (higher), sanity similarity
(lower = the map depends on the learned weights) and mean latency per face; then the time of
the app's starting maps (DEFAULT_METHODS; occlusion's 8x8 window, stride 4) together for one face. As in the app, the model is
loaded the way the app loads it (the fastest of eager / frozen / int8 predicts), forward-only methods
(occlusion) and deletion/insertion run that prediction module, and the last line says how closely its
occlusion maps follow the eager float32 model's (Spearman rank correlation). The sanity similarity is
the mean over faces and the randomised model's seeds (--sanity-seeds, default 0,1,2; the table after it
shows how much one face's value depends on the draw); occlusion's randomised copy runs under bf16
autocast where the CPU has native bf16, as in the app.
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch


from fer_core.data import datasets_root, load_labelled_folder
from fer_core.explainers import DEFAULT_METHODS, EXPLAINERS, explain, supported_explainers
from fer_core.faithfulness import deletion_insertion, road_score, sanity_similarity, spearman
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
from fer_core.io import read_image


def pairs_table(model, xs, targets, scorer, methods: list[str]) -> None:
    """Spearman rank correlation between every two methods' maps of each face: mean and largest over the faces."""
    maps = {m: [explain(model, x, t, m, forward=scorer) for x, t in zip(xs, targets)] for m in methods}
    print("| method A | method B | Spearman mean | Spearman largest |")
    print("|---|---|---|---|")
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            rho = [spearman(p.ravel(), q.ravel()) for p, q in zip(maps[a], maps[b])]
            print(f"| {EXPLAINERS[a].label} | {EXPLAINERS[b].label} | {np.mean(rho):.3f} | {np.max(rho):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--n", type=int, default=200, help="faces (a fixed seeded sample of RAF-DB test)")
    ap.add_argument("--road-n", type=int, default=30, help="faces for ROAD (slow imputation)")
    ap.add_argument("--methods", default="", help="comma-separated (default: all the model supports)")
    ap.add_argument("--layers", action="store_true", help="compare Grad-CAM across the model's layers")
    ap.add_argument("--sanity-seeds", default="0,1,2",
                    help="comma-separated seeds of the randomised model: the table's sanity column is the mean over "
                         "faces and seeds (one draw can flip a 4x4 map's ranks), and with several seeds a second "
                         "table shows how much one face's similarity moves between them")
    ap.add_argument("--pairs", action="store_true",
                    help="only the rank correlation (Spearman) between every two methods' maps of the same face "
                         "(--methods, default the app's starting methods; mean and largest over the faces): which "
                         "maps repeat each other")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pred = load_predictor(args.model, precision="auto", frozen=None)  # as the app loads it
    model = pred.model
    folder = load_labelled_folder(datasets_root() / "raf-db" / "test")
    idx = np.sort(np.random.default_rng(0).choice(len(folder), size=min(args.n, len(folder)), replace=False))
    faces = [read_image(folder.paths[i]) for i in idx]
    xs = [pred.input_tensor(f) for f in faces]
    targets = [int(p.argmax()) for p in pred.predict(faces)]
    scorer = pred.scorer()
    methods = [m for m in args.methods.split(",") if m] or supported_explainers(model)
    jobs = [(m, None) for m in methods] + [("random (pixel noise)", None), ("random (4x4, upsampled)", None)]
    if args.layers:
        jobs = [("gradcam", layer) for layer in model.explain_layers()]
    print(f"model {args.model} (predicts in {pred.precision}); {len(faces)} RAF-DB test faces; {args.threads} threads; "
          "target = prediction")
    if args.pairs:
        pairs_table(model, xs, targets, scorer, [m for m in args.methods.split(",") if m] or list(DEFAULT_METHODS))
        return
    seeds = [int(s) for s in args.sanity_seeds.split(",") if s]
    by_seed = {}  # label -> (faces, seeds) similarities
    print("| method | layer | deletion AUC ↓ | insertion AUC ↑ | ROAD ↑ | sanity similarity ↓ | ms/face |")
    print("|---|---|---|---|---|---|---|")
    for m, layer in jobs:
        dels, ins, roads, sans, times = [], [], [], [], []
        rng = np.random.default_rng(0)
        for k, (x, t) in enumerate(zip(xs, targets)):
            t0 = time.perf_counter()
            if m.startswith("random (pixel"):  # controls: what a map with no information scores
                cam = rng.random((64, 64)).astype(np.float32)
            elif m.startswith("random (4x4"):
                cam = cv2.resize(rng.random((4, 4)).astype(np.float32), (64, 64), interpolation=cv2.INTER_LINEAR)
            else:
                cam = explain(model, x, t, m, layer=layer, forward=scorer)
            times.append(time.perf_counter() - t0)
            d, i = deletion_insertion(scorer, x, cam, t)
            dels.append(d)
            ins.append(i)
            if k < args.road_n:
                roads.append(road_score(model, x, cam, t))
                if m in EXPLAINERS:
                    sans.append([sanity_similarity(model, x, cam, t, method=m, layer=layer, seed=s) for s in seeds])
        known = m in EXPLAINERS
        lay = layer or (model.default_layer if known and EXPLAINERS[m].uses_layer else "—")
        label = EXPLAINERS[m].label if known else m
        road = f"{np.mean(roads):.3f}" if roads else "—"  # --road-n 0 skips ROAD and the sanity check
        sanity = f"{np.mean(sans):.2f}" if sans else "—"  # over faces and seeds
        if sans and len(seeds) > 1:
            by_seed[f"{label} | {lay}"] = np.array(sans)
        print(f"| {label} | {lay} | {np.mean(dels):.3f} | {np.mean(ins):.3f} | {road} | {sanity} | "
              f"{1000 * np.mean(times):.0f} |", flush=True)
    if by_seed:
        print(f"\nSanity similarity by seed of the randomised model ({len(next(iter(by_seed.values())))} faces):")
        print("| method | layer | " + " | ".join(f"seed {s} mean" for s in seeds) + " | largest change of one face |")
        print("|---|---|" + "---|" * (len(seeds) + 1))
        for key, a in by_seed.items():
            print(f"| {key} | " + " | ".join(f"{v:.2f}" for v in a.mean(0)) + f" | {np.ptp(a, axis=1).max():.2f} |")
    combo = []
    for x, t in zip(xs[:50], targets[:50]):
        t0 = time.perf_counter()
        for m in DEFAULT_METHODS:
            if m in supported_explainers(model):
                explain(model, x, t, m, forward=scorer)
        combo.append(time.perf_counter() - t0)
    names = " + ".join(EXPLAINERS[m].label for m in DEFAULT_METHODS)
    print(f"\nthe starting maps ({names}; occlusion 8x8, stride 4) for one face: {1000 * np.mean(combo):.0f} ms mean, "
          f"{1000 * np.median(combo):.0f} ms median")
    if scorer is not model:
        rho = [spearman(explain(model, x, t, "occlusion"), explain(model, x, t, "occlusion", forward=scorer))
               for x, t in zip(xs[:20], targets[:20])]
        print(f"occlusion maps of the {pred.precision} prediction module vs eager float32, {len(rho)} faces: "
              f"Spearman {np.mean(rho):.3f} mean, {np.min(rho):.3f} min")


if __name__ == "__main__":
    main()
