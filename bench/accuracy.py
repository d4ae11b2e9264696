"""Table of every checkpoint on RAF-DB test, FER2013 test (original labels and the FER+ majority) and the
in-the-wild affectnet-hq val split (through the app's detector and crop), beside the published numbers.

  python bench/accuracy.py            # re-evaluates (writes checkpoints/results.json), then prints
  python bench/accuracy.py --cached   # prints from checkpoints/results.json only
  python bench/accuracy.py --cached --headline   # the README's table
  python bench/accuracy.py --cached --write-docs # the README's and docs/results.md's tables, rewritten in place
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from fer_core.checkpoints import CHECKPOINT_DIR
from fer_core.labels import CLASSES_7, EMOTIONS
from fer_core.reference import PAPER_ACCURACY, PEER_ACCURACY

ROOT = Path(__file__).resolve().parent.parent


def fmt(v, pct=True):
    if v is None:
        return "—"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


WILD = "affectnet-hq-app"  # the in-the-wild column: affectnet-hq val through the app's detector and crop


def table(results: dict) -> str:
    lines = [
        "| model | arch | params | RAF-DB acc | RAF-DB macro-F1 | paper RAF-DB | FER2013 acc | FER2013 macro-F1 | "
        "paper FER2013 | FER2013 acc (FER+ labels) | in the wild acc | in the wild macro-F1 | "
        "ECE RAF/FER/wild (calibrated) | ms/face |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(results.get("checkpoints", {}).items(), key=lambda kv: -kv[1].get("raf-db", {}).get("accuracy", 0)):
        raf, fer, plus, wild = (r.get(k, {}) for k in ("raf-db", "fer2013", "fer2013-ferplus", WILD))
        paper = PAPER_ACCURACY.get(r["arch"], {})
        lines.append(
            f"| {name} | {r['arch']} | {r['parameters'] / 1e6:.1f}M | {fmt(raf.get('accuracy'))} | "
            f"{fmt(raf.get('macro_f1'), False)} | {paper.get('raf-db', '—')} | {fmt(fer.get('accuracy'))} | "
            f"{fmt(fer.get('macro_f1'), False)} | {paper.get('fer2013', '—')} | {fmt(plus.get('accuracy'))} | "
            f"{fmt(wild.get('accuracy'))} | {fmt(wild.get('macro_f1'), False)} | "
            f"{fmt(raf.get('ece_after'))}% / {fmt(fer.get('ece_after'))}% / {fmt(wild.get('ece_after'))}% | "
            f"{r.get('latency_ms', 0):.1f} ({r.get('precision', 'float32')}) |"
        )
    for peer, nums in PEER_ACCURACY.items():
        f1 = {ds: nums.get(f"{ds} macro-F1") for ds in ("raf-db", "fer2013")}
        f1 = {ds: "—" if v is None else f"{v / 100:.3f}" for ds, v in f1.items()}
        lines.append(f"| {peer} (quoted) | — | — | {nums.get('raf-db', '—')} | {f1['raf-db']} | — | "
                     f"{nums.get('fer2013', '—')} | {f1['fer2013']} | — | — | — | — | — | — |")
    return "\n".join(lines)


def neutral_recall(entry: dict) -> float | None:
    """A seven-class set's recall of neutral (index 6), None where the entry has no neutral row."""
    recall = entry.get("recall", [])
    return recall[6] if len(recall) > 6 else None


def headline(results: dict) -> str:
    """The README's table: every checkpoint's test accuracy (macro-F1) on the benchmarks (scored over the six
    emotions, as the paper's are), in the wild, and on the FER+ seven-class test (with neutral recall)."""
    lines = ["| model | classes | params | RAF-DB test | FER2013 test | FER2013 test, FER+ labels | in the wild "
             "(affectnet-hq val, through the detector) | in the wild, whole image | FER+ test, 7 classes (neutral "
             "recall) | ms/face |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(results.get("checkpoints", {}).items(),
                          key=lambda kv: -kv[1].get(WILD, kv[1].get("raf-db", {})).get("accuracy", 0)):
        cells = []
        for k in ("raf-db", "fer2013", "fer2013-ferplus", WILD, "affectnet-hq"):
            v = r.get(k)
            cells.append("—" if not v else f"{fmt(v['accuracy'])}% ({fmt(v['macro_f1'], False)})")
        seven = r.get("ferplus7")
        cells.append("—" if not seven else f"{fmt(seven['accuracy'])}% ({fmt(seven['macro_f1'], False)}; "
                     f"{fmt(neutral_recall(seven))}%)")
        lines.append(f"| {name} | {len(r.get('classes', EMOTIONS))} | {r['parameters'] / 1e6:.1f}M | "
                     + " | ".join(cells) + f" | {r.get('latency_ms', 0):.1f} |")
    return "\n".join(lines)


