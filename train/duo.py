"""Join two trained fernet checkpoints into one `fernet_duo` checkpoint (an explainable ensemble).

  python train/duo.py checkpoints/fernet.safetensors runs/fernet_kd.safetensors --out runs/fernet_duo.safetensors
  python train/promote.py runs/fernet_duo.safetensors --name fernet      # only if better on validation

The duo runs both networks side by side and reads their concatenated last maps with one GAP + linear
head whose weights are [w·W_a, (1 - w)·W_b] (bias w·b_a + (1 - w)·b_b): its logits are exactly the
weighted mean of the two models' logits, and CAM / Grad-CAM explain the pair as one model. The mixing
weight w (--weight, or a grid searched on validation) and whether to average mirror images (--flip)
are chosen on the validation split the two runs share (never a test split); the temperature is then
fitted on the same validation logits. No training happens here.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch


from fer_core.checkpoints import ModelSpec, git_commit, load_checkpoint, save_checkpoint
from fer_core.data import split_seed
from fer_core.metrics import calibrate, classification_report
from fer_core.models import Duo, create_model, stage_stride
from fer_core.preprocess import grayscale_mask
from fer_core.training import predict_logits
from fer_core.evaluation import training_splits

SAME = ("classes", "input_size", "grayscale", "mean", "std", "train_data")  # the widths may differ
SPLIT_ARGS = ("val_fraction", "limit")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="first fernet checkpoint")
    p.add_argument("b", help="second fernet checkpoint (same training data and validation split)")
    p.add_argument("--out", required=True, help="where to write the fernet_duo checkpoint")
    p.add_argument("--weight", type=float, default=None,
                   help="weight of the first model's logits in [0, 1] (default: best of 0.3-0.7 on validation)")
    p.add_argument("--flip", choices=["auto", "on", "off"], default="auto",
                   help="average mirror images (auto: whichever scores higher validation macro-F1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    return p


def check_compatible(sa: ModelSpec, sb: ModelSpec) -> None:
    if sa.arch != "fernet" or sb.arch != "fernet":
        raise SystemExit(f"both checkpoints must be fernet models (got {sa.arch} and {sb.arch})")
    for key in SAME:
        if getattr(sa, key) != getattr(sb, key):
            raise SystemExit(f"the two checkpoints differ in {key}: {getattr(sa, key)!r} vs {getattr(sb, key)!r}")
    for key in SPLIT_ARGS:
        if sa.args.get(key) != sb.args.get(key):
            raise SystemExit(f"the two runs used different validation splits ({key}: "
                             f"{sa.args.get(key)!r} vs {sb.args.get(key)!r})")
    if split_seed(sa.args) != split_seed(sb.args):
        raise SystemExit(f"the two runs used different validation splits (split seed {split_seed(sa.args)} vs "
                         f"{split_seed(sb.args)}; train the second with --split-seed {split_seed(sa.args)})")


def widths(model_a, model_b) -> dict:
    """The fernet_duo model arguments for these two fernets ({"width": 32} for two default ones), read
    from the built networks (their stems' channels, their last stages' strides), so a spec without a
    recorded width needs no default here."""
    wa, wb = model_a.net.conv1.out_channels, model_b.net.conv1.out_channels
    out = {"width": wa} if wa == wb else {"width": wa, "width_b": wb}
    sa, sb = (stage_stride(m, "layer4") for m in (model_a, model_b))
    if (sa, sb) != (2, 2):
        out.update({"last_stride": sa} if sa == sb else {"last_stride": sa, "last_stride_b": sb})
    return out


def join(model_a, model_b, weight: float, *, num_classes: int, **kwargs) -> Duo:
    """A fernet_duo whose logits are weight · model_a's + (1 - weight) · model_b's (eval mode); kwargs are
    fernet_duo's model arguments (`widths(model_a, model_b)`)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    duo = create_model("fernet_duo", num_classes=num_classes, **kwargs)
    for branch, src in ((duo.a, model_a), (duo.b, model_b)):
        state = {k: v for k, v in src.net.state_dict().items() if not k.startswith("fc.")}
        branch.net.load_state_dict(state, strict=True)
    with torch.no_grad():
        duo.fc.weight.copy_(torch.cat([weight * model_a.gap_linear.weight, (1 - weight) * model_b.gap_linear.weight], 1))
        duo.fc.bias.copy_(weight * model_a.gap_linear.bias + (1 - weight) * model_b.gap_linear.bias)
    return duo.eval()


def _report(y: np.ndarray, logits: torch.Tensor) -> dict:
    return classification_report(y, logits.argmax(1).numpy())


