"""Command line: python -m fer_core score|explain|video|join|models ..."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import FerError, UsageError
from .io import display_name


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


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (the same inode where both exist, else the same resolved path)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _same_pair(paths: list) -> tuple[int, int] | None:
    """The positions (i, j), i < j, of the first two of `paths` that name one file, or None."""
    for i, a in enumerate(paths):
        for j in range(i + 1, len(paths)):
            if _same_file(a, paths[j]):
                return i, j
    return None


def refuse_clobber(outputs: dict[str, str | None], inputs: list[str]) -> None:
    """UsageError where an output names an input or another output: no output ever replaces an input (as `cp` will
    not copy a file onto itself)."""
    given = [(flag, out) for flag, out in outputs.items() if out and out != "-"]
    for flag, out in given:
        for inp in inputs:
            if _same_file(out, inp):
                raise UsageError(f"{flag} {display_name(out)} is an input; refusing to overwrite it (give another name)")
    pair = _same_pair([out for _, out in given])
    if pair:
        (flag, out), (other, _) = given[pair[0]], given[pair[1]]
        raise UsageError(f"{flag} and {other} name the same file {display_name(out)}; give two names")


def require_suffix(flag: str, path: str | None, suffixes: tuple[str, ...]) -> None:
    """UsageError unless `path` (when given) ends with one of `suffixes` (case-insensitive)."""
    if path and not path.lower().endswith(suffixes):
        raise UsageError(f"{flag} {display_name(path)}: the name must end with {' or '.join(suffixes)}")


def require_inputs(paths: list[str]) -> None:
    """UsageError for a command-line input that is not there (a typo), before any work: a run that could only write
    error rows for it should not start."""
    for raw in paths:
        if not os.path.exists(raw):
            what = "is a link to nothing" if os.path.islink(raw) else "does not exist"
            raise UsageError(f"{display_name(raw)} {what}")


def _checkpoint_identity(model: str, predictor) -> dict:
    """What a score CSV's rows came from, recorded beside it (`<output>.run.json`) and checked by --resume."""
    import hashlib

    from .checkpoints import resolve_checkpoint

    digest = hashlib.sha256(resolve_checkpoint(model).read_bytes()).hexdigest()[:16]
    return {"model": predictor.name, "checkpoint_sha256": digest, "classes": list(predictor.classes),
            "precision": predictor.precision}


RUN_SUFFIX = ".run.json"  # beside a score CSV: the model, its precision and the options its rows came from


def _check_run_record(output: str, record: dict, resume: bool) -> None:
    """With --resume, refuse a CSV whose recorded model or options differ from this run's; then record this run's."""
    side = Path(output + RUN_SUFFIX)
    if resume and side.is_file():
        try:
            old = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            differ = [k for k in record if k in old and old[k] != record[k]]
            if differ:
                k = differ[0]
                raise UsageError(f"{display_name(output)} holds rows of {k} {old[k]!r}; this run has {record[k]!r}: "
                                 "resume with the same options, or give another --output")
    side.write_text(json.dumps(record, indent=1), encoding="utf-8")


def _resumed(output: str, columns: list[str], items: list) -> tuple[list, set[str]]:
    """--resume: the items still to score and the files already in `output` (resume_csv), said in one line."""
    from .io import resume_csv

    done, redo = resume_csv(output, columns, {i.name for i in items})
    skipped = sum(1 for i in items if i.name in done)
    print(f"resuming {display_name(output)}: {skipped} of {len(items)} file(s) already in it, skipped"
          + (f"; {display_name(redo)} scored again (its rows may have been cut off)" if redo else ""), file=sys.stderr)
    return [i for i in items if i.name not in done], done


def _report_score(output: str | None, rows: int, new_rows: int, resumed: bool, bad: int, faceless: int,
                  notes) -> None:
    """What a finished `score` says on stderr: rows written, rows with an error, files with no face, noted faces."""
    from .scoring import noted_faces

    if output:
        print(f"wrote {rows} rows to {display_name(output)}" + (f" ({new_rows} new)" if resumed else ""),
              file=sys.stderr)
    if bad:
        print(f"{bad} of {rows} rows have an error (see the error column)", file=sys.stderr)
    if faceless:  # most often a face crop too tight, small or odd for the detector
        print(f"{faceless} file(s) with no face found: if they are face crops, rerun with --whole-if-no-face (each "
              "scored whole where no face is found) or --whole-image (every file one face)", file=sys.stderr)
    noted = noted_faces(notes)
    if noted:  # small, cut-off, turned, side-view and unsure faces, crops scored whole
        print(f"faces noted: {noted} (see the note column)", file=sys.stderr)


