"""Training loop: batched in-memory data, per-sample augmentation, bf16 autocast, early stopping,
history, best-by-validation-macro-F1 checkpointing and resumable state."""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import ModelSpec, save_checkpoint
from .device import autocast_ctx, forward_logits, pick_device
from .metrics import calibrate, classification_report
from .preprocess import AugmentOptions, BatchAugment, grayscale_mask, grey_uint8, luminance, mean_std, normalize


@dataclass(frozen=True)
class TrainConfig:
    """The options of one training run, named as train/train.py's flags (`TrainConfig.from_args(args)`)."""

    epochs: int = 30
    batch_size: int = 128  # per process: under torchrun the global batch is batch_size × world size
    lr: float = 0.1
    optimizer: str = "sgd"
    schedule: str = "onecycle"
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    class_weights: bool = False
    class_weight_power: float = 1.0
    patience: int = 0  # early stopping: epochs without a validation gain (0 = off)
    bf16: bool = True  # autocast where the device has native bfloat16
    ema: float = 0.0  # EMA decay of the weights that are evaluated and saved (0 = off)
    tta_flip: bool = False
    no_resume: bool = False
    save_dtype: str = "float32"
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    augment_on_device: bool = False
    sam: float = 0.0  # SAM radius rho (0 = plain steps)
    compile: str | None = None  # torch.compile mode for the training forward

    @classmethod
    def from_args(cls, args: Any, **overrides: Any) -> "TrainConfig":
        """The fields of an argparse namespace that carry these names, then `overrides`."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**{**values, **overrides})


def distributed_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed was initialised (torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Under torchrun (WORLD_SIZE > 1 in the environment): join the process group (nccl on CUDA, gloo on the CPU)
    and return (rank, world size); else (0, 1) and nothing is started."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return distributed_world()


def _progress(iterable, total: int, desc: str):
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, leave=False, mininterval=0.5 if tty else 60, disable=None)


def _to_input(x_u8: torch.Tensor, spec: ModelSpec, device: torch.device) -> torch.Tensor:
    x = normalize(x_u8, spec).to(device)
    return x.contiguous(memory_format=torch.channels_last)


class Ensemble(nn.Module):
    """Mean logits (B, K) of several eval-mode teacher models; never trained."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(m.eval() for m in models)
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Ensemble":  # teachers stay in eval mode (BN statistics fixed)
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).float() for m in self.members]).mean(0)


class Resized(nn.Module):
    """`model` fed its own input size: a batch of another size is resized (bilinear, antialiased) first, so a
    teacher trained at 64 px can teach a student that reads 80 px."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", antialias=True,
                              align_corners=False).contiguous(memory_format=torch.channels_last)
        return self.model(x)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target term: T² · KL(teacher ‖ student) at temperature T, batch-mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                    reduction="batchmean", log_target=True) * t * t


def mix_batch(x: torch.Tensor, y: torch.Tensor, *, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
              prob: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al.) or CutMix (Yun et al.) of a batch with a shuffled copy of itself.

    With probability `prob` the batch is mixed — by CutMix or mixup, half the time each when both alphas
    are > 0 — with a mixing ratio drawn from Beta(alpha, alpha). Returns (mixed x, the partner labels,
    lam): the loss is lam · loss(y) + (1 - lam) · loss(partner labels). lam is 1.0 for an unmixed
    batch. For CutMix, lam is the share of the image left unpasted (after clipping the box)."""
    if (mixup_alpha <= 0 and cutmix_alpha <= 0) or len(y) < 2 or torch.rand(()).item() >= prob:
        return x, y, 1.0
    perm = torch.randperm(len(y), device=y.device)
    cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand(()).item() < 0.5)
    alpha = cutmix_alpha if cutmix else mixup_alpha
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    if not cutmix:
        return lam * x + (1 - lam) * x[perm], y[perm], lam
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[..., y0:y1, x0:x1] = x[perm, ..., y0:y1, x0:x1]
    return x, y[perm], 1 - (y1 - y0) * (x1 - x0) / (h * w)


@torch.no_grad()
def sam_ascent(model: nn.Module, rho: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Sharpness-aware minimisation's first half (Foret et al. 2021): move every parameter that has a
    gradient by rho · g / ‖g‖ (the whole model's gradient norm), towards higher loss. Returns the
    (parameter, its value before) pairs, so that `sam_descent_back` restores the weights exactly."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return []
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params]))
    scale = rho / (norm + 1e-12)
    moved = []
    for p in params:
        moved.append((p, p.detach().clone()))
        p.add_((p.grad.float() * scale).to(p.dtype))
    return moved


