"""Batched `score` vs a one-image-at-a-time loop (the original script's approach), same model, one run.

  python bench/throughput.py [--model fernet] [--limit 600]
"""
from __future__ import annotations

import argparse
import time

import torch


from fer_core.data import datasets_root, load_labelled_folder
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
from fer_core.io import read_image
from fer_core.scoring import iter_inputs, score_items


def one_at_a_time(paths, predictor) -> float:
    """Like the original script: open each file, make a tensor, run the model on a batch of one."""
    from PIL import Image
    from torchvision.transforms import v2

    spec = predictor.spec
    tf = v2.Compose([v2.PILToTensor(), v2.Resize((spec.input_size, spec.input_size), antialias=True),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)])
    t = time.perf_counter()
    with torch.no_grad():
        for p in paths:
            x = tf(Image.open(p).convert("RGB"))[None]
            logits = predictor.model(x)
            if spec.tta_flip:  # the same work per image as the batched path
                logits = (logits + predictor.model(torch.flip(x, dims=[3]))) / 2
            torch.softmax(logits / spec.temperature, 1)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--limit", type=int, default=0, help="first N test images (0 = all 2,388)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    pred = load_predictor(args.model, frozen=True)  # as `python -m fer_core score` and the app run it
    pred.prediction_model()
    build = time.perf_counter() - t
    pred32 = load_predictor(args.model, precision="float32", frozen=False)
    folder = load_labelled_folder(datasets_root() / "raf-db" / "test")
    paths = list(folder.paths[: args.limit or None])
    read_image(paths[0])
    timings = {}
    for label, p in ((f"batched score ({pred.precision}, the CLI's)", pred), ("batched score (float32 eager)", pred32)):
        t = time.perf_counter()
        rows = score_items(iter_inputs(paths), p, whole_image=True, batch_size=64)
        timings[label] = time.perf_counter() - t
        assert len(rows) == len(paths) and not any(r.get("error") for r in rows)
    loop = one_at_a_time(paths, pred32)
    n = len(paths)
    print(f"model {args.model}, {n} RAF-DB test images, {args.threads} threads, whole-image mode; building the "
          f"CLI's {pred.precision} copy took {build:.2f} s (not counted below)")
    print(f"{'one-at-a-time loop (float32)':40s}: {loop:7.2f} s  ({n / loop:7.1f} img/s)")
    for label, sec in timings.items():
        print(f"{label:40s}: {sec:7.2f} s  ({n / sec:7.1f} img/s)  speed-up {loop / sec:.2f}x")


if __name__ == "__main__":
    main()