SETS = ("raf-db", "fer2013", "fer2013-ferplus", "affectnet-hq", WILD, "ferplus7", "neutral-pool")


def recall_table(results: dict) -> str:
    lines = ["| model | set | " + " | ".join(CLASSES_7) + " |", "|---|---|" + "---|" * len(CLASSES_7)]
    for name, r in results.get("checkpoints", {}).items():
        for ds in SETS:
            if ds in r:
                cells = [f"{100 * v:.0f}" for v in r[ds]["recall"]] + ["—"] * (len(CLASSES_7) - len(r[ds]["recall"]))
                lines.append(f"| {name} | {ds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def source_table(results: dict) -> str:
    """affectnet-hq val per source (AffectNet web photos / FFHQ portraits), read whole and through the app."""
    lines = ["| model | set | source | faces | accuracy | macro-F1 | called neutral % | neutral recall % |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.get("checkpoints", {}).items():
        for ds in ("affectnet-hq", WILD, "neutral-pool"):
            for src, v in r.get(ds, {}).get("by_source", {}).items():
                lines.append(f"| {name} | {ds} | {src} | {v['n']} | {fmt(v['accuracy'])} | {fmt(v['macro_f1'], False)} | "
                             f"{fmt(v.get('neutral_share'))} | {fmt(neutral_recall(v))} |")
    return "\n".join(lines)


# the tables the docs hold between `<!-- NAME:begin -->` and `<!-- NAME:end -->` lines, generated from the results
# file (python bench/accuracy.py --cached --write-docs); tests/test_docs.py fails when the committed text differs
GENERATED = {"README.md": ("headline",), "docs/results.md": ("accuracy", "recall", "sources")}


def generated(results: dict, name: str) -> str:
    return {"headline": headline, "accuracy": table, "recall": recall_table, "sources": source_table}[name](results)


def fill(text: str, results: dict, names: tuple[str, ...]) -> str:
    """`text` with each generated block replaced by what the results file gives now."""
    import re

    for name in names:
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(\n<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"no <!-- {name}:begin --> ... <!-- {name}:end --> block to fill")
        text = pattern.sub(lambda m: m.group(1) + generated(results, name) + m.group(2), text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cached", action="store_true", help="do not re-evaluate; print the results file")
    p.add_argument("--headline", action="store_true", help="print only the README's table")
    p.add_argument("--write-docs", action="store_true",
                   help="rewrite the generated tables in README.md and docs/results.md from the results file")
    args = p.parse_args()
    if not args.cached:
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "train" / "evaluate.py")], check=True)
    results = json.loads((CHECKPOINT_DIR / "results.json").read_text())
    if args.write_docs:
        for doc, names in GENERATED.items():
            path = ROOT / doc
            path.write_text(fill(path.read_text(), results, names))
            print(f"wrote the {', '.join(names)} table(s) of {doc}")
        return
    if args.headline:
        print(headline(results))
        return
    print(table(results))
    ckpts = results.get("checkpoints", {})
    hosts = sorted({r.get("cpu", "CPU not recorded") for r in ckpts.values()})
    # each model's runtime, and its host where the models were not all timed on one
    runs = sorted(f"{n}: {r.get('precision', '?')} {r.get('runtime', 'eager')}"
                  + (f" on {r.get('cpu', 'CPU not recorded')}" if len(hosts) > 1 else "") for n, r in ckpts.items())
    print("\nms/face measured on: " + "; ".join(hosts) + " (" + ", ".join(runs) + ")")
    print()
    print("Per-class recall (%):")
    print(recall_table(results))
    print()
    print("In the wild, per source (affectnet-hq val; ffhq: 99% of its happiness faces):")
    print(source_table(results))


if __name__ == "__main__":
    main()
