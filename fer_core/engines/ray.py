"""Bulk scoring on Ray Data: the same rows as the local engine, from any number of machines; and a long video cut
into time segments analysed by Ray tasks, joined into one timeline.

The inputs are listed here (fer_core.scoring.list_inputs: the same files, order and listing errors as locally), read
by `ray.data.read_binary_files`, and scored by `map_batches` on a pool of actors, each loading the predictor and the
detector once (`_Scorer`) and running the local engine's own per-batch code (`score_items`) on its files, so zips,
HEIC, EXIF orientation and error rows behave as they do locally. Ray streams blocks with back-pressure, so memory stays
bounded whatever the number of files.

Output: a `.csv` or `.parquet` file is gathered in input order on this machine, row by row as blocks finish (equal to
the local engine's file); a folder (no suffix) is written by Ray itself, one file per block, from the workers
(`write_csv`, one CSV per block; row order across files is not kept).

Only `python -m fer_core score --engine ray` imports this module; the local engine never imports Ray.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pandas as pd

from ..scoring import ImageItem, expand, list_inputs, score_columns, score_items

ORDER = "_order"  # the listing position of a row's file: rows are put back in input order by it


class _Scorer:
    """A Ray actor: one predictor (and detector) for every batch it is given."""

    def __init__(self, model: str, precision: str | None, columns: list[str], names: dict[str, tuple[int, str]],
                 options: dict, threads: int) -> None:
        import torch

        from ..runtime import load_predictor

        torch.set_num_threads(threads)
        self.predictor = load_predictor(model, precision=precision)
        self.columns, self.names, self.options = columns, names, options

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for path, data in zip(batch["path"], batch["bytes"]):
            order, name = self.names[_key(path)]
            items = list(expand(ImageItem(name, bytes(data))))
            for row in score_items(items, self.predictor, **self.options):
                if row.get("error") and row["filepath"] == name:  # a file read here as bytes: named as locally
                    row["error"] = _named(row["error"], Path(name).name)
                rows.append({**{c: row.get(c) for c in self.columns}, ORDER: order})
        # object columns: a box column keeps Python ints beside an error row's None (Arrow: int64 with nulls)
        return pd.DataFrame(rows, columns=[*self.columns, ORDER], dtype=object)


def _named(error: str, name: str) -> str:
    """read_image's message for bytes ("the data is ...", "the file is empty ...") as it says it for a file on disk."""
    for anonymous in ("the data ", "the file "):
        if error.startswith(anonymous):
            return name + " " + error[len(anonymous):]
    return error


def _key(path: str) -> str:
    """A file's identity as Ray reports it and as listed here (Ray may drop a scheme or make it absolute)."""
    return os.path.realpath(str(path).removeprefix("local://"))


