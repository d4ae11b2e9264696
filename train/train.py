"""Train one model of the zoo on one or more labelled folders.

  python train/train.py --arch fernet --data raf-db:2 fer2013 --epochs 30 --out runs/fernet.safetensors
  python train/train.py ... --device cuda                                   # on a GPU
  torchrun --nproc_per_node=N train/train.py ...                            # N processes, DistributedDataParallel

The recipes behind every committed checkpoint are in docs/training.md; each checkpoint also carries its own
arguments (python -m fer_core models). Under torchrun, --batch-size is per process, each process trains its share of
every epoch (gloo on the CPU, nccl on GPUs), and rank 0 alone writes the checkpoint; the spec records the world size.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch


from fer_core.checkpoints import ModelSpec, git_commit
from fer_core.data import (
    FERPLUS_MODES, NAMED_SETS, blended_targets, datasets_root, ferplus_filter, ferplus_targets, load_labelled_folder,
    load_split_folder, named_set, original_labels, oversample_rare, source_of_name, split_seed,
)
from fer_core.labels import CLASSES_7, EMOTIONS
from fer_core.models import count_parameters, create_model, list_models, model_options
from fer_core.preprocess import AugmentOptions
from fer_core.device import bf16_supported, pick_device
from fer_core.training import Ensemble, Resized, TrainConfig, fit, init_distributed


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet18", choices=list_models(), help="architecture from the registry")
    p.add_argument("--data", nargs="+", default=["raf-db"],
                   help="training folders: a dataset name under ../shared/datasets (raf-db, fer2013, affectnet-hq, "
                        f"neutral-pool), a named set ({', '.join(NAMED_SETS)}: every voted FER2013 face under its FER+ "
                        "majority of the six and neutral) or a path to a labelled folder; NAME:K repeats that set K "
                        "times per epoch. A set with neutral faces (label 6) makes a seven-class model")
    p.add_argument("--detector-crop", nargs="*", default=[],
                   help="training folders (as named in --data, without :K) whose images are found and cropped by the "
                        "app's detector, as a face in a photo is (loosely framed in-the-wild faces); their "
                        "validation faces too")
    p.add_argument("--ferplus", default="off", choices=FERPLUS_MODES,
                   help="FER2013 training faces by their FER+ votes: drop = leave out faces whose FER+ majority is "
                        "neutral, contempt, unknown or not a face; agree = keep only faces whose FER+ majority is "
                        "their label; soft = learn each face's FER+ votes among the six (renormalised, the loss weighted "
                        "by the share of votes on the six; faces with none left out) instead of its label "
                        "(validation faces and labels unchanged)")
    p.add_argument("--ferplus-original", type=float, default=0.0,
                   help="ferplus7: each face learns (1 - W) of its FER+ majority and W of its FER2013 label (the "
                        "original label, which the FER2013 benchmark scores); 0 = the majority alone")
    p.add_argument("--select-by", default="mean", choices=["mean", "pooled"],
                   help="the validation score that picks the best epoch: mean = the mean of each training folder's "
                        "macro-F1, pooled = macro-F1 over all validation faces together")
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors); best-so-far is saved here")
    p.add_argument("--epochs", type=int, default=30, help="maximum number of epochs")
    p.add_argument("--batch-size", type=int, default=128, help="batch size")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"], help="optimizer")
    p.add_argument("--schedule", default="onecycle", choices=["onecycle", "cosine", "none"], help="LR schedule")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (not on BN/bias)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    p.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    p.add_argument("--class-weight-power", type=float, default=1.0,
                   help="with --class-weights: weight = (1/frequency)**power (0.5 = square root, gentler)")
    p.add_argument("--oversample", type=float, default=0.0,
                   help="class-balanced sampling within each training folder: class c is repeated "
                        "(n_largest / n_c) ** POWER times (0 = off, 0.5 = square root, 1 = balanced)")
    p.add_argument("--oversample-folders", nargs="*", default=None,
                   help="with --oversample: only these training folders (as named in --data), each stratified by "
                        "(source, class), the source read from the file name (ffhq_..., image..., webcam_...): "
                        "the pooled neutral faces, where one source holds most of a class")
    p.add_argument("--dropout", type=float, default=None, help="dropout of the model (default: the model's own)")
    p.add_argument("--width", type=int, default=None,
                   help="channels of fernet's first stage (the model's own: 32; the stages double from it)")
    p.add_argument("--last-stride", type=int, default=None, choices=[1, 2],
                   help="fernet: stride of the last stage (the model's own: 2, a 4×4 last map at 64 px; "
                        "1 keeps it 8×8)")
    p.add_argument("--drop-path", type=float, default=None,
                   help="fernet: stochastic depth, the largest share of faces whose residual branch a block "
                        "skips while training (rising linearly to it over the blocks; the model's own: 0)")
    p.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0 = off)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="stratified validation share of train")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, init and augmentation")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the train/validation split only (default: --init's split when fine-tuning, else --seed); "
                        "runs that share it share "
                        "a validation split, so they can be compared, souped or joined by train/duo.py")
    p.add_argument("--input-size", type=int, default=64, help="model input size in pixels")
    p.add_argument("--grayscale", action="store_true", help="train and infer on grayscale input")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay of weights, e.g. 0.999 (0 = off)")
    p.add_argument("--tta-flip", action="store_true", help="evaluate with horizontal-flip averaging")
    p.add_argument("--bf16", default="auto", choices=["auto", "on", "off"],
                   help="bfloat16 autocast: auto = on for CUDA and CPUs with native bf16 only")
    p.add_argument("--save-dtype", default="float32", choices=["float32", "float16"],
                   help="dtype of the saved weights (float16 halves the file)")
    p.add_argument("--no-resume", action="store_true", help="ignore a saved training state")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--augment-on", default="auto", choices=["auto", "cpu", "device"],
                   help="where batches are cut and augmented: auto = on the training device when it is a GPU "
                        "(the training images are copied there once), else the CPU")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--teacher", nargs="+", default=None,
                   help="checkpoints whose mean logits the model also learns from (knowledge distillation)")
    p.add_argument("--teacher-int8", action="store_true",
                   help="on a CPU, run each teacher as its int8 copy where it has a calibration (the app's "
                        "prediction copy): about 40%% less teacher time than bfloat16 (docs/decisions.md)")
    p.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the distillation term (0-1)")
    p.add_argument("--distill-temperature", type=float, default=2.0, help="softmax temperature of distillation")
    p.add_argument("--mixup", type=float, default=0.0, help="mixup Beta alpha, e.g. 0.2 (0 = off)")
    p.add_argument("--cutmix", type=float, default=0.0, help="CutMix Beta alpha, e.g. 1.0 (0 = off)")
    p.add_argument("--mix-prob", type=float, default=1.0,
                   help="share of batches mixed when --mixup/--cutmix are on (both on: half each)")
    p.add_argument("--sam", type=float, default=0.0,
                   help="sharpness-aware minimisation radius rho, e.g. 0.05 (0 = off; each step costs two)")
    p.add_argument("--compile", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile the training forward (reduce-overhead = CUDA graphs, for a GPU)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    for name, default, hlp in [
        ("flip", True, "horizontal flip"), ("crop", True, "scale/shift jitter like a detector box"),
    ]:
        p.add_argument(f"--no-{name}", dest=name, action="store_false", default=default, help=f"disable {hlp}")
    p.add_argument("--rotation", type=float, default=10.0, help="max rotation in degrees (0 = off)")
    p.add_argument("--color-jitter", type=float, default=0.3, help="colour jitter strength (0 = off)")
    p.add_argument("--perspective", type=float, default=0.0, help="perspective distortion scale (0 = off)")
    p.add_argument("--erasing", type=float, default=0.25, help="random erasing probability (0 = off)")
    p.add_argument("--gray-aug", type=float, default=0.1, help="random grayscale probability (0 = off)")
    p.add_argument("--blur", type=float, default=0.1, help="Gaussian blur probability (0 = off)")
    p.add_argument("--jpeg", type=float, default=0.05, help="JPEG re-compression probability (0 = off)")
    p.add_argument("--lowres", type=float, default=0.0,
                   help="probability of a down-to-16-40-px-and-back-up view (small faces in photos; 0 = off)")
    p.add_argument("--no-augment", action="store_true", help="disable all augmentation")
    p.add_argument("--app-framed", type=float, default=0.0,
                   help="share of the training draws that see the face as the app crops it from a photo: set in "
                        "surroundings, found by the detector and cropped (fer_core.framing.app_framed; made once "
                        "and cached; the validation faces keep their own crops; 0 = off)")
    return p


def resolve_data(item: str) -> tuple[Path, int, Path | None]:
    """(folder, repeats per epoch, labels CSV or None) of a --data item."""
    name, _, rep = item.partition(":")
    named = named_set(name)
    if named is not None:
        return named[0], int(rep or 1), named[1]
    root = Path(name)
    if not root.exists():
        root = datasets_root() / name / "train"
    return root, int(rep or 1), None


def widen_head(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load a six-class model's `state` into `model` with more outputs: every tensor of the same shape is copied;
    a head's weight and bias with more rows keep their first rows (the six emotions, unchanged) and the new rows
    start at zero weight and the mean bias (the new class starts as likely as an average emotion, regardless of
    the face, and learns from there). Returns the names of the widened tensors."""
    own = model.state_dict()
    widened = []
    for name, value in state.items():
        target = own[name]
        if target.shape == value.shape:
            own[name] = value
        elif target.dim() == value.dim() and target.shape[1:] == value.shape[1:] and target.shape[0] > value.shape[0]:
            new = torch.zeros_like(target)
            new[:value.shape[0]] = value
            if value.dim() == 1:
                new[value.shape[0]:] = value.float().mean()
            own[name] = new
            widened.append(name)
        else:
            raise SystemExit(f"--init: {name} is {tuple(value.shape)}, the model needs {tuple(target.shape)}")
    model.load_state_dict(own)
    return widened


