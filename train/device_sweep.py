"""Several train.py runs side by side inside a fixed time budget: for a borrowed GPU machine that is lent
for minutes, not hours, and reaches nothing outside the files sent with it.

  # here: the two training splits as one small file (re-encoded JPEGs, ~56 MiB), ignored by git
  python train/device_sweep.py pack --out .gpu/data.npz
  # there: unpack, time a training step, probe one epoch of every run, then train them all for as many
  # epochs as fit the budget (and optionally fine-tune each at a low LR), best checkpoints to --out
  python train/device_sweep.py run --data .gpu/data.npz --budget 480 --out "$OUT" \\
      --common "--arch fernet --data raf-db:2 fer2013 --lr 0.1 --ema 0.998 --tta-flip --class-weights \\
                --class-weight-power 0.5 --label-smoothing 0 --rotation 15 --lowres 0.1 --split-seed 0 \\
                --compile reduce-overhead" \\
      --config k1 "--seed 41 --width 48" --config k2 "--seed 42 --width 48" \\
      --finetune "--schedule cosine --lr 0.02" --finetune-epochs 8

`--compile reduce-overhead` (CUDA graphs) halved a fernet step on an H200 (session 14). The probe trains
two epochs and plans with the second (the first holds the compiling, ~20 s). Every run is a plain
`train/train.py` command (printed in its log and stored in its checkpoint), so any result can be re-run
on the CPU. `--epochs N` skips the probe and trains every config N epochs (a second call on the same
lent time, sized from the first call's probe: the probe and its compiling cost ~75 s). The data is
re-encoded once (RAF-DB colour at JPEG quality 95, FER2013 grayscale at 90: a mean absolute change of
~0.5 grey levels), so validation numbers printed there can differ from a re-score on the original images
by a few hundredths of a point; re-score here (`train/duo.py`, `train/evaluate.py`) before keeping
anything. A lent machine returns at most 8 files a call: every run's checkpoint, each fine-tune's and
logs.tar.gz must fit (four runs with fine-tunes lost the logs in session 16), each under 16 MiB (session 18
split a width-56 checkpoint with `split -b 15000000` in the command and joined it here), 64 MiB together: five
width-48 float16 checkpoints (12.6 MB each). Session 29 trained eight, had the sweep write them to /tmp with
`--out`, copied five to $OUT and fetched the rest in a second call on the warm machine (0.4 s). The whole tree sent
is at most 64 MiB: the pack is 56.4 MiB, 48.6 at `pack --quality 85` (mean change 1.2 / 0.8 grey levels),
43.3 at 80, 40.7 at 70 — room for one 12.6 MB teacher, not two. Two calls on a warm machine (it waits ~30 s
idle) send each under the limit: the first carries `.gpu` and copies the pack to `/tmp/keep` (kept while warm),
the second carries the teachers (`.teach/`) and reads `--data /tmp/keep/data.npz`. An ignored folder a call does
not name in carry is not there, even warm (session 19): carry the teachers in every call that reads them; a
run's outputs under --work in /tmp stay, so a third call can fine-tune them (`--init /tmp/device_sweep/run/...`).
Sessions 14, 16, 18, 19 and 29 (docs/experiments.md) used it.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPLITS = (("raf-db", False, 95), ("fer2013", True, 90))  # (folder, stored grayscale, JPEG quality)


def pack(out: Path, limit: int = 0, quality: int = 0) -> Path:
    """The training folders of both datasets (as decoded at 64 px) as JPEG bytes + names + label CSVs, at each
    split's JPEG quality in SPLITS or, when given, `quality` for both (lower: a smaller file, so that teacher
    checkpoints for a distillation fit beside it in what a lent machine is sent)."""
    import cv2

    from fer_core.data import datasets_root, load_labelled_folder, load_uint8

    blobs = {}
    for name, gray, split_quality in SPLITS:
        folder = load_labelled_folder(datasets_root() / name / "train")
        if limit:
            folder = dataclasses.replace(folder, paths=folder.paths[:limit], labels=folder.labels[:limit])
        x, _ = load_uint8(folder, 64, cache=not limit)
        paths = folder.paths
        arr = x.permute(0, 2, 3, 1).numpy()
        bufs = []
        for im in arr:
            img = im[..., 0] if gray else np.ascontiguousarray(im[..., ::-1])
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality or split_quality])
            if not ok:
                raise SystemExit(f"could not encode an image of {name}")
            bufs.append(buf.tobytes())
        keep = {p.name for p in paths}
        csv_lines = (datasets_root() / name / "train_labels.csv").read_text().splitlines()
        csv_text = "\n".join([csv_lines[0]] + [ln for ln in csv_lines[1:] if ln.split(",")[0] in keep]) + "\n"
        blobs[f"{name}/bytes"] = np.frombuffer(b"".join(bufs), dtype=np.uint8)
        blobs[f"{name}/offsets"] = np.cumsum([0] + [len(b) for b in bufs])
        blobs[f"{name}/names"] = np.frombuffer("\n".join(p.name for p in paths).encode(), dtype=np.uint8)
        blobs[f"{name}/csv"] = np.frombuffer(csv_text.encode(), dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **blobs)
    print(f"wrote {out}: {out.stat().st_size / 2 ** 20:.1f} MiB")
    return out


def unpack(data: Path, root: Path) -> None:
    """pack's file -> a datasets folder (root/<name>/train/*.jpg + root/<name>/train_labels.csv)."""
    z = np.load(data)
    for name, _, _ in SPLITS:
        folder = root / name / "train"
        folder.mkdir(parents=True, exist_ok=True)
        (root / name / "train_labels.csv").write_bytes(z[f"{name}/csv"].tobytes())
        b, off = z[f"{name}/bytes"], z[f"{name}/offsets"]
        for i, n in enumerate(z[f"{name}/names"].tobytes().decode().split("\n")):
            if "/" in n or n in ("", ".", ".."):
                raise SystemExit(f"refusing the odd file name {n!r} in {data}")
            (folder / n).write_bytes(b[off[i]:off[i + 1]].tobytes())


