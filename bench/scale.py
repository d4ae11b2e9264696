"""Scoring throughput past one process, in one run on this machine: the local engine, Ray with 1 and 2 workers, and
two `--shard` processes side by side, each over the same folder of photos (RAF-DB test images set in 256-px frames
so the detector works as on photos, or the astronaut made into distinct photos when the datasets are absent).

  python bench/scale.py [--n 400] [--frames 750]

Prints images per second, each as a ratio to the local engine, Ray's start-up cost (a local Ray started and its
actors loading the model: the time to the first row), and the per-worker rate that predicts N machines. Then the
same for one video (`--frames` at 640x480, two faces, every frame analysed): `video` in one process, two `--shard`
processes joined by `fer join`, and `--engine ray` with 2 workers and 2 segments, with whether each joined timeline
has the one-process run's rows and face ids.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def photos(folder: Path, n: int) -> Path:
    from fer_core.framing import in_a_photo

    folder.mkdir(parents=True, exist_ok=True)
    try:
        from fer_core.data import datasets_root, load_labelled_folder

        test = load_labelled_folder(datasets_root() / "raf-db" / "test")
        rng = np.random.default_rng(0)
        for k, i in enumerate(rng.choice(len(test.paths), size=min(n, len(test.paths)), replace=False)):
            face = np.asarray(Image.open(test.paths[i]).convert("RGB"))
            Image.fromarray(in_a_photo(face, 256, context=0.5, plain=k % 2 == 0)).save(folder / f"{k:05d}.jpg")
    except (FileNotFoundError, OSError):
        from fer_core.examples import astronaut

        a = astronaut()
        for k in range(n):
            Image.fromarray(np.ascontiguousarray(np.roll(a, k, axis=1))).save(folder / f"{k:05d}.jpg")
    return folder


def run(argv: list[str], command: str = "score") -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fer_core", command, *argv], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def two_shards(command: str, source: Path, out: Path, flag: str) -> float:
    """`command` run as shards 0/2 and 1/2 side by side (one thread each), writing out/shard{k}.csv: the seconds."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "fer_core", command, str(source), "--shard", f"{k}/2", flag,
                               str(out / f"shard{k}.csv")], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
             for k in range(2)]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0


def timeline(path: Path) -> list[tuple]:
    import csv

    with open(path, newline="") as fh:
        return [(r["frame"], r["face"], r["x"], r["y"], r["w"], r["h"], r["prediction"]) for r in csv.DictReader(fh)]


def video(tmp: Path, frames: int) -> None:
    from video import make_clip  # bench/video.py: bench/ is on sys.path when run as a script

    clip = tmp / "clip.avi"
    make_clip(clip, frames)
    results = {"video, 1 process": run([str(clip), "--csv", str(tmp / "v_local.csv")], "video")}
    parts = tmp / "video_parts"
    parts.mkdir()
    results["video, 2 --shard processes + join"] = two_shards("video", clip, parts, "--csv") + run(
        [str(parts / "shard0.csv"), str(parts / "shard1.csv"), "-o", str(tmp / "v_joined.csv")], "join")
    results["video, Ray, 2 workers, 2 segments"] = run(
        [str(clip), "--csv", str(tmp / "v_ray.csv"), "--engine", "ray", "--workers", "2", "--segments", "2"], "video")
    local = timeline(tmp / "v_local.csv")
    same = {"video, 2 --shard processes + join": timeline(tmp / "v_joined.csv") == local,
            "video, Ray, 2 workers, 2 segments": timeline(tmp / "v_ray.csv") == local}
    base = frames / results["video, 1 process"]
    print(f"\none video: {frames} frames at 640x480, 2 faces, every frame analysed; {len(local)} timeline rows")
    print("| engine | seconds | frames/s | vs 1 process | timeline = 1 process's |\n|---|---|---|---|---|")
    for name, secs in results.items():
        print(f"| {name} | {secs:.1f} | {frames / secs:.1f} | {frames / secs / base:.2f}x | {same.get(name, '—')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="photos")
    ap.add_argument("--frames", type=int, default=750, help="frames of the video (0: no video)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fer_scale_"))
    folder = photos(tmp / "photos", args.n)
    n = len(list(folder.iterdir()))
    results = {}
    results["local engine, 1 process"] = run([str(folder), "-o", str(tmp / "local.csv")])
    results["local engine, 2 --shard processes"] = two_shards("score", folder, tmp, "-o")
    for w in (1, 2):
        results[f"Ray, {w} worker(s)"] = run([str(folder), "-o", str(tmp / f"ray{w}.csv"), "--engine", "ray",
                                              "--workers", str(w)])
    small = folder.parent / "one"
    small.mkdir()
    os.link(next(folder.iterdir()), small / "one.jpg")
    start = run([str(small), "-o", str(tmp / "start.csv"), "--engine", "ray", "--workers", "1"])
    base = n / results["local engine, 1 process"]
    print(f"{n} photos (256 px), {os.cpu_count()} CPUs")
    print("| engine | seconds | images/s | vs local |\n|---|---|---|---|")
    for name, secs in results.items():
        print(f"| {name} | {secs:.1f} | {n / secs:.1f} | {n / secs / base:.2f}x |")
    if results["Ray, 1 worker(s)"] - start < 0.2 * results["Ray, 1 worker(s)"]:
        print(f"Ray start-up (a local Ray, one actor loading the model, one photo): {start:.1f} s — most of the 1-worker "
              "run: too few photos to measure a per-worker rate (use --n 400 or more)")
    else:
        per_worker = n / (results["Ray, 1 worker(s)"] - start)
        print(f"Ray start-up (a local Ray, one actor loading the model, one photo): {start:.1f} s; Ray's per-worker "
              f"rate after start-up: {per_worker:.1f} images/s, so N workers on N machines predict ~N x "
              f"{per_worker:.0f} images/s plus one start-up")
    if args.frames:
        video(tmp, args.frames)


if __name__ == "__main__":
    main()