@torch.no_grad()
def sam_descent_back(moved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for p, before in moved:
        p.copy_(before)


class frozen_batchnorm_stats:
    """Within the block, batch-norm layers still normalise by the batch but leave their running
    statistics as they are (momentum 0): SAM's second forward of a batch must not count it twice."""

    def __init__(self, model: nn.Module) -> None:
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self) -> None:
        self.saved = [m.momentum for m in self.bns]
        for m in self.bns:
            m.momentum = 0.0

    def __exit__(self, *exc) -> None:
        for m, mom in zip(self.bns, self.saved):
            m.momentum = mom


def ema_of(model: nn.Module, decay: float) -> nn.Module:
    """An exponential moving average of `model`'s weights and buffers (update with `.update_parameters`)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def compiled(model: nn.Module, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """`torch.compile(model)` in `mode` ("default", "reduce-overhead" = CUDA graphs, ...), sharing its weights."""
    return torch.compile(model, mode=None if mode == "default" else mode)


def train_one_epoch(
    model: nn.Module,
    x_u8: torch.Tensor,
    y: torch.Tensor,
    indices: np.ndarray,
    *,
    spec: ModelSpec,
    augment: BatchAugment | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    criterion: nn.Module,
    batch_size: int,
    device: torch.device,
    bf16: bool,
    ema: Any = None,
    epoch: int = 0,
    max_grad_norm: float = 5.0,
    teacher: nn.Module | None = None,
    distill_alpha: float = 0.5,
    distill_temperature: float = 2.0,
    mix: dict | None = None,
    sam_rho: float = 0.0,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    shard: tuple[int, int] = (0, 1),
    targets: torch.Tensor | None = None,
) -> dict:
    """One pass over `indices` (shuffled); returns loss, accuracy and macro-F1 on the augmented batches.
    With a `teacher`, the loss is (1 - alpha) · criterion + alpha · distillation_loss on the same
    augmented batch. With `mix` (mix_batch's keyword arguments) batches are mixed and the criterion is
    the lam-weighted sum over both labels; accuracy counts the larger share's label.
    `x_u8` may already be on `device` (then batches are cut and augmented there, see fit's
    augment_on_device); `y` stays on the CPU. With `sam_rho` > 0 each step is a SAM step: the gradient
    is taken again at the weights moved by rho along the first gradient (twice the cost of a step);
    the reported loss is the first, unperturbed one. `forward` (default: `model`) is what computes the
    training logits, e.g. a `torch.compile`d `model` sharing its parameters, or its DistributedDataParallel
    wrapper. `shard` = (rank, world size): every process draws the same shuffle (same seed) and takes every
    world-size-th index from its rank, as DistributedSampler does, so each epoch covers the indices once across
    processes. `targets` (N × classes, on the CPU beside `y`): soft targets the criterion learns instead of `y`
    (train.py's --ferplus soft); accuracy and F1 still count `y`, a mixed partner's its target's argmax."""
    model.train()
    forward = model if forward is None else forward
    perm = indices[torch.randperm(len(indices)).numpy()][shard[0]::shard[1]]
    n_batches = len(perm) // batch_size  # drop the ragged last batch (BN on tiny batches is noisy)
    total_loss, preds, trues = torch.zeros((), device=device), [], []
    mean, std = mean_std(spec, x_u8.device)  # once, not a host-to-GPU copy per batch
    for b in _progress(range(n_batches), n_batches, f"epoch {epoch}"):
        idx = torch.from_numpy(perm[b * batch_size:(b + 1) * batch_size])
        xb, yb = x_u8[idx.to(x_u8.device)], y[idx]
        xf = augment(xb) if augment is not None else xb.float() / 255.0
        if spec.grayscale:
            xf = luminance(xf).expand(-1, 3, -1, -1)  # the app's grey (preprocess.faces_to_uint8)
        xf = ((xf - mean) / std).to(device).contiguous(memory_format=torch.channels_last)
        yb = yb.to(device)
        tb = targets[idx].to(device) if targets is not None else yb  # what the criterion learns
        t2, lam = tb, 1.0
        if mix:
            xf, t2, lam = mix_batch(xf, tb, **mix)
        if forward is not model and not isinstance(forward, nn.parallel.DistributedDataParallel):
            # a compiled step: a new iteration for CUDA-graph replays (teacher and student)
            torch.compiler.cudagraph_mark_step_begin()
        t_logits = None
        if teacher is not None:
            with torch.no_grad(), autocast_ctx(device, bf16):
                t_logits = teacher(xf).float().clone()  # a copy: a CUDA-graph replay may reuse its memory

        def batch_loss() -> tuple[torch.Tensor, torch.Tensor]:
            with autocast_ctx(device, bf16):
                out = forward(xf).float()  # the losses in float32, also under bf16 autocast
                value = criterion(out, tb)
                if lam < 1.0:
                    value = lam * value + (1 - lam) * criterion(out, t2)
                if t_logits is not None:
                    value = (1 - distill_alpha) * value + distill_alpha * distillation_loss(
                        out, t_logits, distill_temperature)
            return out, value

        logits, loss = batch_loss()
        # read the outputs now: a CUDA-graph replay (SAM's second pass) may reuse their memory
        total_loss += loss.detach() * len(yb)  # no .item() per step: a GPU would wait for every batch
        preds.append(logits.argmax(1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if sam_rho > 0:
            moved = sam_ascent(model, sam_rho)
            with frozen_batchnorm_stats(model):
                _, sharp_loss = batch_loss()
            optimizer.zero_grad(set_to_none=True)
            sharp_loss.backward()
            sam_descent_back(moved)
        if max_grad_norm:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        trues.append(yb if lam >= 0.5 else t2 if t2.dim() == 1 else t2.argmax(1))
    preds_np = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)
    trues_np = torch.cat(trues).cpu().numpy() if trues else np.zeros(0, dtype=np.int64)
    rep = classification_report(trues_np, preds_np)
    return {"loss": total_loss.item() / max(1, len(trues_np)), "accuracy": rep["accuracy"],
            "macro_f1": rep["macro_f1"]}


@torch.inference_mode()
def predict_logits(
    model: nn.Module, x_u8: torch.Tensor, *, spec: ModelSpec, batch_size: int = 256,
    device: torch.device | None = None, bf16: bool = False, tta_flip: bool = False,
) -> torch.Tensor:
    """Logits (N, K) in float32 for a uint8 batch; with tta_flip, the mean of face and mirror logits.
    `model` may be a compiled copy (Predictor.prediction_model(); no parameters: CPU)."""
    device = device or next(model.parameters(), torch.empty(0)).device
    model.eval()
    out = []
    for i in range(0, len(x_u8), batch_size):
        xb = x_u8[i:i + batch_size]
        if spec.grayscale:
            xb = grey_uint8(xb)
        out.append(forward_logits(model, _to_input(xb, spec, device), tta_flip=tta_flip, bf16=bf16).cpu())
    return torch.cat(out) if out else torch.zeros(0, len(spec.classes))


def evaluate(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, *, spec: ModelSpec, **kw) -> dict:
    """Loss, accuracy, macro-F1 (+ the full report under 'report' and the logits under 'logits')."""
    logits = predict_logits(model, x_u8, spec=spec, **kw)
    loss = F.cross_entropy(logits, y).item() if len(y) else 0.0
    rep = classification_report(y.numpy(), logits.argmax(1).numpy())
    return {"loss": loss, "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"], "report": rep, "logits": logits}


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN/bias
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose from sgd, adamw")


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, lr: float, epochs: int, steps_per_epoch: int):
    total = max(1, epochs * steps_per_epoch)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.15)
    if name == "cosine":
        warm = min(total // 10, 3 * steps_per_epoch)

        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, f)
    if name == "none":
        return None
    raise ValueError(f"unknown schedule {name!r}; choose from onecycle, cosine, none")