def _launch(runs: list[tuple[str, list[str]]], folder: Path, tag: str, env: dict) -> list:
    procs = []
    for name, cmd in runs:
        log = open(folder / f"{name}_{tag}.log", "w")
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    return procs


def _wait(procs: list, deadline: float) -> None:
    while any(p.poll() is None for _, p, _ in procs) and time.time() < deadline:
        time.sleep(1)
    for name, p, log in procs:
        if p.poll() is None:
            print(f"{name}: stopped at the deadline (its best-so-far checkpoint stays)", flush=True)
            p.kill()
            p.wait()
        log.close()


PROBE_EPOCHS = 2  # the first epoch holds one-off costs (torch.compile); plan with the last


def _epoch_seconds(log: Path) -> float | None:
    m = re.search(rf"epoch {PROBE_EPOCHS}/{PROBE_EPOCHS} ([\d.]+)s", log.read_text())
    return float(m.group(1)) if m else None


def _best_lines(log: Path) -> str:
    return " | ".join(ln for ln in log.read_text().splitlines() if ln.startswith("best val"))


def plan_epochs(seconds: list[float], left: float, *, max_epochs: int, finetune_epochs: int = 0,
                margin: float = 1.06) -> list[int]:
    """Epochs for each run so that it and its fine-tune end within `left` seconds, at the probed
    seconds per epoch (slowed by `margin`); at least one, at most max_epochs."""
    return [max(1, min(max_epochs, int(left / (s * margin)) - finetune_epochs)) for s in seconds]