def with_app_framed(x_u8: torch.Tensor, y: torch.Tensor, train_idx: np.ndarray, share: float, seed: int,
                    targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor | None]:
    """The training faces' app-framed copies appended to `x_u8` / `y` (and `targets`, where given), and `train_idx`
    with `share` of its entries (drawn once, seeded) pointing at the copy of their face instead: an epoch keeps its
    length, a face repeated per epoch (raf-db:2) may be seen both ways, and no validation face is copied."""
    from fer_core.framing import app_framed

    faces = np.unique(train_idx)
    copies, found = app_framed(x_u8, faces, seed=seed)
    print(f"app-framed copies of {len(faces)} training faces: the detector found {found} "
          f"({100 * found / max(len(faces), 1):.1f}%; the rest keep their crop); {share:.0%} of the draws use them")
    where = np.full(len(x_u8), -1)
    where[faces] = len(x_u8) + np.arange(len(faces))
    swap = np.random.default_rng(seed).random(len(train_idx)) < share
    train_idx = np.where(swap, where[train_idx], train_idx)
    if targets is not None:
        targets = torch.cat([targets, targets[faces]])
    return torch.cat([x_u8, copies]), torch.cat([y, y[faces]]), train_idx, targets


def load_teacher(paths: list[str], student: ModelSpec, *, int8: bool = False) -> Ensemble:
    """The teachers as one ensemble; each must read the student's input (colour, normalisation); a teacher of
    another input size gets the student's batch resized to its own (`Resized`). With `int8`, each runs as its int8
    TorchScript copy where its checkpoint has a calibration (CPU only)."""
    from fer_core.checkpoints import load_checkpoint
    from fer_core.quantize import int8_for_inference

    def reads(s: ModelSpec) -> tuple:
        return s.grayscale, tuple(s.mean), tuple(s.std), tuple(s.classes)

    models = []
    for path in paths:
        model, spec = load_checkpoint(path)
        if reads(spec) != reads(student):
            raise SystemExit(f"--teacher {path} reads (grayscale, mean, std, classes) {reads(spec)}; "
                             f"the student reads {reads(student)}")
        how = ""
        if int8:
            example = torch.zeros(2, 3, spec.input_size, spec.input_size)
            quantized = int8_for_inference(model.float().eval(), example, spec.int8)
            if quantized is None:
                how = ", int8 unavailable (no calibration or engine)"
            else:
                model, how = quantized, ", int8"
        if spec.input_size != student.input_size:
            model, how = Resized(model, spec.input_size), how + f", fed at {spec.input_size} px"
        models.append(model)
        print(f"teacher {path}: {spec.arch}, val macro-F1 {spec.metrics.get('val_macro_f1')}{how}")
    return Ensemble(models)


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    rank, world = init_distributed(device)
    args.world_size = world  # recorded in the checkpoint's spec with the other arguments
    if rank:  # rank 0 alone reports
        sys.stdout = open(os.devnull, "w")
    bf16 = {"on": True, "off": False}.get(args.bf16, bf16_supported(device))
    if args.init and args.split_seed is None:
        # a fine-tune validates on its parent's split: another split would score it on faces the parent trained on
        from fer_core.checkpoints import read_spec

        args.split_seed = split_seed(read_spec(args.init).args)
        print(f"--split-seed {args.split_seed}: the validation split of --init {args.init}")
    xs, ys, tr_parts, va_parts, offset, sources, target_parts = [], [], [], [], 0, [], []
    groups: dict[str, np.ndarray] = {}
    n_val = 0
    for item in args.data:
        root, rep, labels_csv = resolve_data(item)
        name = item.partition(":")[0]
        crop = "detector" if name in (args.detector_crop or []) else "whole"
        x, y, tr, va = load_split_folder(root, args.input_size, val_fraction=args.val_fraction,
                                         seed=split_seed(vars(args)), limit=args.limit, crop=crop,
                                         labels_csv=labels_csv)
        if labels_csv is None and (root / ".." / "ferplus_votes.csv").is_file():
            before = len(tr)
            tr = ferplus_filter(root, tr, args.ferplus, limit=args.limit)
            if len(tr) < before:
                print(f"FER+ {args.ferplus}: {before - len(tr)} of {before} training faces of {root} left out")
        n_train = len(tr)
        if args.oversample_folders is None:
            tr = oversample_rare(y, tr, args.oversample, args.seed)
        elif name in args.oversample_folders:
            folder = load_labelled_folder(root, labels_csv)
            names = [source_of_name(p.name) for p in folder.paths][:len(y)]
            tr = oversample_rare(y, tr, args.oversample, args.seed, sources=np.array(names))
        xs.append(x)
        ys.append(y)
        # what this folder's faces learn, once the number of classes is known: FER+ votes, a blend of the FER+
        # majority and the original label, or (None) the labels themselves
        if labels_csv is None and args.ferplus == "soft":
            target_parts.append(("votes", root, y))
        elif labels_csv is not None and args.ferplus_original > 0:
            target_parts.append(("blend", original_labels(load_labelled_folder(root, labels_csv)), y))
        else:
            target_parts.append(("labels", None, y))
        tr_parts.append(np.tile(tr + offset, rep))
        va_parts.append(va + offset)
        groups[Path(name).name if Path(name).exists() else name] = n_val + np.arange(len(va))
        n_val += len(va)
        offset += len(y)
        try:  # recorded relative to the datasets root, so checkpoints carry no machine paths
            shown = root.resolve().relative_to(datasets_root().resolve())
        except ValueError:
            shown = root
        if labels_csv is not None:
            shown = Path(shown) / labels_csv.name
        sources.append(f"{shown} ({len(y)} images{', detector crop' if crop == 'detector' else ''}, x{rep})")
        print(f"data {root}{f' ({labels_csv.name})' if labels_csv else ''}: {n_train} train / {len(va)} val, "
              f"classes {np.bincount(y.numpy(), minlength=6).tolist()}; "
              f"per epoch {rep} x {np.bincount(y.numpy()[tr], minlength=6).tolist()}")
    x_u8, y = torch.cat(xs), torch.cat(ys)
    classes = CLASSES_7 if bool((y == len(EMOTIONS)).any()) else EMOTIONS
    targets = None  # hard labels unless some folder learns soft targets: the criterion's usual path
    if any(kind != "labels" for kind, _, _ in target_parts):
        parts = []
        for kind, extra, yy in target_parts:
            if kind == "votes":
                t = ferplus_targets(extra, yy, limit=args.limit)
                t = torch.cat([t, torch.zeros(len(t), len(classes) - t.shape[1])], 1)
            elif kind == "blend":
                t = blended_targets(yy, extra, args.ferplus_original, len(classes))
            else:
                t = torch.nn.functional.one_hot(yy.long(), len(classes)).float()
            parts.append(t)
        targets = torch.cat(parts)
    train_idx, val_idx = np.concatenate(tr_parts), np.concatenate(va_parts)
    if args.app_framed > 0:
        x_u8, y, train_idx, targets = with_app_framed(x_u8, y, train_idx, args.app_framed, args.seed, targets)
    kwargs = {k: v for k, v in (("dropout", args.dropout), ("width", args.width),
                                ("last_stride", args.last_stride), ("drop_path", args.drop_path)) if v is not None}
    unknown = sorted(set(kwargs) - model_options(args.arch))
    if unknown:
        raise SystemExit(f"--arch {args.arch} does not take {', '.join('--' + k for k in unknown)}")
    model = create_model(args.arch, num_classes=len(classes), **kwargs)
    lineage: tuple[dict, ...] = ()  # the runs this one fine-tunes, oldest first (ModelSpec.lineage)
    if args.init:
        from fer_core.checkpoints import load_checkpoint

        init_model, init_spec = load_checkpoint(args.init)
        if init_spec.arch != args.arch:
            raise SystemExit(f"--init {args.init} is a {init_spec.arch}, not a {args.arch}")
        widened = widen_head(model, init_model.state_dict())
        if widened:
            print(f"--init {args.init}: {len(init_spec.classes)} classes -> {len(classes)} "
                  f"({', '.join(classes[len(init_spec.classes):])} added; {', '.join(widened)} widened)")
        lineage = init_spec.runs()
    print(f"{args.arch}: {count_parameters(model) / 1e6:.2f}M parameters on {device}")
    spec = ModelSpec(
        arch=args.arch, classes=classes, input_size=args.input_size, grayscale=args.grayscale,
        train_data=tuple(sources), args=vars(args), git_commit=git_commit(), model_kwargs=kwargs,
        tta_flip=args.tta_flip, metrics={"parameters": count_parameters(model)}, lineage=lineage,
    )
    teacher = load_teacher(args.teacher, spec, int8=args.teacher_int8 and device.type == "cpu") if args.teacher else None
    augment = None if args.no_augment else AugmentOptions(
        flip=args.flip, rotation=args.rotation, crop=args.crop, color_jitter=args.color_jitter,
        perspective=args.perspective, erasing=args.erasing, grayscale=args.gray_aug, blur=args.blur, jpeg=args.jpeg,
        lowres=args.lowres,
    )
    config = TrainConfig.from_args(args, bf16=bf16, augment_on_device={
        "cpu": False, "device": True}.get(args.augment_on, device.type != "cpu"))
    _, spec = fit(
        model, config, spec=spec, x_u8=x_u8, y=y, train_idx=train_idx, val_idx=val_idx, out=args.out,
        augment=augment, device=device, teacher=teacher,
        val_groups=groups if args.select_by == "mean" and len(groups) > 1 else None, targets=targets,
    )
    print(json.dumps({k: v for k, v in spec.metrics.items() if not isinstance(v, list)}))
    return spec.metrics


if __name__ == "__main__":
    main(get_args_parser().parse_args())