def main(args: argparse.Namespace) -> ModelSpec:
    if args.threads:
        torch.set_num_threads(args.threads)
    model_a, sa = load_checkpoint(args.a)
    model_b, sb = load_checkpoint(args.b)
    check_compatible(sa, sb)
    sources: list[str] = []
    x_u8, y, _, val_idx = training_splits(sa, sources)
    xv, yv = x_u8[torch.from_numpy(val_idx)], y[torch.from_numpy(val_idx)].numpy()
    cpu = torch.device("cpu")
    flips = {"auto": (False, True), "on": (True,), "off": (False,)}[args.flip]
    logits = {(name, f): predict_logits(m, xv, spec=s, tta_flip=f, device=cpu)
              for name, m, s in (("a", model_a, sa), ("b", model_b, sb)) for f in flips}
    for (name, f), z in logits.items():
        r = _report(yv, z)
        print(f"{name} ({'with' if f else 'without'} flip): val accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}")
    weights = [args.weight] if args.weight is not None else [0.3, 0.4, 0.5, 0.6, 0.7]
    best = None
    for f in flips:
        for w in weights:
            r = _report(yv, w * logits["a", f] + (1 - w) * logits["b", f])
            print(f"duo w={w:.1f} ({'with' if f else 'without'} flip): val accuracy {r['accuracy']:.4f}, "
                  f"macro-F1 {r['macro_f1']:.4f}")
            if best is None or r["macro_f1"] > best[0]["macro_f1"]:
                best = (r, w, f)
    rep, weight, flip = best
    kwargs = widths(model_a, model_b)
    duo = join(model_a, model_b, weight, num_classes=len(sa.classes), **kwargs)
    z = predict_logits(duo, xv, spec=sa, tta_flip=flip, device=cpu)
    expected = weight * logits["a", flip] + (1 - weight) * logits["b", flip]
    gap = float((z - expected).abs().max())
    if gap > 1e-3:
        raise SystemExit(f"the joined model does not reproduce the mean logits (max difference {gap:.2e})")
    by_source, folders = {}, np.asarray(sources)
    for source in dict.fromkeys(sources):  # each training folder's share of the validation split
        mask = folders == source
        rows = torch.from_numpy(mask)
        r = _report(yv[mask], z[rows])
        by_source[source] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "recall": r["recall"]}
        ra, rb = (_report(yv[mask], logits[name, flip][rows]) for name in ("a", "b"))
        print(f"  {source}: duo accuracy {r['accuracy']:.4f} (a {ra['accuracy']:.4f}, b {rb['accuracy']:.4f}); "
              f"recall {' / '.join(f'{v:.2f}' for v in r['recall'])}")
    cal = calibrate(z.numpy(), yv, grayscale_mask(xv, sa).numpy())
    temp, temp_gray = cal.pop("temperature"), cal.pop("temperature_gray")
    metrics = {
        "val_accuracy": rep["accuracy"], "val_macro_f1": rep["macro_f1"], "val_recall": rep["recall"], **cal,
        "val_by_source": by_source,
        # each member's train.py arguments travel with the duo, so a run kept only in runs/ stays reproducible
        "members": [{"checkpoint": str(p), "val_macro_f1": s.metrics.get("val_macro_f1"), "args": s.args}
                    for p, s in ((args.a, sa), (args.b, sb))],
    }
    spec = ModelSpec(
        arch="fernet_duo", classes=sa.classes, input_size=sa.input_size, grayscale=sa.grayscale,
        mean=sa.mean, std=sa.std, temperature=temp, temperature_gray=temp_gray, tta_flip=flip,
        train_data=sa.train_data,
        args={"duo": [str(args.a), str(args.b)], "weight": weight, "flip": args.flip,
              **{k: sa.args[k] for k in SPLIT_ARGS if k in sa.args}, "seed": split_seed(sa.args),
              "data": sa.args.get("data")},
        git_commit=git_commit(), metrics=metrics, model_kwargs=kwargs,
    )
    save_checkpoint(duo, spec, args.out)
    print(f"kept w={weight:.1f}, {'with' if flip else 'without'} flip: val accuracy {rep['accuracy']:.4f}, "
          f"macro-F1 {rep['macro_f1']:.4f}; temperatures {temp:.3f} / {temp_gray:.3f} (colour / black-and-white; "
          f"val ECE {metrics['val_ece_before']:.4f} -> {metrics['val_ece_after']:.4f}); logits match the weighted "
          f"mean to {gap:.1e}; wrote {args.out}")
    return spec


if __name__ == "__main__":
    main(get_args_parser().parse_args())
