"""Calibrate a checkpoint for int8 CPU predictions and store the activation ranges in its spec.

  python train/quantize.py checkpoints/fernet.safetensors
  python train/quantize.py runs/fernet_v2.safetensors --samples 2048

Calibration reads a seeded sample of the checkpoint's own training split (the folders and the
validation split recorded by train/train.py; never a test split), with mirror images when the
model averages flips. It then reports accuracy and macro-F1 of the float32 and int8 models on the
validation split and how often their predictions agree, and fits each model's temperatures (colour
and black-and-white faces, fer_core.metrics.fit_temperatures) on its validation logits: the int8
copy's travel with the ranges, the float32 model's replace the spec's.
The weights are not changed: the app rebuilds the int8 copy at load (fer_core.quantize).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch


from fer_core.checkpoints import load_checkpoint, resolve_checkpoint, update_spec
from fer_core.data import split_seed
from fer_core.metrics import calibrate, classification_report
from fer_core.preprocess import grayscale_mask, normalize
from fer_core.quantize import calibrate_int8, int8_for_inference
from fer_core.evaluation import training_splits
from fer_core.training import predict_logits


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint written by train/train.py (name in checkpoints/ or path)")
    p.add_argument("--samples", type=int, default=1024, help="training faces to calibrate on")
    p.add_argument("--batch-size", type=int, default=128, help="calibration batch size")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-write", action="store_true", help="report only; leave the checkpoint as it is")
    return p


def validation_key(spec) -> tuple:
    """What decides a run's validation faces: its training folders (with their image counts, in order) and
    train/train.py's split arguments, not how often a folder is repeated per epoch ("raf-db:4" validates on
    the faces "raf-db:2" does). Two runs with equal keys were validated on the same faces."""
    folders = tuple(re.sub(r", x\d+\)$", ")", source) for source in spec.train_data)
    return (folders, spec.args.get("val_fraction", 0.1), split_seed(spec.args), spec.args.get("limit") or 0)


def validation_predictions(*checkpoints: str | Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels and each float32 model's predictions (with its flip averaging) on the original images of their
    shared validation split, decoded once (the checkpoints must have equal validation_keys). What train/train.py
    recorded can come from other copies of those faces (a run trained elsewhere may have read re-encoded copies), so runs are
    compared by these."""
    loaded = [load_checkpoint(c) for c in checkpoints]
    if len({validation_key(spec) for _, spec in loaded}) > 1:
        raise ValueError(f"{', '.join(map(str, checkpoints))} were not validated on the same faces")
    faces: dict[int, torch.Tensor] = {}  # by input size: each model reads the faces decoded as train.py decoded its own
    preds = []
    for model, spec in loaded:
        if spec.input_size not in faces:
            x_u8, y, _, val_idx = training_splits(spec)
            v = torch.from_numpy(val_idx)
            faces[spec.input_size], labels = x_u8[v], y[v].numpy()
        preds.append(predict_logits(model, faces[spec.input_size], spec=spec, tta_flip=spec.tta_flip,
                                    device=torch.device("cpu")).argmax(1).numpy())
    return labels, preds


def group_scores_on_run_split(run: str | Path, *others: str | Path) -> dict[str, dict[str, float]]:
    """Each checkpoint's validation macro-F1 on every training folder of `run` (its validation faces, decoded as
    train.py decoded them) and their mean, float32 with each model's flip averaging: how a run that adds a folder
    (say affectnet-hq) is compared with a committed model that never trained on it, by the mean over folders.
    A folder with FER+ votes is also scored against the FER+ majority among the six (`<folder>-ferplus`, faces whose
    majority is neutral, contempt, unknown or not a face left out), beside the mean, not in it."""
    from fer_core.data import datasets_root, ferplus_majority, ferplus_votes, load_labelled_folder
    from fer_core.metrics import classification_report

    _, run_spec = load_checkpoint(run)
    sources: list[str] = []
    positions: list[int] = []
    x_u8, y, _, val_idx = training_splits(run_spec, sources, positions)
    v = torch.from_numpy(val_idx)
    faces, labels, names = x_u8[v], y[v].numpy(), np.array(sources)
    ferplus = {}  # folder -> (its validation faces with a FER+ majority among the six, that majority)
    for s in dict.fromkeys(sources):
        root = Path(s) if Path(s).is_absolute() else datasets_root() / s
        votes = ferplus_votes(root)
        if votes:
            paths = load_labelled_folder(root).paths
            at = np.flatnonzero(names == s)
            majority = np.array([ferplus_majority(votes[paths[positions[i]].name])
                                 if positions[i] < len(paths) and paths[positions[i]].name in votes else -1
                                 for i in at])
            ferplus[s] = (at[majority >= 0], majority[majority >= 0])
    out = {}
    for c in (run, *others):
        model, spec = load_checkpoint(c)
        if spec.input_size != run_spec.input_size:
            raise ValueError(f"{c} reads {spec.input_size}-px faces, {run} {run_spec.input_size}-px")
        pred = predict_logits(model, faces, spec=spec, tta_flip=spec.tta_flip, device=torch.device("cpu")).argmax(1)
        pred = pred.numpy()
        scores = {Path(s).parent.name: classification_report(labels[names == s], pred[names == s])["macro_f1"]
                  for s in dict.fromkeys(sources)}
        out[str(c)] = {**scores, "mean": float(np.mean(list(scores.values())))}
        for s, (at, majority) in ferplus.items():
            out[str(c)][f"{Path(s).parent.name}-ferplus"] = classification_report(majority, pred[at])["macro_f1"]
    return out