def fit(
    model: nn.Module,
    config: TrainConfig = TrainConfig(),
    *,
    spec: ModelSpec,
    x_u8: torch.Tensor,
    y: torch.Tensor,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    out: str | os.PathLike,
    augment: AugmentOptions | None = AugmentOptions(),
    device: torch.device | None = None,
    log: Callable[[str], None] = print,
    teacher: nn.Module | None = None,
    val_groups: dict[str, np.ndarray] | None = None,
    targets: torch.Tensor | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """Train with `config` and early stopping on validation macro-F1; the best model is saved to `out` as it goes.

    With `val_groups` (a name per training folder → the positions of its faces in `val_idx`), each folder's
    validation macro-F1 is recorded per epoch (`val_macro_f1_<name>`) and the model is chosen by their mean
    (`val_mean_macro_f1`), so a large folder does not outvote a small one.

    With `augment_on_device` the training images are copied to `device` once and each batch is cut and
    augmented there (JPEG re-compression excepted), so a GPU host needs no CPU cores for augmentation.
    On a GPU this keeps the step, not the augmentation, the bottleneck (docs/training.md).

    With `targets` (one row of class probabilities per image of `x_u8`) the criterion learns them instead of `y`;
    validation, early stopping and calibration still use `y`.

    With `sam_rho` > 0 every step is a sharpness-aware (SAM) step of radius rho (see train_one_epoch).

    With `compile_mode` ("default", "reduce-overhead", ...) the training forward runs through
    `torch.compile(model, mode=compile_mode)`, and so do the teachers'; the weights, EMA, evaluation and
    saving are the plain model's. "reduce-overhead" replays CUDA graphs: for a GPU, where a 64-px
    fernet's step is launch-bound (docs/decisions.md); on the CPU compiling gained nothing
    measurable.

    A resumable state (`<out>.state.pt`, plain tensors, loaded with weights_only=True) is written
    after every epoch; unless `config.no_resume`, training continues from it.

    Under torchrun (init_distributed first) each process trains its share of every epoch through
    DistributedDataParallel (gradients averaged, BN buffers from rank 0), so all ranks hold the same weights;
    each scores the whole validation split alike, and rank 0 alone writes the checkpoint, the state and the log.
    """
    c = config
    device = device or pick_device()
    rank, world = distributed_world()
    main_rank = rank == 0
    if not main_rank:
        log = lambda _: None  # noqa: E731
    epochs, batch_size, lr, tta_flip, bf16 = c.epochs, c.batch_size, c.lr, c.tta_flip, c.bf16
    save_dtype = getattr(torch, c.save_dtype) if isinstance(c.save_dtype, str) else c.save_dtype
    out = Path(out)
    model.to(device).to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher = teacher.to(device).to(memory_format=torch.channels_last).eval()
    opt = build_optimizer(model, c.optimizer, lr, c.weight_decay)
    steps = len(train_idx) // world // batch_size
    sched = build_scheduler(opt, c.schedule, lr, epochs, steps)
    weight = None
    if c.class_weights:
        counts = np.bincount(y[train_idx].numpy(), minlength=len(spec.classes)).astype(np.float64)
        w = (counts.sum() / np.maximum(counts, 1) / len(counts)) ** c.class_weight_power
        weight = torch.tensor(w / w.mean(), dtype=torch.float32, device=device)
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=c.label_smoothing)
    aug = BatchAugment(augment, spec.input_size) if augment is not None else None
    ema = ema_of(model, c.ema) if c.ema > 0 else None
    history: list[dict] = []
    best_f1, best_epoch, start_epoch = -1.0, -1, 0
    state_path = out.with_suffix(".state.pt")
    if not c.no_resume and state_path.is_file():
        st = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        if sched is not None and st.get("scheduler") is not None:
            if st.get("total_steps") == epochs * steps:
                sched.load_state_dict(st["scheduler"])
            else:  # a longer (or shorter) run than before: replay the new schedule up to here
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for _ in range((st["epoch"] + 1) * steps):
                        sched.step()
        if ema is not None and st.get("ema") is not None:
            ema.load_state_dict(st["ema"])
        torch.set_rng_state(st["rng"])
        history = [dict(h) for h in st["history"]]
        best_f1, best_epoch, start_epoch = st["best_f1"], st["best_epoch"], st["epoch"] + 1
        log(f"resumed from {state_path} at epoch {start_epoch}")
    x_train = x_u8.to(device) if c.augment_on_device else x_u8
    forward = model
    if world > 1:
        forward = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if c.compile:
        forward = compiled(forward, c.compile)
    if c.compile and teacher is not None:  # the teachers' forward is most of a distilled step on a GPU
        teacher = compiled(teacher, c.compile)
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        tr = train_one_epoch(
            model, x_train, y, train_idx, spec=spec, augment=aug, optimizer=opt, scheduler=sched,
            criterion=criterion, batch_size=batch_size, device=device, bf16=bf16, ema=ema, epoch=epoch,
            teacher=teacher, distill_alpha=c.distill_alpha, distill_temperature=c.distill_temperature,
            mix={"mixup_alpha": c.mixup, "cutmix_alpha": c.cutmix, "prob": c.mix_prob}, sam_rho=c.sam,
            forward=forward, shard=(rank, world), targets=targets,
        )
        eval_model = ema.module if ema is not None else model
        if world > 1:  # each rank's BN statistics saw only its batches: take rank 0's, so every rank is the same
            _broadcast_from_rank_0(model.buffers(), *((ema.parameters(), ema.buffers()) if ema is not None else ()))
        va = evaluate(eval_model, x_u8[val_idx], y[val_idx], spec=spec, device=device, bf16=bf16, tta_flip=tta_flip)
        row = {
            "epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1),
            "train_loss": tr["loss"], "train_accuracy": tr["accuracy"], "train_macro_f1": tr["macro_f1"],
            "val_loss": va["loss"], "val_accuracy": va["accuracy"], "val_macro_f1": va["macro_f1"],
        }
        row.update(group_scores(va["logits"], y[val_idx], val_groups))
        history.append(row)
        score = row.get("val_mean_macro_f1", va["macro_f1"])
        improved = score > best_f1
        groups = "".join(f" {k[len('val_macro_f1_'):]} {v:.4f}" for k, v in row.items() if k.startswith("val_macro_f1_"))
        log(
            f"epoch {epoch + 1}/{epochs} {row['seconds']}s train loss {tr['loss']:.3f} acc {tr['accuracy']:.3f} | "
            f"val loss {va['loss']:.3f} acc {va['accuracy']:.4f} F1 {va['macro_f1']:.4f}"
            f"{f' | F1{groups}, mean {score:.4f}' if groups else ''}{' *' if improved else ''}"
        )
        if improved:
            best_f1, best_epoch = score, epoch + 1
        if improved and main_rank:
            _save_best(eval_model, spec, history, va, out, best_epoch, save_dtype,
                       {k: v for k, v in row.items() if k.startswith(("val_macro_f1_", "val_mean"))})
        if main_rank:
            save_atomic({
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
                "rng": torch.get_rng_state(), "history": history, "best_f1": best_f1,
                "best_epoch": best_epoch, "epoch": epoch, "total_steps": epochs * steps,
            }, state_path)
        if c.patience and epoch + 1 - best_epoch >= c.patience:
            log(f"early stop: no val macro-F1 gain for {c.patience} epochs (best {best_f1:.4f} at {best_epoch})")
            break
    from .checkpoints import load_checkpoint

    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0's last checkpoint is on disk
        if not main_rank:
            return load_checkpoint(out)

    best_model, best_spec = load_checkpoint(out)
    # calibration: temperatures (colour and black-and-white faces) fitted on validation logits of the best model
    va = evaluate(best_model, x_u8[val_idx], y[val_idx], spec=best_spec, tta_flip=tta_flip)
    logits, yv = va["logits"].numpy(), y[val_idx].numpy()
    cal = calibrate(logits, yv, grayscale_mask(x_u8[val_idx], best_spec).numpy())
    temp, temp_gray = cal.pop("temperature"), cal.pop("temperature_gray")
    metrics = {**best_spec.metrics, **cal}
    best_spec = best_spec.with_updates(temperature=temp, temperature_gray=temp_gray, metrics=metrics,
                                       history=tuple(history))
    save_checkpoint(best_model, best_spec, out, dtype=save_dtype)
    log(f"best val macro-F1 {best_f1:.4f} at epoch {best_epoch}; temperature {temp:.3f} (black-and-white faces "
        f"{temp_gray:.3f}); saved {out}")
    return best_model, best_spec


