"""Evaluate checkpoints on labelled folders and write checkpoints/results.json.

  python train/evaluate.py                      # every checkpoint on every set in DEFAULT_SETS
  python train/evaluate.py --models fernet --sample 300

The sets: RAF-DB test and FER2013 test (original labels), FER2013 test against the FER+ majority among the six
(`fer2013-ferplus`: faces whose majority is neutral, contempt, unknown or not a face left out), and the in-the-wild
affectnet-hq val split read whole (`affectnet-hq`) and as the app reads a photo: the face found by the detector and
cropped (`affectnet-hq-app`), each with its accuracy per source (AffectNet / FFHQ); and two with neutral faces:
the FER+ seven-class test (`ferplus7`: FER2013 test with its neutral faces, under the FER+ majority of the six and
neutral) and the colour neutral faces of `neutral-pool/val` through the detector (`neutral-pool`, per source).

The six-class sets are scored over the six emotions, as the paper scores them (for a model with neutral: the argmax
over the six emotion columns), and `neutral_share` says how many of their faces the model calls neutral (full
argmax). The seven-class sets are scored over every class of the model; a six-class model cannot say neutral, so
each neutral face counts against it.
Every number in the results file comes from this script; nothing is typed by hand.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch


from fer_core.checkpoints import CHECKPOINT_DIR, list_checkpoints, resolve_checkpoint
from fer_core.device import cpu_summary
from fer_core.data import (
    LabelledFolder, datasets_root, ferplus_majority, ferplus_votes, load_labelled_folder, load_uint8,
)
from fer_core.runtime import load_predictor, probs_from_logits
from fer_core.metrics import classification_report, ece_noise_floor, expected_calibration_error, reliability
from fer_core.labels import EMOTIONS
from fer_core.models import count_parameters
from fer_core.preprocess import grayscale_mask
from fer_core.evaluation import app_logits, latency_ms, sample_indices


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=None, help="checkpoint names or paths (default: all)")
    p.add_argument("--data", nargs="*", default=list(DEFAULT_SETS),
                   help=f"test sets: {', '.join(DEFAULT_SETS)}, other dataset names under ../shared/datasets (their "
                        "test/ split), folders, or NAME=FOLDER to file a folder's results under NAME")
    p.add_argument("--sample", type=int, default=0, help="evaluate a fixed, seeded sample of N images per set")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--latency-repeats", type=int, default=200,
                   help="timed batch-1 predictions per model for latency_ms (the median is reported)")
    p.add_argument("--output", default=str(CHECKPOINT_DIR / "results.json"), help="results file (merged)")
    p.add_argument("--no-write", action="store_true", help="print only")
    return p


SAMPLE_N = 300
DEFAULT_SETS = ("raf-db", "fer2013", "fer2013-ferplus", "affectnet-hq", "affectnet-hq-app", "ferplus7", "neutral-pool")
SEVEN_CLASS_SETS = ("ferplus7", "neutral-pool")  # the sets with neutral faces: scored over every class
WILD_SAMPLE_N = 300  # the fixed affectnet-hq val sample that tests/test_default_checkpoint.py re-scores


def test_set(item: str) -> tuple[LabelledFolder, str]:
    """A named evaluation set: its folder (labels included) and how its images are read ("whole" or "detector")."""
    item, _, folder_path = item.partition("=")
    if folder_path or Path(item).exists():
        return load_labelled_folder(Path(folder_path or item)), "whole"
    if item in ("affectnet-hq", "affectnet-hq-app"):
        return load_labelled_folder(datasets_root() / "affectnet-hq" / "val"), \
            "detector" if item.endswith("-app") else "whole"
    if item == "ferplus7":
        return load_labelled_folder(datasets_root() / "fer2013", datasets_root() / "fer2013" / "ferplus7_test_labels.csv"), \
            "whole"
    if item == "neutral-pool":
        return load_labelled_folder(datasets_root() / "neutral-pool" / "val"), "detector"
    if item == "fer2013-ferplus":
        folder = load_labelled_folder(datasets_root() / "fer2013" / "test")
        votes = ferplus_votes(folder.root)
        keep = [(p, m) for p in folder.paths if p.name in votes for m in [ferplus_majority(votes[p.name])] if m >= 0]
        return LabelledFolder(folder.root, tuple(p for p, _ in keep), tuple(m for _, m in keep)), "whole"
    return load_labelled_folder(datasets_root() / item / "test"), "whole"


def source_of(path: Path) -> str:
    """The in-the-wild pools' sources, from the file name: FFHQ portraits (`ffhq_…`), the webcam collection of
    neutral-pool (`webcam_…`) or AffectNet (`image…`)."""
    return "ffhq" if path.name.startswith("ffhq") else "webcam" if path.name.startswith("webcam") else "affectnet"


def evaluate_on(predictor, x_u8: torch.Tensor, y: torch.Tensor, sources: np.ndarray | None = None,
                *, six: bool = False) -> dict:
    """The app's predictions on uint8 faces scored: classification_report, ECE before and after calibration, the
    reliability diagram; with `sources` (a name per face), the report's accuracy, macro-F1 and recall per source.
    With `six` (a six-class set), predictions are the argmax over the six emotions, as the paper scores them, and
    `neutral_share` is the share of faces the model's full argmax calls neutral (0 for a six-class model)."""
    spec = predictor.spec
    logits = app_logits(predictor, x_u8)
    yt = y.numpy()
    n_emotions = 6
    pred = (logits[:, :n_emotions] if six else logits).argmax(1).numpy()
    rep = classification_report(yt, pred, n_emotions if six else max(len(spec.classes), int(yt.max()) + 1))
    if six:
        rep["neutral_share"] = float((logits.argmax(1).numpy() >= n_emotions).mean())
    if sources is not None:
        rep["by_source"] = {
            s: {"n": int((sources == s).sum()), **{k: v for k, v in classification_report(
                yt[sources == s], pred[sources == s], len(rep["recall"])).items()
                if k in ("accuracy", "macro_f1", "recall")},
                **({"neutral_share": float((logits.argmax(1).numpy()[sources == s] >= n_emotions).mean())} if six else {})}
            for s in sorted(set(sources.tolist()))}
    rep["ece_before"] = expected_calibration_error(probs_from_logits(logits), yt)
    calibrated = probs_from_logits(logits, predictor.face_temperatures(grayscale_mask(x_u8, spec)))
    rep["ece_after"] = expected_calibration_error(calibrated, yt)
    rep["ece_floor"] = ece_noise_floor(calibrated)  # what sampling alone gives a perfectly calibrated model here
    rep["reliability"] = reliability(calibrated, yt)  # the model card's reliability diagram (same bins as the ECE)
    return rep


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    names = args.models or list_checkpoints()
    folders = {item.partition("=")[0]: test_set(item) for item in args.data}
    decoded: dict[int, dict] = {}

    def splits_at(size: int) -> dict:
        """Each test split decoded at a model's input size (once per size), sampled as --sample says."""
        if size not in decoded:
            decoded[size] = {}
            for item, (folder, crop) in folders.items():
                x, y = load_uint8(folder, size, crop=crop)
                idx = sample_indices(len(y), args.sample)
                src = np.array([source_of(folder.paths[i]) for i in idx])
                decoded[size][item] = (x[torch.from_numpy(idx)], y[torch.from_numpy(idx)], src)
        return decoded[size]
    out = {}
    for name in names:
        path = resolve_checkpoint(name)
        pred = load_predictor(path, frozen=None)  # as the app runs it
        sets = splits_at(pred.spec.input_size)
        entry = {
            "arch": pred.spec.arch, "classes": list(pred.spec.classes), "parameters": count_parameters(pred.model),
            "size_mb": round(path.stat().st_size / 1e6, 2), "tta_flip": pred.spec.tta_flip,
            **dict(zip(("temperature", "temperature_gray"), pred.temperatures)),
            "train_data": list(pred.spec.train_data),
            "val_accuracy": pred.spec.metrics.get("val_accuracy"), "val_macro_f1": pred.spec.metrics.get("val_macro_f1"),
            "latency_ms": latency_ms(pred, args.latency_repeats), "precision": pred.precision, "runtime": pred.runtime,
            "cpu": cpu_summary(), "sample": args.sample or None,
            "command": "python train/evaluate.py " + " ".join(sys.argv[1:]),
        }
        for set_name, n in (("raf-db", SAMPLE_N), ("affectnet-hq-app", WILD_SAMPLE_N), ("ferplus7", SAMPLE_N)):
            if set_name in sets and not args.sample:
                # a fixed seeded sample that tests/test_default_checkpoint.py re-scores through the app's path
                x, y, _ = sets[set_name]
                idx = torch.from_numpy(sample_indices(len(y), n))
                r = evaluate_on(pred, x[idx], y[idx], six=set_name not in SEVEN_CLASS_SETS)
                entry[f"{set_name}_sample"] = {"n": n, "seed": 0, "accuracy": r["accuracy"]}
        for set_name, (x, y, src) in sets.items():
            entry[set_name] = evaluate_on(pred, x, y, src if set_name.startswith(("affectnet-hq", "neutral-pool")) else None,
                                          six=set_name not in SEVEN_CLASS_SETS)
            r = entry[set_name]
            print(f"{path.stem:18s} {set_name:8s} acc {r['accuracy']:.4f} F1 {r['macro_f1']:.4f} "
                  f"ECE {r['ece_before']:.3f}->{r['ece_after']:.3f} n={r['n']}")
        print(f"{path.stem:18s} latency {entry['latency_ms']:.2f} ms/face (batch 1, {args.threads} threads)")
        out[path.stem] = entry
    if not args.no_write:
        op = Path(args.output)
        results = json.loads(op.read_text()) if op.is_file() else {}
        ckpts = results.setdefault("checkpoints", {})
        for name, entry in out.items():  # merged per set: a run on some sets keeps the others' results
            ckpts[name] = {**ckpts.get(name, {}), **entry}
        if op.resolve().parent == CHECKPOINT_DIR.resolve():  # the app's file: only what checkpoints/ holds
            for gone in sorted(set(results["checkpoints"]) - set(list_checkpoints())):
                del results["checkpoints"][gone]
                print(f"dropped the results of {gone}: no longer in {CHECKPOINT_DIR.name}/")
        results["generated_by"] = "python train/evaluate.py " + " ".join(sys.argv[1:])
        results["machine"] = f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip()
        results["classes"] = list(EMOTIONS)  # the six-class sets' columns; each entry's confusion sizes its own
        op.write_text(json.dumps(results, indent=1))
        print(f"wrote {op}")
    return out


if __name__ == "__main__":
    main(get_args_parser().parse_args())
