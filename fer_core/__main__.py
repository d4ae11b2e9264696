"""Command line: python -m fer_core score|explain|video|join|models ..."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import FerError, UsageError


def _progress_bar(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=None)


def _ray_engine():
    """fer_core.engines.ray, or a UsageError naming what to install when Ray is not installed."""
    try:
        from .engines import ray as engine
    except ImportError as exc:
        raise UsageError(f"--engine ray needs Ray ({exc.name} is not installed): pip install 'ray[data]' "
                         "(or pip install -e '.[ray]')") from None
    return engine


def cmd_score(args: argparse.Namespace) -> int:
    from collections import Counter

    from .io import CsvSink, prepare_output, resume_csv
    from .scoring import NO_FACE, expand, list_inputs, note_counts, noted_faces, parse_shard, score_columns, shard_of

    columns = score_columns(not args.whole_image)
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.resume and not args.output:
        raise UsageError("--resume continues the file given with --output; give one")
    suffix = Path(args.output).suffix.lower() if args.output else ""
    if args.engine == "local" and (args.address or args.workers):
        raise UsageError("--address and --workers are for --engine ray")
    if suffix == ".parquet" and args.engine != "ray":
        raise UsageError("Parquet output is written by --engine ray; the local engine writes CSV (.csv)")
    to_folder = args.engine == "ray" and bool(args.output) and suffix not in (".csv", ".parquet")
    if args.resume and (args.engine == "ray"):
        raise UsageError("--resume continues a CSV of the local engine; with --engine ray, use --shard to split a "
                         "long run into parts that can be rerun one by one")
    done: set[str] = set()
    if args.output:
        prepare_output(args.output, folder=to_folder)  # before any work: a bad path fails now, not at the end
        if args.resume:
            done = resume_csv(args.output, columns)
    listed = list(list_inputs(args.paths))
    if shard:
        listed = shard_of(listed, *shard)
        print(f"shard {shard[0]}/{shard[1]}: {len(listed)} input(s)", file=sys.stderr)
    if args.engine == "ray":
        return _score_on_ray(args, listed, columns, to_folder)
    from .runtime import load_predictor
    from .scoring import iter_scores

    predictor = load_predictor(args.model, precision=args.precision)
    items = [i for it in listed for i in expand(it) if i.name not in done]
    if done:
        print(f"resuming: {len(done)} file(s) already in {args.output} skipped", file=sys.stderr)
    if args.output:
        sink = CsvSink(args.output, columns, append=args.resume)
    else:
        sink = CsvSink.to_stream(sys.stdout, columns)
    bar = _progress_bar(len(items), "scoring")
    rows = bad = faceless = 0
    files: set[str] = set()
    notes: Counter = Counter()
    try:
        for part in iter_scores(
            items, predictor, whole_image=args.whole_image, detector=args.detector, batch_size=args.batch_size,
            progress=lambda n, name: bar.update(1), whole_if_no_face=args.whole_if_no_face,
        ):
            sink.write(part)
            rows += len(part)
            files.update(r["filepath"] for r in part)
            bad += sum(1 for r in part if r.get("error"))
            faceless += sum(1 for r in part if r.get("error") == NO_FACE)
            notes += note_counts(part)
    except KeyboardInterrupt:
        bar.close()
        sink.close()
        where = f" in {args.output}; rerun with --resume to score the rest" if args.output else ""
        print(f"interrupted: {len(files)} of {len(items)} file(s) done, {rows} row(s) written{where}",
              file=sys.stderr)
        return 130
    bar.close()
    sink.close()
    if args.output:
        print(f"wrote {rows} rows to {args.output}" + (f" ({sink.rows} new)" if done else ""), file=sys.stderr)
    if bad:
        print(f"{bad} of {rows} rows have an error (see the error column)", file=sys.stderr)
    if faceless:  # most often a face crop too tight, small or odd for the detector
        print(f"{faceless} file(s) with no face found: if they are face crops, rerun with --whole-if-no-face (each "
              "scored whole where no face is found) or --whole-image (every file one face)", file=sys.stderr)
    noted = noted_faces(notes)
    if noted:  # small, cut-off, turned, side-view and unsure faces, crops scored whole
        print(f"faces noted: {noted} (see the note column)", file=sys.stderr)
    return 0


def _score_on_ray(args: argparse.Namespace, listed: list, columns: list[str], to_folder: bool) -> int:
    engine = _ray_engine()
    from .io import CsvSink

    common = dict(output=args.output, model=args.model, precision=args.precision, address=args.address,
                  workers=args.workers, whole_image=args.whole_image, whole_if_no_face=args.whole_if_no_face,
                  detector=args.detector, batch_size=args.batch_size, items=listed)
    if to_folder:
        counts = engine.score_with_ray([], **common)
        print(f"wrote the rows of {counts['files']} input(s) to {args.output}/ (one file per block)", file=sys.stderr)
        return 0
    if args.output and args.output.lower().endswith(".parquet"):
        sink = engine.ParquetSink(args.output, columns)
    elif args.output:
        sink = CsvSink(args.output, columns)
    else:
        sink = CsvSink.to_stream(sys.stdout, columns)
    try:
        counts = engine.score_with_ray([], write_rows=sink.write, **common)
    finally:
        sink.close()
    if args.output:
        print(f"wrote {counts['rows']} rows to {args.output}", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    import cv2

    from .explain import EXPLAINERS
    from .notes import note_sentence
    from .pipeline import analyze
    from .runtime import load_predictor
    from .io import read_image
    from .overlay import grid, labelled_photo, overlay

    from .io import prepare_output

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in EXPLAINERS:
            raise UsageError(f"unknown method {m!r}; choose from {', '.join(EXPLAINERS)}")
    out = prepare_output(args.out, folder=True)  # before any work
    predictor = load_predictor(args.model, precision=args.precision)
    results = analyze(
        args.image, predictor=predictor, methods=methods, target=args.target, layer=args.layer,
        whole_image=args.whole_image, faithfulness=not args.no_scores, road=args.road,
    )
    stem = Path(args.image).stem
    report = {"image": str(args.image), "model": predictor.name, "classes": list(predictor.classes), "faces": []}
    for r in results:
        tag = f"{stem}_face{r.index + 1}"
        for m, cam in r.maps.items():
            cv2.imwrite(str(out / f"{tag}_{m}.png"), cv2.cvtColor(overlay(r.face, cam, alpha=args.alpha), cv2.COLOR_RGB2BGR))
        titles = {m: f"{EXPLAINERS[m].label}" for m in r.maps}
        g = grid(r.face, r.maps, titles=titles, alpha=args.alpha,
                 header=f"face {r.index + 1}: {r.prediction} {r.confidence:.0%} (explaining {r.target})")
        cv2.imwrite(str(out / f"{tag}_grid.png"), cv2.cvtColor(g, cv2.COLOR_RGB2BGR))
        report["faces"].append({
            "face": r.index + 1,
            "box": list(r.box.as_tuple()) if r.box else None,
            "probs": {c: float(p) for c, p in zip(predictor.classes, r.probs)},
            "prediction": r.prediction, "confidence": r.confidence, "target": r.target,
            "crop_px": round(r.source_side, 1), "notes": r.notes, "scores": r.scores, "regions": r.regions,
            "not_available": r.errors,
        })
        for m, why in r.errors.items():
            print(f"face {r.index + 1}: {m} not available: {why}", file=sys.stderr)
        for label in r.notes:
            print(f"face {r.index + 1}: {note_sentence(label, r.source_side)}", file=sys.stderr)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    if any(r.box is not None for r in results):  # the photo with every face's box and answer
        labelled = labelled_photo(read_image(args.image), results)
        cv2.imwrite(str(out / f"{stem}_labelled.png"), cv2.cvtColor(labelled, cv2.COLOR_RGB2BGR))
    print(f"{len(results)} face(s); wrote PNGs and {stem}.json to {out}", file=sys.stderr)
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from .io import CsvSink, prepare_output
    from .scoring import parse_shard
    from .video import TIMELINE_COLUMNS, analyze_video, face_summary

    try:
        shard = parse_shard(args.shard) if args.shard else (0, 1)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.engine == "local" and (args.address or args.workers or args.segments):
        raise UsageError("--address, --workers and --segments are for --engine ray")
    if args.engine == "ray" and (args.out or args.overlay != "none" or args.shard):
        raise UsageError("--engine ray writes the timeline (--csv); the annotated video (--out, --overlay) and "
                         "--shard are for the local engine")
    for path in (args.out, args.csv):  # before any work
        if path:
            prepare_output(path)
    if args.engine == "ray":
        engine = _ray_engine()
        sink = CsvSink(args.csv, TIMELINE_COLUMNS) if args.csv else None
        rows: list[dict] = []
        bar = _progress_bar(None, "segments")

        def take(part: list[dict], done: int, total: int) -> None:
            rows.extend(part)
            if sink is not None:
                sink.write(part)
            bar.total, bar.n = total, done
            bar.refresh()

        try:
            summary = engine.analyze_video_with_ray(
                args.input, model=args.model, precision=args.precision, address=args.address, workers=args.workers,
                segments=args.segments, every=args.every, smooth=args.smooth, max_duration_s=args.max_duration,
                write_rows=take)
        finally:
            bar.close()
            if sink is not None:
                sink.close()
    else:
        from .runtime import load_predictor

        predictor = load_predictor(args.model, precision=args.precision)
        bar = _progress_bar(None, "frames")

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        summary = analyze_video(
            args.input, predictor=predictor, out_video=args.out, out_csv=args.csv, every=args.every,
            overlay=args.overlay, smooth=args.smooth, progress=progress, segment=shard,
            max_duration_s=args.max_duration, max_frames=None,
        )
        bar.close()
        rows = summary.pop("rows")  # one per face per analysed frame: the --csv timeline, not the terminal's
    summary["per_face"] = face_summary(rows)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    import csv
    from math import gcd

    from .io import CsvSink, prepare_output
    from .video import TIMELINE_COLUMNS, TimelineJoiner

    prepare_output(args.output)
    parts = []
    for path in args.parts:
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames != TIMELINE_COLUMNS:
                    raise UsageError(f"{path} is not a timeline CSV of python -m fer_core video (its columns differ)")
                parts.append(list(reader))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UsageError(f"{path} cannot be read: {exc}") from None
    parts.sort(key=lambda rows: int(rows[0]["frame"]) if rows else 0)  # in time order, whatever order given
    try:
        frames = [int(r["frame"]) for rows in parts for r in rows]
    except ValueError:
        raise UsageError("a frame number is not a whole number: the CSVs are not timelines of fer_core video") from None
    every = args.every if args.every else (max(1, gcd(*frames)) if frames else 1)
    joiner = TimelineJoiner(every=every)
    sink = CsvSink(args.output, TIMELINE_COLUMNS)
    try:
        for rows in parts:
            sink.write(joiner.add(rows))
    finally:
        sink.close()
    print(f"wrote {sink.rows} rows of {joiner.next_id - 1} face(s) from {len(parts)} segment(s) to {args.output}",
          file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .checkpoints import CHECKPOINT_DIR, list_checkpoints, read_spec
    from .models import MODEL_NOTES, count_parameters, create_model, list_models

    print("architectures:")
    for name in list_models():
        print(f"  {name:16s} {count_parameters(create_model(name)) / 1e6:6.2f}M  {MODEL_NOTES[name]}")
    print(f"checkpoints in {CHECKPOINT_DIR}:")
    results = {}
    rp = CHECKPOINT_DIR / "results.json"
    if rp.is_file():
        results = json.loads(rp.read_text()).get("checkpoints", {})
    for name in list_checkpoints():
        spec = read_spec(name)
        r = results.get(name, {})
        parts = []
        for ds in ("raf-db", "fer2013"):
            if ds in r:
                parts.append(f"{ds} acc {r[ds]['accuracy']:.1%} F1 {r[ds]['macro_f1']:.3f}")
        val = spec.metrics.get("val_macro_f1")
        parts.append(f"val F1 {val:.3f}" if val is not None else "no validation metrics")
        print(f"  {name:16s} arch={spec.arch:14s} {'; '.join(parts)}")
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    from .device import PRECISIONS
    from .runtime import DEFAULT_CHECKPOINT

    p.add_argument("--model", default=DEFAULT_CHECKPOINT, help="checkpoint name in checkpoints/ or a path")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="inference precision (default auto, as the app: the int8 copy of a calibrated checkpoint, "
                        "else bfloat16 where the CPU has native bf16, else float32; int8: only the int8 copy; "
                        "env FER_PRECISION overrides auto)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_core", description="Facial emotion recognition with explanations")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="table of classification scores for images, folders and zips")
    s.add_argument("paths", nargs="+", help="image files, folders (recursive) or .zip archives")
    _model_args(s)
    s.add_argument("--whole-image", action="store_true", help="treat each image as one face crop (no detection)")
    s.add_argument("--whole-if-no-face", action="store_true",
                   help="score an image in which no face is found as one whole-image face (its note says so) "
                        "instead of a 'no face found' error row: for folders of face crops")
    s.add_argument("--output", "-o", help="CSV file to write, row by row as files are scored; with --engine ray also "
                   "a .parquet file, or a folder that Ray fills with one CSV per block (default: standard "
                                          "output); its folder is created")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: the files already in --output are skipped, the rest appended")
    s.add_argument("--batch-size", type=int, default=64, help="faces per forward pass")
    s.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: Ray Data actors (a local Ray, or the cluster at --address), "
                        "the same rows (needs pip install 'ray[data]')")
    s.add_argument("--address", default=None, help="with --engine ray: join this Ray cluster (e.g. auto, "
                   "ray://head:10001); default: start a local Ray on this machine")
    s.add_argument("--workers", type=int, default=None,
                   help="with --engine ray: scoring actors, each with its own model copy (default: one per CPU)")
    s.add_argument("--shard", default=None, metavar="i/N",
                   help="score only shard i of N (0-based): a contiguous block of the inputs in their listed order, "
                        "for a job array (SLURM --array, one copy per task); the N CSVs joined in order, headers "
                        "dropped, are the unsharded CSV")
    s.add_argument("--detector", default="auto", choices=["auto", "yunet", "haar"], help="face detector")
    s.set_defaults(func=cmd_score)

    e = sub.add_parser("explain", help="explanation maps, a grid and a JSON report for every face in an image")
    e.add_argument("image", help="an image file")
    _model_args(e)
    e.add_argument("--methods", default="gradcam,cam,occlusion", help="comma-separated methods")
    e.add_argument("--target", default=None, help="class to explain (default: the prediction)")
    e.add_argument("--layer", default=None, help="layer for layer-based methods (default: the model's own)")
    e.add_argument("--whole-image", action="store_true", help="treat the image as one face crop")
    e.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    e.add_argument("--no-scores", action="store_true", help="skip the faithfulness scores (faster)")
    e.add_argument("--road", action="store_true", help="also compute ROAD (slow: seconds per map)")
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(func=cmd_explain)

    v = sub.add_parser("video", help="per-frame emotions of a video: annotated mp4 and a timeline CSV")
    v.add_argument("input", help="video file (mp4, avi, mov, webm, ...)")
    _model_args(v)
    v.add_argument("--out", default=None, help="annotated video to write (.mp4)")
    v.add_argument("--csv", default=None, help="timeline CSV to write, row by row as frames are analysed")
    v.add_argument("--every", type=int, default=1, help="analyse every Nth frame")
    v.add_argument("--overlay", default="none", choices=["none", "gradcam"], help="draw a Grad-CAM overlay")
    v.add_argument("--smooth", type=float, default=0.0, help="exponential smoothing of probabilities (0..0.95)")
    v.add_argument("--max-duration", type=float, default=None, metavar="S",
                   help="refuse clips longer than S seconds (default: any length)")
    v.add_argument("--shard", default=None, metavar="i/N",
                   help="analyse only time segment i of N (0-based; borders on analysed frames), for a job array; "
                        "frame numbers and times stay the clip's; python -m fer_core join makes the N timelines one")
    v.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="ray: the clip cut into time segments analysed by Ray workers and joined into one timeline "
                        "(needs pip install 'ray[data]')")
    v.add_argument("--address", default=None, help="with --engine ray: join this Ray cluster (default: a local Ray)")
    v.add_argument("--workers", type=int, default=None, help="with --engine ray: workers (default: one per CPU)")
    v.add_argument("--segments", type=int, default=None,
                   help="with --engine ray: time segments (default: one per worker)")
    v.set_defaults(func=cmd_video)

    j = sub.add_parser("join", help="one timeline from the timeline CSVs of video --shard 0/N ... N-1/N")
    j.add_argument("parts", nargs="+", help="the segments' timeline CSVs (any order: sorted by their frames)")
    j.add_argument("--output", "-o", required=True, help="the joined timeline CSV")
    j.add_argument("--every", type=int, default=None,
                   help="the --every of the video runs (default: read from the frame numbers)")
    j.set_defaults(func=cmd_join)

    m = sub.add_parser("models", help="list architectures and checkpoints with their metrics")
    m.set_defaults(func=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