def _probe_and_plan(args: argparse.Namespace, t0: float, common: list[str], configs: list, probe_dir: Path,
                    env: dict) -> tuple[list, list[int]]:
    """Train every config for PROBE_EPOCHS; the configs whose probe ran and the epochs each fits in the
    budget left."""
    procs = _launch([(n, [*common, *x, "--epochs", str(PROBE_EPOCHS), "--out", str(probe_dir / f"{n}.safetensors")])
                     for n, x in configs], probe_dir, "probe", env)
    t = time.time()
    _wait(procs, t0 + args.budget)
    wall = time.time() - t
    seconds = [_epoch_seconds(probe_dir / f"{n}_probe.log") for n, _ in configs]
    for (name, p, _), s in zip(procs, seconds):
        print(f"{name}: probe rc {p.returncode}, epoch {PROBE_EPOCHS} took {s} s", flush=True)
        if s is None:
            print((probe_dir / f"{name}_probe.log").read_text()[-3000:], flush=True)
    good = [(c, s) for c, s in zip(configs, seconds) if s is not None]
    if not good:
        print("every probe failed: nothing trained", flush=True)
        return [], []
    # start-up, data load, compiling, validation, calibration: what a run costs besides its epochs
    overhead = max(0.0, wall - PROBE_EPOCHS * max(s for _, s in good))
    phases = 2 if args.finetune else 1
    left = args.budget - (time.time() - t0) - phases * overhead - 15
    epochs = plan_epochs([s for _, s in good], left, max_epochs=args.max_epochs,
                         finetune_epochs=args.finetune_epochs if args.finetune else 0)
    print(f"probe wall {wall:.0f} s, overhead {overhead:.0f} s -> epochs "
          f"{dict(zip([n for (n, _), _ in good], epochs))} in {left:.0f} s", flush=True)
    return [c for c, _ in good], epochs


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    ds, probe_dir, run_dir = work / "datasets", work / "probe", work / "run"
    for d in (probe_dir, run_dir):
        d.mkdir(parents=True, exist_ok=True)
    unpack(Path(args.data), ds)
    env = dict(os.environ, FER_DATASETS=str(ds), FER_CACHE=str(work / "cache"), PYTHONUNBUFFERED="1")
    py = sys.executable
    decode = ("from fer_core.data import *\nfor n in ('raf-db', 'fer2013'):\n"
              "    x, y = load_uint8(load_labelled_folder(datasets_root() / n / 'train'), 64); print(n, tuple(x.shape))")
    subprocess.run([py, "-c", decode], env=env, check=True, cwd=ROOT)  # once, into the cache every run reads
    print(f"unpacked and decoded in {time.time() - t0:.0f} s", flush=True)
    if args.bench:
        subprocess.run([py, "bench/train_step.py", "--device", args.device, "--steps", "15",
                        "--threads", str(args.threads), *shlex.split(args.bench)], env=env, cwd=ROOT, timeout=120)
        print(f"bench done at {time.time() - t0:.0f} s", flush=True)
    common = [py, str(ROOT / "train/train.py"), *shlex.split(args.common), "--no-resume", "--threads",
              str(args.threads), "--device", args.device, "--save-dtype", args.save_dtype]
    if args.limit:
        common += ["--limit", str(args.limit)]
    configs = [(name, shlex.split(extra)) for name, extra in args.config]
    if args.epochs:  # sized beforehand from an earlier sweep's probe: no probe, no planning
        good, epochs = configs, [args.epochs] * len(configs)
    else:
        good, epochs = _probe_and_plan(args, t0, common, configs, probe_dir, env)
        if not good:
            return 1
    runs = [(n, [*common, *x, "--epochs", str(e), "--out", str(run_dir / f"fernet_{n}.safetensors")])
            for (n, x), e in zip(good, epochs)]
    deadline = t0 + args.budget + 20
    finetune_share = args.finetune_epochs / (args.finetune_epochs + min(epochs)) if args.finetune else 0.0
    _wait(_launch(runs, run_dir, "run", env), deadline - finetune_share * (deadline - time.time()))
    if args.finetune:
        fts = [(f"{n}_ft", [*common, *x, *shlex.split(args.finetune), "--epochs", str(args.finetune_epochs),
                            "--init", str(run_dir / f"fernet_{n}.safetensors"),
                            "--out", str(run_dir / f"fernet_{n}_ft.safetensors")])
               for n, x in configs if (run_dir / f"fernet_{n}.safetensors").is_file()]
        _wait(_launch(fts, run_dir, "run", env), deadline)
    for log in sorted(run_dir.glob("*_run.log")):
        print(log.stem, _best_lines(log)[-400:], flush=True)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tf:
        for log in [*run_dir.glob("*.log"), *probe_dir.glob("*.log")]:
            tf.add(log, arcname=f"{log.parent.name}_{log.name}")
    for ckpt in run_dir.glob("*.safetensors"):
        (out / ckpt.name).write_bytes(ckpt.read_bytes())
    print(f"done in {time.time() - t0:.0f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="write the training splits as one small file")
    pk.add_argument("--out", default=".gpu/data.npz")
    pk.add_argument("--limit", type=int, default=0, help="only the first N images of each split (tests)")
    pk.add_argument("--quality", type=int, default=0,
                    help="JPEG quality for both splits (default: 95 for RAF-DB, 90 for FER2013)")
    r = sub.add_parser("run", help="unpack, probe and train every config within the budget")
    r.add_argument("--data", default=".gpu/data.npz", help="pack's file")
    r.add_argument("--out", required=True, help="where the best checkpoints and logs.tar.gz go")
    r.add_argument("--work", default="/tmp/device_sweep", help="scratch folder (datasets, logs, checkpoints)")
    r.add_argument("--budget", type=float, default=480, help="seconds from start until every run has ended")
    r.add_argument("--common", default="", help="train.py arguments shared by every run, quoted")
    r.add_argument("--config", nargs=2, action="append", metavar=("NAME", "ARGS"), required=True,
                   help="one run: a name and its own train.py arguments, quoted (repeat)")
    r.add_argument("--finetune", default="", help="train.py arguments of a low-LR fine-tune of each run, quoted")
    r.add_argument("--finetune-epochs", type=int, default=8)
    r.add_argument("--max-epochs", type=int, default=80)
    r.add_argument("--epochs", type=int, default=0,
                   help="train every config this many epochs without a probe (sized from an earlier sweep)")
    r.add_argument("--device", default="cuda")
    r.add_argument("--threads", type=int, default=3, help="torch CPU threads per run")
    r.add_argument("--save-dtype", default="float16", choices=["float16", "float32"],
                   help="float16 keeps a 6M-parameter checkpoint under the 16 MB a device call returns")
    r.add_argument("--bench", default="", help="bench/train_step.py arguments to time first, quoted, e.g. "
                                              "'--width 32 48 --batch-size 128 256'")
    r.add_argument("--limit", type=int, default=0, help="train.py --limit (tests)")
    args = p.parse_args(argv)
    if args.cmd == "pack":
        pack(Path(args.out), args.limit, args.quality)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