def calibrate_checkpoint(checkpoint: str | Path, *, samples: int = 1024, batch_size: int = 128, seed: int = 0,
                         write: bool = True) -> dict:
    """Measure the int8 calibration of a checkpoint (see the module docstring); store it when `write`."""
    path = resolve_checkpoint(checkpoint)
    model, spec = load_checkpoint(path)
    if not spec.train_data:
        raise SystemExit(f"{path} records no training data; calibrate it with your own script")
    x_u8, y, train_idx, val_idx = training_splits(spec)
    rng = np.random.default_rng(seed)
    pick = torch.from_numpy(np.sort(rng.choice(train_idx, size=min(samples, len(train_idx)), replace=False)))

    def batches():
        for i in range(0, len(pick), batch_size):
            x = normalize(x_u8[pick[i:i + batch_size]], spec)
            yield torch.cat([x, torch.flip(x, dims=[3])]) if spec.tta_flip else x

    calibration = calibrate_int8(model, batches())
    int8 = int8_for_inference(model, normalize(x_u8[pick[:2]], spec), calibration)
    if int8 is None:
        raise SystemExit("the int8 model could not be built on this machine (see the warning above)")
    xv, yv = x_u8[torch.from_numpy(val_idx)], y[torch.from_numpy(val_idx)].numpy()
    preds, cals, gray = {}, {}, grayscale_mask(xv, spec).numpy()
    for name, m in (("float32", model), ("int8", int8)):
        z = predict_logits(m, xv, spec=spec, tta_flip=spec.tta_flip, device=torch.device("cpu"))
        preds[name] = z.argmax(1).numpy()
        # temperatures for colour and black-and-white faces, each copy its own: the int8 one divides the logits the
        # app computes; the float32 ones (refitted, so a checkpoint from before two temperatures gets both) serve
        # CPUs without the int8 engine
        cals[name] = calibrate(z.numpy(), yv, gray)
        rep = classification_report(yv, preds[name])
        calibration[f"val_accuracy_{name}"] = rep["accuracy"]
        calibration[f"val_macro_f1_{name}"] = rep["macro_f1"]
    calibration.update(cals["int8"])
    f32 = cals["float32"]
    calibration["val_agreement"] = float((preds["float32"] == preds["int8"]).mean())
    calibration["samples"] = len(pick)
    print(f"{path.name}: {len(calibration['activations'])} activation ranges from {len(pick)} training faces; "
          f"validation ({len(yv)}): accuracy float32 {calibration['val_accuracy_float32']:.4f} / int8 "
          f"{calibration['val_accuracy_int8']:.4f}, macro-F1 {calibration['val_macro_f1_float32']:.4f} / "
          f"{calibration['val_macro_f1_int8']:.4f}, same prediction {calibration['val_agreement']:.4f}; "
          + "; ".join(f"{name} temperatures (colour / black-and-white faces) {c['temperature']:.3f} / "
                      f"{c['temperature_gray']:.3f}, val ECE {c['val_ece_before']:.4f} -> {c['val_ece_after']:.4f}"
                      for name, c in cals.items()))
    if write:
        update_spec(path, int8=calibration, temperature=f32["temperature"], temperature_gray=f32["temperature_gray"],
                    metrics={**spec.metrics, "val_ece_before": f32["val_ece_before"],
                             "val_ece_after": f32["val_ece_after"]})
        print(f"wrote the calibration into {path}")
    return calibration


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    return calibrate_checkpoint(args.checkpoint, samples=args.samples, batch_size=args.batch_size, seed=args.seed,
                                write=not args.no_write)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
