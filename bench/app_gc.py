"""What one full garbage collection costs in the app server's process, and what it costs once the long-lived objects
are frozen (`gc.freeze()`, as `ui.keep_for_good` does). Streamlit runs `gc.collect(2)` after every script run unless
`runner.postScriptGC` is off (.streamlit/config.toml turns it off); this loads what a server holds after its first
Explain upload (the pages' libraries, the default model and its prediction copy, the explainers after a warm-up)
and times a full collection before and after the freeze.

  python bench/app_gc.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import gc
import os
import time


def timed_collections(repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gc.collect(2)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import pandas  # noqa: F401 - what the pages import
    import plotly.express  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import streamlit  # noqa: F401

    from fer_core.pipeline import warm_up
    from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor

    predictor = load_predictor(DEFAULT_CHECKPOINT, frozen=None)  # as the app loads it
    predictor.prediction_model()
    warm_up(predictor)  # one face explained and scored with the app's starting methods, as the server's warm-up does
    objects = len(gc.get_objects())
    before = timed_collections(args.repeats)
    gc.freeze()
    after = timed_collections(args.repeats)
    print(f"objects tracked by the collector: {objects:,}; frozen: {gc.get_freeze_count():,}")
    print(f"full collection, median of {args.repeats}: {1000 * sorted(before)[len(before) // 2]:.0f} ms before "
          f"the freeze, {1000 * sorted(after)[len(after) // 2]:.1f} ms after; host: {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
