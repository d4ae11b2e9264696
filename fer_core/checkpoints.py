"""Self-describing checkpoints: safetensors weights + a JSON ModelSpec in the metadata. No pickle."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from .errors import CheckpointError
from .labels import EMOTIONS
from .models import FerNet, create_model

# $FER_CHECKPOINTS overrides the folder (tests, deployments with weights elsewhere)
CHECKPOINT_DIR = Path(os.environ.get("FER_CHECKPOINTS", Path(__file__).resolve().parent.parent / "checkpoints"))
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild and feed a model; travels inside the checkpoint."""

    arch: str
    classes: tuple[str, ...] = EMOTIONS
    input_size: int = 64
    grayscale: bool = False
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    temperature: float = 1.0  # divide logits by this before softmax (fitted on validation; colour faces)
    temperature_gray: float = 0.0  # the same for black-and-white faces (0: `temperature`); metrics.fit_temperatures
    tta_flip: bool = False  # average probabilities of the face and its mirror image
    train_data: tuple[str, ...] = ()
    args: dict[str, Any] = field(default_factory=dict)
    git_commit: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)  # activation ranges for int8 CPU predictions (quantize.py)
    # the runs this one was fine-tuned from (train.py --init), oldest first: each one's args, git_commit,
    # metrics and history, so a fine-tune's card still shows the whole road to its weights
    lineage: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        raw = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        raw = {k: v for k, v in raw.items() if k in known}
        for key in ("classes", "mean", "std", "train_data", "history", "lineage"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def with_updates(self, **changes: Any) -> "ModelSpec":
        return replace(self, **changes)

    def as_stage(self) -> dict[str, Any]:
        """This run as one entry of a fine-tune's `lineage`."""
        return {"args": self.args, "git_commit": self.git_commit, "metrics": self.metrics, "history": list(self.history)}

    def runs(self) -> tuple[dict[str, Any], ...]:
        """Every training stage, oldest first: the `lineage`, then this run (`as_stage`)."""
        return (*self.lineage, self.as_stage())

    def stages(self) -> list[dict[str, Any]]:
        """Every epoch of every stage, oldest first: the history rows with "stage" (1, 2, ...) and
        "total_epoch" (epochs counted from the first stage's start)."""
        rows, done = [], 0
        for n, stage in enumerate(self.runs(), start=1):
            history = stage.get("history") or []
            rows += [{**h, "stage": n, "total_epoch": done + h["epoch"]} for h in history]
            done += max((h["epoch"] for h in history), default=0)
        return rows


def save_checkpoint(
    model: FerNet, spec: ModelSpec, path: str | os.PathLike, *, dtype: torch.dtype | None = None
) -> Path:
    """Write weights + spec. `dtype=torch.float16` halves the file (floating tensors only);
    loading always restores float32."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.contiguous()
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT_VERSION, "spec": spec.to_json()})
    os.replace(tmp, path)  # atomic: a crash mid-save never leaves half a checkpoint
    return path


def update_spec(path: str | os.PathLike, **changes: Any) -> ModelSpec:
    """Rewrite a checkpoint's spec (e.g. its int8 calibration) and keep its weights byte for byte."""
    from safetensors.torch import load_file, save_file

    path = resolve_checkpoint(path)
    spec = read_spec(path).with_updates(**changes)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(load_file(str(path)), str(tmp), metadata={"format": FORMAT_VERSION, "spec": spec.to_json()})
    os.replace(tmp, path)
    return spec


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint name in checkpoints/ (with or without .safetensors) or a path."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" and p.is_file():
        return p
    for cand in (CHECKPOINT_DIR / f"{name_or_path}.safetensors", CHECKPOINT_DIR / str(name_or_path)):
        if cand.is_file():
            return cand
    if p.is_file():
        return p
    names = ", ".join(list_checkpoints()) or "none"
    raise CheckpointError(f"no checkpoint {str(name_or_path)!r}; available in {CHECKPOINT_DIR}: {names}")


def read_spec(path: str | os.PathLike) -> ModelSpec:
    from safetensors import safe_open

    path = resolve_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({exc})") from exc
    if "spec" not in meta:
        raise CheckpointError(f"{path.name} has no model spec in its metadata; not a fer_core checkpoint")
    try:
        spec = ModelSpec.from_json(meta["spec"])
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path.name} has a malformed model spec ({exc})") from exc
    return _with_recorded_lineage(path, spec)


def lineage_file(path: str | os.PathLike) -> Path:
    """Where a lineage recorded after a checkpoint was made lives: fernet.safetensors -> fernet.lineage.json."""
    path = Path(path)
    return path.with_name(f"{path.stem}.lineage.json")


def _run_id(spec: ModelSpec) -> dict[str, Any]:
    """What tells one run from another well enough to keep a lineage file from being read for a later run that
    replaced the checkpoint (promote.py writes over it, not over the file beside it)."""
    return {"git_commit": spec.git_commit, "seed": spec.args.get("seed"), "init": spec.args.get("init"),
            "val_macro_f1": spec.metrics.get("val_macro_f1")}


def _with_recorded_lineage(path: Path, spec: ModelSpec) -> ModelSpec:
    side = lineage_file(path)
    if spec.lineage or not side.is_file():
        return spec
    try:
        recorded = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return spec
    if recorded.get("run") != _run_id(spec):  # written for the run this checkpoint held before
        return spec
    return spec.with_updates(lineage=tuple(recorded.get("lineage", ())))


def record_lineage(path: str | os.PathLike, parent: str | os.PathLike) -> Path:
    """Record, beside a checkpoint made before train.py kept lineages, the run it was fine-tuned from (`parent`:
    that run's checkpoint; its own lineage, then it), so its model card shows every stage without rewriting the
    weights (git would keep a second copy of them). read_spec reads it back for this run only."""
    path = resolve_checkpoint(path)
    spec, up = read_spec(path), read_spec(parent)
    init = spec.args.get("init")
    if spec.lineage:
        raise CheckpointError(f"{path.name} already records the runs it was fine-tuned from")
    if not init:
        raise CheckpointError(f"{path.name} was not fine-tuned from another run (no --init in its arguments)")
    if Path(str(up.args.get("out", ""))).name != Path(str(init)).name:
        raise CheckpointError(f"{path.name} was fine-tuned from {init}, but {Path(parent).name} was written as "
                              f"{up.args.get('out')}")
    side = lineage_file(path)
    side.write_text(json.dumps({"run": _run_id(spec), "lineage": [*up.lineage, up.as_stage()]}, indent=1) + "\n")
    return side


def load_checkpoint(name_or_path: str | os.PathLike) -> tuple[FerNet, ModelSpec]:
    """Rebuild the model named in the spec and load its weights strictly; model is in eval mode."""
    from safetensors.torch import load_file

    path = resolve_checkpoint(name_or_path)
    spec = read_spec(path)
    try:
        model = create_model(spec.arch, num_classes=len(spec.classes), **spec.model_kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path.name}: {exc}") from exc
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is corrupt ({exc})") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path.name} does not match architecture {spec.arch!r}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad = [k for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{path.name} does not match architecture {spec.arch!r}: {k} has shape "
            f"{tuple(state[k].shape)}, expected {tuple(expected[k].shape)}"
        )
    model.load_state_dict(state, strict=True)  # copies into the float32 parameters
    model.eval()
    return model, spec


def list_checkpoints(directory: str | os.PathLike | None = None) -> list[str]:
    d = Path(directory) if directory else CHECKPOINT_DIR
    return sorted(p.stem for p in d.glob("*.safetensors"))


def git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