def cmd_score(args: argparse.Namespace) -> int:
    from collections import Counter

    from .checkpoints import read_spec
    from .io import CsvSink, prepare_output
    from .scoring import NO_FACE, expand, list_inputs, note_counts, parse_shard, score_columns, shard_of

    require_inputs(args.paths)
    output = args.output = None if args.output in (None, "-") else args.output
    refuse_clobber({"--output": output}, args.paths)
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.resume and not output:
        raise UsageError("--resume continues the file given with --output; give one")
    suffix = Path(output).suffix.lower() if output else ""
    if args.engine == "local" and (args.address or args.workers):
        raise UsageError("--address and --workers are for --engine ray")
    if suffix == ".parquet" and args.engine != "ray":
        raise UsageError("Parquet output is written by --engine ray; the local engine writes CSV (.csv)")
    if output and args.engine == "local":
        require_suffix("--output", output, (".csv",))
    to_folder = args.engine == "ray" and bool(output) and suffix not in (".csv", ".parquet")
    if args.resume and (args.engine == "ray"):
        raise UsageError("--resume continues a CSV of the local engine; with --engine ray, use --shard to split a "
                         "long run into parts that can be rerun one by one")
    columns = score_columns(not args.whole_image, read_spec(args.model).classes)
    if output:
        prepare_output(output, folder=to_folder)  # before any work: a bad path fails now, not at the end
    listed = list(list_inputs(args.paths))
    if shard:
        listed = shard_of(listed, *shard)
        print(f"shard {shard[0]}/{shard[1]}: {len(listed)} input(s)", file=sys.stderr)
    if args.engine == "ray":
        return _score_on_ray(args, listed, columns, to_folder)
    from .runtime import load_predictor
    from .scoring import iter_scores

    predictor = load_predictor(args.model, precision=args.precision)
    items = [i for it in listed for i in expand(it)]
    done: set[str] = set()
    if output:
        _check_run_record(output, {**_checkpoint_identity(args.model, predictor), "detector": args.detector,
                                   "whole_image": args.whole_image, "whole_if_no_face": args.whole_if_no_face},
                          args.resume)
        if args.resume:
            items, done = _resumed(output, columns, items)
    if not items and not done:
        print("nothing to score: no image files in " + ", ".join(display_name(p) for p in args.paths), file=sys.stderr)
    if output:
        sink = CsvSink(output, columns, append=args.resume)
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
        where = f" in {display_name(output)}; rerun with --resume to score the rest" if output else ""
        print(f"interrupted: {len(files)} of {len(items)} file(s) done, {rows} row(s) written{where}",
              file=sys.stderr)
        return 130
    bar.close()
    sink.close()
    _report_score(output, rows, sink.rows, bool(done), bad, faceless, notes)
    return 1 if bad or (rows == 0 and not done) else 0


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
    bad = 0

    def write(rows: list[dict]) -> None:
        nonlocal bad
        bad += sum(1 for r in rows if r.get("error"))
        sink.write(rows)

    try:
        counts = engine.score_with_ray([], write_rows=write, **common)
    finally:
        sink.close()
    if args.output:
        print(f"wrote {counts['rows']} rows to {display_name(args.output)}", file=sys.stderr)
    if bad:
        print(f"{bad} of {counts['rows']} rows have an error (see the error column)", file=sys.stderr)
    return 1 if bad or not counts["rows"] else 0