def score_with_ray(
    paths: list[str], *, output: str | None, model: str, precision: str | None = None, address: str | None = None,
    workers: int | None = None, threads: int = 1, whole_image: bool = False, whole_if_no_face: bool = False,
    detector: str = "auto", batch_size: int = 64, files_per_batch: int = 16, items: list[ImageItem] | None = None,
    write_rows: Callable[[list[dict]], None] | None = None,
) -> dict:
    """Score `paths` (or the listed `items`) on Ray: a local Ray with `workers` actors when `address` is None, else
    the cluster at `address`. With `write_rows`, rows are handed to it in input order, a list at a time (the CLI's
    CsvSink); else with `output` a folder, Ray writes one CSV per block there. Returns counts."""
    import ray

    from ..checkpoints import read_spec

    columns = score_columns(not whole_image, read_spec(model).classes)
    listed = items if items is not None else list(list_inputs(paths))
    readable = [(k, it) for k, it in enumerate(listed) if not it.error]
    errors = [(k, {"filepath": it.name, "error": it.error}) for k, it in enumerate(listed) if it.error]
    if not ray.is_initialized():
        # a local Ray: one CPU slot per actor thread, and one more for the tasks that read the files (with every slot
        # held by an actor, the reads would wait for ever)
        ray.init(address=address, num_cpus=None if address else (workers or os.cpu_count()) * threads + 1,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # blocks come back in input order: the gathered file is the local one
    names = {_key(it.data): (k, it.name) for k, it in readable}
    options = {"whole_image": whole_image, "whole_if_no_face": whole_if_no_face, "detector": detector,
               "batch_size": batch_size}
    n_workers = workers or max(1, int((ray.cluster_resources().get("CPU", 2) - 1) // threads))
    scored = 0
    if readable:
        ds = ray.data.read_binary_files([str(it.data) for _, it in readable], include_paths=True,
                                        override_num_blocks=max(1, min(len(readable), 4 * n_workers)))
        ds = ds.map_batches(_Scorer, batch_size=files_per_batch, batch_format="pandas", num_cpus=threads,
                            concurrency=n_workers,
                            fn_constructor_kwargs={"model": str(model), "precision": precision, "columns": columns,
                                                   "names": names, "options": options, "threads": threads})
    else:
        ds = None
    if write_rows is None:  # a folder, written by Ray from the workers
        frames = [pd.DataFrame([{**{c: r.get(c) for c in columns}, ORDER: k} for k, r in errors],
                               columns=[*columns, ORDER], dtype=object)] if errors else []
        if ds is None:
            ds = ray.data.from_pandas(frames[0])
        elif frames:
            ds = ds.union(ray.data.from_pandas(frames[0]))
        ds = ds.drop_columns([ORDER])
        Path(output).mkdir(parents=True, exist_ok=True)
        ds.write_csv(str(output))
        return {"files": len(listed), "listing_errors": len(errors)}
    pending = iter(errors)
    nxt = next(pending, None)
    for batch in (ds.iter_batches(batch_format="pyarrow", batch_size=None) if ds is not None else ()):
        part = []
        for row in batch.to_pylist():
            while nxt is not None and nxt[0] < row[ORDER]:
                part.append(nxt[1])
                nxt = next(pending, None)
            part.append({c: _cell(row.get(c)) for c in columns})
        scored += len(part)
        write_rows(part)
    rest = ([nxt[1]] if nxt else []) + [r for _, r in pending]
    if rest:
        write_rows(rest)
    return {"files": len(listed), "listing_errors": len(errors), "rows": scored + len(rest)}


def _cell(v):
    """An Arrow value as the local engine writes it: a missing value as an empty cell."""
    return "" if v is None else v


INT_COLUMNS = {"face", "x", "y", "w", "h"}
TEXT_COLUMNS = {"filepath", "prediction", "note", "error"}


class ParquetSink:
    """Rows appended to one Parquet file as they come (pyarrow's ParquetWriter, one row group a call); empty cells
    are nulls. The gathered-file twin of fer_core.io.CsvSink for `--output scores.parquet`."""

    def __init__(self, path: str | os.PathLike, columns: list[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.columns, self.rows = columns, 0
        self.schema = pa.schema([(c, pa.string() if c in TEXT_COLUMNS else pa.int64() if c in INT_COLUMNS
                                  else pa.float64()) for c in columns])
        self._pa, self._writer = pa, pq.ParquetWriter(str(path), self.schema)

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        data = {c: [None if r.get(c, "") == "" else r[c] for r in rows] for c in self.columns}
        self._writer.write_table(self._pa.table(data, schema=self.schema))
        self.rows += len(rows)

    def close(self) -> None:
        self._writer.close()


def _analyse_segment(video: str | bytes, suffix: str, k: int, count: int, model: str, precision: str | None,
                     options: dict, threads: int) -> tuple[list[dict], dict]:
    """A Ray task: time segment k of `count` of a clip (a path this machine reads, or the clip's bytes)."""
    import tempfile

    import torch

    from ..runtime import load_predictor
    from ..video import analyze_video

    torch.set_num_threads(threads)
    predictor = load_predictor(model, precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(video, bytes):
            path = Path(tmp) / f"clip{suffix}"
            path.write_bytes(video)
        else:
            path = video
        summary = analyze_video(path, predictor=predictor, segment=(k, count), max_frames=None, **options)
    return summary.pop("rows"), summary


def analyze_video_with_ray(
    path: str | os.PathLike, *, model: str, precision: str | None = None, address: str | None = None,
    workers: int | None = None, segments: int | None = None, threads: int = 1, every: int = 1, smooth: float = 0.0,
    max_duration_s: float | None = None, write_rows: Callable[[list[dict], int, int], None] | None = None,
) -> dict:
    """A clip cut into `segments` time segments (borders on analysed frames), each analysed by a Ray task with its own
    model, and their timelines joined into the clip's (fer_core.video.TimelineJoiner: a face seen across a border
    keeps its id; smoothing restarts at each border). A local Ray reads the file where it is; with `address` the
    clip's bytes go to the cluster through Ray's object store. `write_rows(rows, segments_done, segments)` gets each
    segment's joined rows in time order as soon as it and those before it are done. Returns the whole clip's
    summary (as analyze_video's, without the annotated video), with its rows under "rows"."""
    import ray

    from ..video import TimelineJoiner, check_options, open_video

    check_options(every, smooth)
    cap, fps, n_frames, _, _ = open_video(path, max_duration_s=max_duration_s)  # a bad clip fails here, not on Ray
    cap.release()
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else (workers or os.cpu_count()) * threads,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    n_workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
    count = max(1, segments or n_workers)
    if n_frames <= 0 and count > 1:
        count = 1  # the length is unknown: one segment, the whole clip
    video = Path(path).read_bytes() if address else str(Path(path).resolve())
    ref = ray.put(video)
    task = ray.remote(num_cpus=threads)(_analyse_segment)
    options = {"every": every, "smooth": smooth, "max_duration_s": max_duration_s}
    futures = [task.remote(ref, Path(path).suffix, k, count, str(model), precision, options, threads)
               for k in range(count)]
    joiner = TimelineJoiner(every=every)
    rows: list[dict] = []
    summaries: list[dict] = []
    for k, fut in enumerate(futures):  # in time order: a segment is joined once those before it are
        part, summary = ray.get(fut)
        joined = joiner.add(part)
        rows.extend(joined)
        summaries.append(summary)
        if write_rows is not None:
            write_rows(joined, k + 1, count)
    seconds = sum(s["analysed_frames"] / s["analysis_fps"] for s in summaries if s["analysis_fps"] > 0)
    analysed = sum(s["analysed_frames"] for s in summaries)
    return {
        "frames": sum(s["frames"] for s in summaries), "frames_reported": n_frames,
        "analysed_frames": analysed, "fps": fps, "size": summaries[0]["size"], "segments": count,
        "faces": len({r["face"] for r in rows}), "rows_count": len(rows),
        "analysis_fps": analysed / seconds if seconds > 0 else 0.0,
        "truncated": any(s["truncated"] for s in summaries), "codec": None, "rows": rows,
    }
