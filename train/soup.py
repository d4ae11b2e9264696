"""Average the weights of several fine-tunes of one network (a "model soup", Wortsman et al. 2022).

  python train/soup.py runs/gpu29/fernet_*.safetensors checkpoints/fernet.safetensors --out runs/soup.safetensors
  python train/soup.py RUNS... --method uniform --out runs/soup_all.safetensors

Fine-tunes that start from the same weights (here: one parent trained from scratch, fine-tuned with other seeds)
stay in one basin, so the mean of their weights is a network too, often better than each of them. Every
ingredient is scored on the original images of its validation split (float32, with its flip averaging; all must
share the split, the architecture and the input), then the mean of all of them (printed either way), and
- uniform: that mean is the soup;
- greedy: the ingredients sorted by their own validation macro-F1, each added to the mean only if the mean's
  validation macro-F1 does not fall (the greedy soup picks on validation, so compare it with a margin).
Every floating tensor is averaged, batch-norm statistics included. The soup's temperatures (colour and
black-and-white faces) are fitted on its validation logits like train/train.py's, its metrics are its validation
scores here, and its spec records the ingredients (`args["soup"]`, `args["soup_seeds"]`) and otherwise is the
best kept ingredient's (arguments, curves, lineage).
Never a test split. Promote it like a run: python train/promote.py runs/soup.safetensors --name fernet --margin M
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


from fer_core.checkpoints import load_checkpoint, save_checkpoint
from fer_core.metrics import calibrate, classification_report
from fer_core.preprocess import grayscale_mask
from fer_core.training import predict_logits

from fer_core.evaluation import training_splits
from quantize import validation_key  # noqa: E402  (train/ is on sys.path when run as a script)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="checkpoints of fine-tunes of one network (names in checkpoints/ or paths)")
    p.add_argument("--out", required=True, help="where the soup is written")
    p.add_argument("--method", default="greedy", choices=["greedy", "uniform"])
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored weight dtype")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p


def mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating tensors (float32); other tensors (counters) from the first state."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([s[key].float() for s in states]).mean(0)
        else:
            out[key] = first.clone()
    return out


def check_same_network(specs: list, names: list[str]) -> None:
    """Soups need one architecture, one input and one validation split."""
    def shape(spec):
        return (spec.arch, spec.model_kwargs, spec.input_size, spec.grayscale, tuple(spec.mean), tuple(spec.std),
                tuple(spec.classes), spec.tta_flip, validation_key(spec))

    for spec, name in zip(specs[1:], names[1:]):
        if shape(spec) != shape(specs[0]):
            raise SystemExit(f"{name} is not the same network, input or validation split as {names[0]}: "
                             "a soup averages fine-tunes of one network")


def soup(paths: list[str], method: str = "greedy", log=print):
    """(model, spec, report) of the soup of `paths` by `method`; report holds each ingredient's and the soup's
    validation macro-F1 and the ingredients kept."""
    loaded = [load_checkpoint(p) for p in paths]
    names = [Path(p).name for p in paths]
    specs = [spec for _, spec in loaded]
    check_same_network(specs, names)
    x_u8, y, _, val_idx = training_splits(specs[0])
    v = torch.from_numpy(val_idx)
    xv, yv = x_u8[v], y[v].numpy()
    model, spec0 = loaded[0][0], specs[0]

    def logits_of(state: dict[str, torch.Tensor]) -> np.ndarray:
        model.load_state_dict(state)
        return predict_logits(model, xv, spec=spec0, tta_flip=spec0.tta_flip, device=torch.device("cpu")).numpy()

    def f1(z: np.ndarray) -> float:
        return classification_report(yv, z.argmax(1))["macro_f1"]

    # copies: a float32 state_dict's tensors are the model's own, which load_state_dict below overwrites
    states = [{k: t.detach().float().clone() for k, t in m.state_dict().items()} for m, _ in loaded]
    zs = [logits_of(s) for s in states]
    own = [f1(z) for z in zs]
    for name, score in zip(names, own):
        log(f"{name}: val macro-F1 {score:.4f}")
    order = sorted(range(len(paths)), key=lambda i: -own[i])
    every = mean_state(states)
    z = logits_of(every)
    uniform = f1(z)
    log(f"uniform soup of all {len(paths)}: {uniform:.4f}")
    if method == "uniform":
        kept, best, final = order, uniform, every
    else:  # the weights kept are the ones scored: no second mean, no second pass over the validation faces
        kept, best, z, final = [order[0]], own[order[0]], zs[order[0]], states[order[0]]
        for i in order[1:]:
            trial_state = mean_state([states[j] for j in kept + [i]])
            trial = logits_of(trial_state)
            score = f1(trial)
            took = score >= best
            log(f"+ {names[i]}: {score:.4f} ({'kept' if took else 'left out'})")
            if took:
                kept, best, z, final = kept + [i], score, trial, trial_state
    model.load_state_dict(final)
    rep = classification_report(yv, z.argmax(1))
    cal = calibrate(z, yv, grayscale_mask(xv, spec0).numpy())
    temp, temp_gray = cal.pop("temperature"), cal.pop("temperature_gray")
    base = specs[kept[0]]  # the best ingredient kept: its arguments, curves and lineage stand for the soup's
    metrics = {**base.metrics, "val_accuracy": rep["accuracy"], "val_macro_f1": rep["macro_f1"],
               "val_recall": rep["recall"], **cal}
    metrics.pop("best_epoch", None)
    args = {**base.args, "soup": [names[j] for j in kept], "soup_method": method,
            "soup_seeds": [specs[j].args.get("seed") for j in kept]}
    spec = base.with_updates(temperature=temp, temperature_gray=temp_gray, metrics=metrics, args=args, int8={})
    log(f"{method} soup of {len(kept)} of {len(paths)}: val macro-F1 {rep['macro_f1']:.4f} "
        f"(best ingredient {max(own):.4f}), accuracy {rep['accuracy']:.4f}; temperature {temp:.3f} / {temp_gray:.3f}")
    return model, spec, {"own": dict(zip(names, own)), "uniform": uniform, "kept": [names[j] for j in kept],
                         "val_macro_f1": best}


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model, spec, report = soup(args.runs, args.method)
    out = save_checkpoint(model, spec, args.out, dtype=getattr(torch, args.dtype))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