def _broadcast_from_rank_0(*tensor_groups) -> None:
    import torch.distributed as dist

    for group in tensor_groups:
        for t in group:
            dist.broadcast(t.data, src=0)


def group_scores(logits: torch.Tensor, y: torch.Tensor, groups: dict[str, np.ndarray] | None) -> dict:
    """Each validation group's macro-F1 (`val_macro_f1_<name>`) and their mean (`val_mean_macro_f1`); {} without
    groups."""
    if not groups:
        return {}
    pred, true = logits.argmax(1).numpy(), y.numpy()
    out = {f"val_macro_f1_{name}": classification_report(true[pos], pred[pos])["macro_f1"]
           for name, pos in groups.items()}
    out["val_mean_macro_f1"] = float(np.mean(list(out.values())))
    return out


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then an atomic rename: a run killed mid-save leaves the
    previous state whole, never a truncated one that --resume would fail on."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_best(
    model: nn.Module, spec: ModelSpec, history: list, va: dict, out: Path, epoch: int, dtype: torch.dtype,
    extra: dict | None = None,
) -> None:
    metrics = dict(spec.metrics)
    metrics.update({
        "best_epoch": epoch, "val_accuracy": va["accuracy"], "val_macro_f1": va["macro_f1"],
        "val_recall": va["report"]["recall"], **(extra or {}),
    })
    save_checkpoint(model, spec.with_updates(metrics=metrics, history=tuple(history)), out, dtype=dtype)