def cmd_explain(args: argparse.Namespace) -> int:
    import cv2

    from .explainers import EXPLAINERS
    from .notes import note_sentence
    from .pipeline import analyze
    from .runtime import load_predictor
    from .io import read_image
    from .overlay import grid, labelled_photo, overlay

    from .io import prepare_output

    from .checkpoints import read_spec

    require_inputs([args.image])
    if not os.path.isfile(args.image):
        raise UsageError(f"{display_name(args.image)} is a folder; explain takes one image (score takes folders)")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError(f"--methods is empty; choose from {', '.join(EXPLAINERS)}")
    for m in methods:
        if m not in EXPLAINERS:
            raise UsageError(f"unknown method {m!r}; choose from {', '.join(EXPLAINERS)}")
    classes = read_spec(args.model).classes
    target = None
    if args.target is not None:
        target = args.target.strip().lower()
        if target not in classes:
            raise UsageError(f"--target {args.target!r} is not a class of {args.model}; choose from {', '.join(classes)}")
    refuse_clobber({"--out": args.out}, [args.image])
    predictor = load_predictor(args.model, precision=args.precision)
    layers = list(predictor.model.explain_layers())
    if args.layer is not None and args.layer not in layers:
        raise UsageError(f"--layer {args.layer!r} is not a layer of {predictor.name}; choose from {', '.join(layers)}")
    out = prepare_output(args.out, folder=True)  # before any work
    # every face of the photo (the library's analyze keeps MAX_FACES by default; a command line run asks for all)
    results = analyze(
        args.image, predictor=predictor, methods=methods, target=target, layer=args.layer,
        whole_image=args.whole_image, faithfulness=not args.no_scores, road=args.road, max_faces=None,
    )
    stem = Path(args.image).stem
    report = {"image": display_name(args.image), "model": predictor.name, "classes": list(predictor.classes), "faces": []}
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
    print(f"{len(results)} face(s); wrote PNGs and {display_name(stem)}.json to {display_name(out)}", file=sys.stderr)
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from .io import CsvSink, prepare_output
    from .scoring import parse_shard
    from .checkpoints import read_spec
    from .video import analyze_video, check_options, face_summary, timeline_columns

    try:
        shard = parse_shard(args.shard) if args.shard else (0, 1)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.engine == "local" and (args.address or args.workers or args.segments):
        raise UsageError("--address, --workers and --segments are for --engine ray")
    if args.engine == "ray" and (args.out or args.overlay != "none" or args.shard):
        raise UsageError("--engine ray writes the timeline (--csv); the annotated video (--out, --overlay) and "
                         "--shard are for the local engine")
    require_inputs([args.input])
    if os.path.isdir(args.input):
        raise UsageError(f"{display_name(args.input)} is a folder; video takes one video file")
    refuse_clobber({"--out": args.out, "--csv": args.csv}, [args.input])
    require_suffix("--out", args.out, (".mp4",))
    require_suffix("--csv", args.csv, (".csv",))
    if args.max_duration is not None and args.max_duration <= 0:
        raise UsageError("--max-duration must be a positive number of seconds")
    check_options(args.every, args.smooth)
    for path in (args.out, args.csv):  # before any work
        if path:
            prepare_output(path)
    if args.engine == "ray":
        engine = _ray_engine()
        sink = CsvSink(args.csv, timeline_columns(read_spec(args.model).classes)) if args.csv else None
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
    from .labels import KNOWN_CLASS_LISTS
    from .video import TimelineJoiner, timeline_columns

    require_inputs(args.parts)
    refuse_clobber({"--output": args.output}, args.parts)
    require_suffix("--output", args.output, (".csv",))
    pair = _same_pair(args.parts)
    if pair:
        raise UsageError(f"{display_name(args.parts[pair[0]])} is given twice; each segment's timeline once")
    prepare_output(args.output)
    known = {tuple(timeline_columns(c)): c for c in KNOWN_CLASS_LISTS}
    parts, header = [], None
    for path in args.parts:
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                fields = tuple(reader.fieldnames or ())
                if fields not in known:
                    raise UsageError(f"{display_name(path)} is not a timeline CSV of fer video (its columns differ)")
                if header is not None and fields != header:
                    raise UsageError(f"{display_name(path)} has other classes than {display_name(args.parts[0])}: "
                                     "timelines of one model only")
                header = fields
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UsageError(f"{display_name(path)} cannot be read: {exc}") from None
        for line, r in enumerate(rows, start=2):
            if any(r.get(c) in (None, "") for c in ("frame", "face", *known[fields], "prediction", "confidence")):
                raise UsageError(f"{display_name(path)}:{line}: an incomplete row (a cut-off part?); rerun that segment")
        try:
            frames = [int(r["frame"]) for r in rows]
        except ValueError:
            raise UsageError(f"{display_name(path)}: a frame number is not a whole number: not a timeline of "
                             "fer video") from None
        parts.append((path, rows, frames))
    parts.sort(key=lambda p: min(p[2]) if p[2] else -1)  # in time order, whatever order given
    spans = [(path, min(f), max(f)) for path, _, f in parts if f]
    for (a, _, a_end), (b, b_start, _) in zip(spans, spans[1:]):
        if b_start <= a_end:
            raise UsageError(f"{display_name(a)} and {display_name(b)} overlap (frames up to {a_end} and from "
                             f"{b_start}): segments of one clip, each once")
    frames = [f for _, _, fs in parts for f in fs]
    every = args.every if args.every else (max(1, gcd(*frames)) if frames else 1)
    joiner = TimelineJoiner(every=every)
    sink = CsvSink(args.output, list(header or timeline_columns()))
    try:
        for _, rows, _ in parts:
            sink.write(joiner.add(rows))
    finally:
        sink.close()
    print(f"wrote {sink.rows} rows of {joiner.next_id - 1} face(s) from {len(parts)} segment(s) to "
          f"{display_name(args.output)}", file=sys.stderr)
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
    bad = 0
    for name in list_checkpoints():
        try:
            spec = read_spec(name)
        except FerError as exc:
            print(f"  {name:16s} not readable: {exc}")
            bad += 1
            continue
        r = results.get(name, {})
        parts = []
        for ds in ("raf-db", "fer2013"):
            if ds in r:
                parts.append(f"{ds} acc {r[ds]['accuracy']:.1%} F1 {r[ds]['macro_f1']:.3f}")
        val = spec.metrics.get("val_macro_f1")
        parts.append(f"val F1 {val:.3f}" if val is not None else "no validation metrics")
        classes = "six emotions" if len(spec.classes) == 6 else f"{len(spec.classes)} classes ({spec.classes[-1]} added)"
        print(f"  {name:16s} arch={spec.arch:14s} {classes}; {'; '.join(parts)}")
    return 1 if bad else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoints import resolve_checkpoint
    from .io import prepare_output
    from .onnx_runtime import export_onnx, read_onnx

    require_suffix("--onnx", args.onnx, (".onnx",))
    source = resolve_checkpoint(args.model)
    refuse_clobber({"--onnx": args.onnx}, [str(source)])
    prepare_output(args.onnx)
    tmp = Path(args.onnx).with_name(f".{Path(args.onnx).stem}.partial.onnx")  # whole, or not there
    try:
        export_onnx(source, tmp, int8=args.int8, samples=args.samples)
        os.replace(tmp, args.onnx)
    finally:
        tmp.unlink(missing_ok=True)
    _, spec, precision = read_onnx(args.onnx)
    print(f"wrote {display_name(args.onnx)} ({Path(args.onnx).stat().st_size / 1e6:.1f} MB, {precision}, "
          f"{len(spec.classes)} classes, input {spec.input_size} px; FER_RUNTIME=onnx FER_ONNX_MODEL={args.onnx} "
          "predicts with it)", file=sys.stderr)
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    from .device import PRECISIONS
    from .runtime import DEFAULT_CHECKPOINT

    p.add_argument("--model", default=DEFAULT_CHECKPOINT, help="checkpoint name in checkpoints/ or a path")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="inference precision (default auto, as the app: the int8 copy of a calibrated checkpoint, "
                        "else bfloat16 where the CPU has native bf16, else float32; int8: only the int8 copy; "
                        "env FER_PRECISION overrides auto)")


class _Parser(argparse.ArgumentParser):
    """argparse with one line for a usage mistake (exit 2), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (1 or more)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not from 0 to 1")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fer", description="Facial emotion recognition with explanations. Exit codes: 0 every input "
                "done; 1 some input failed or nothing was scored (see the error column or message); 2 a usage "
                "mistake (nothing was done); 130 interrupted; 141 the output pipe was closed.")
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
    s.add_argument("--batch-size", type=_positive_int, default=64, help="faces per forward pass (1 or more)")
    s.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process; ray: Ray Data actors (a local Ray, or the cluster at --address), "
                        "the same rows (needs pip install 'ray[data]')")
    s.add_argument("--address", default=None, help="with --engine ray: join this Ray cluster (e.g. auto, "
                   "ray://head:10001); default: start a local Ray on this machine")
    s.add_argument("--workers", type=_positive_int, default=None,
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
    e.add_argument("--methods", default="gradcam,integrated_gradients,occlusion",
                   help="comma-separated methods (default: the app's starting three, which never repeat a map)")
    e.add_argument("--target", default=None, help="class to explain (default: the prediction)")
    e.add_argument("--layer", default=None, help="layer for layer-based methods (default: the model's own)")
    e.add_argument("--whole-image", action="store_true", help="treat the image as one face crop")
    e.add_argument("--alpha", type=_unit_float, default=0.5, help="overlay opacity (0 to 1)")
    e.add_argument("--no-scores", action="store_true", help="skip the faithfulness scores (faster)")
    e.add_argument("--road", action="store_true", help="also compute ROAD (slow: seconds per map)")
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(func=cmd_explain)

    v = sub.add_parser("video", help="per-frame emotions of a video: annotated mp4 and a timeline CSV")
    v.add_argument("input", help="video file (mp4, avi, mov, webm, ...)")
    _model_args(v)
    v.add_argument("--out", default=None, help="annotated video to write (.mp4)")
    v.add_argument("--csv", default=None, help="timeline CSV to write, row by row as frames are analysed")
    v.add_argument("--every", type=_positive_int, default=1, help="analyse every Nth frame")
    v.add_argument("--overlay", default="none", choices=["none", "gradcam"], help="draw a Grad-CAM overlay")
    v.add_argument("--smooth", type=_number, default=0.0, help="exponential smoothing of probabilities (0..0.95)")
    v.add_argument("--max-duration", type=_number, default=None, metavar="S",
                   help="refuse clips longer than S seconds (default: any length)")
    v.add_argument("--shard", default=None, metavar="i/N",
                   help="analyse only time segment i of N (0-based; borders on analysed frames), for a job array; "
                        "frame numbers and times stay the clip's; python -m fer_core join makes the N timelines one")
    v.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="ray: the clip cut into time segments analysed by Ray workers and joined into one timeline "
                        "(needs pip install 'ray[data]')")
    v.add_argument("--address", default=None, help="with --engine ray: join this Ray cluster (default: a local Ray)")
    v.add_argument("--workers", type=_positive_int, default=None, help="with --engine ray: workers (default: one per CPU)")
    v.add_argument("--segments", type=_positive_int, default=None,
                   help="with --engine ray: time segments (default: one per worker)")
    v.set_defaults(func=cmd_video)

    j = sub.add_parser("join", help="one timeline from the timeline CSVs of video --shard 0/N ... N-1/N")
    j.add_argument("parts", nargs="+", help="the segments' timeline CSVs (any order: sorted by their frames)")
    j.add_argument("--output", "-o", required=True, help="the joined timeline CSV")
    j.add_argument("--every", type=_positive_int, default=None,
                   help="the --every of the video runs (default: read from the frame numbers)")
    j.set_defaults(func=cmd_join)

    _add_export_and_models(sub)
    return p


def _add_export_and_models(sub) -> None:
    """The `export` and `models` subcommands of build_parser."""
    x = sub.add_parser("export", help="a checkpoint as an ONNX model (float32, or int8 by ONNX Runtime)")
    x.add_argument("model", help="checkpoint name in checkpoints/ or a path")
    x.add_argument("--onnx", required=True, help="the .onnx file to write (the spec travels in its metadata)")
    x.add_argument("--int8", action="store_true",
                   help="quantise with ONNX Runtime's static quantisation, activation ranges from the checkpoint's "
                        "own training faces (needs its datasets; never a test face)")
    x.add_argument("--samples", type=_positive_int, default=512, help="with --int8: training faces for the ranges")
    x.set_defaults(func=cmd_export)

    m = sub.add_parser("models", help="list architectures and checkpoints with their metrics")
    m.set_defaults(func=cmd_models)


def _check_environment() -> None:
    """The environment variables a user can set, checked before any work (UsageError naming the allowed values)."""
    from .device import PRECISIONS

    from .onnx_runtime import requested_runtime

    value = os.environ.get("FER_PRECISION")
    if value is not None and value not in PRECISIONS:
        raise UsageError(f"FER_PRECISION={value!r}: choose from {', '.join(PRECISIONS)}")
    requested_runtime()  # FER_RUNTIME


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_environment()
        return args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fer score ... | head`: the reader has what it wanted; end quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would fail on the closed pipe again
        return 141
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback, unless asked for
        if os.environ.get("FER_DEBUG"):
            raise
        print(f"error: an unexpected failure ({type(exc).__name__}: {exc}); FER_DEBUG=1 shows where", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
