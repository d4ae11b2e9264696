"""The only Streamlit-aware helper module: cached model loading, cached analysis, shared widgets.

Pages call these and fer_core; nothing here trains or hard-codes a number.
"""
from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st

from fer_core.checkpoints import CHECKPOINT_DIR, list_checkpoints, read_spec
from fer_core.explainers import DEFAULT_METHODS, EXPLAINERS, OCCLUSION_STRIDE, OCCLUSION_WINDOW
from fer_core.pipeline import classify_faces, explain_face, locate_faces
from fer_core.runtime import DEFAULT_CHECKPOINT, Predictor, load_predictor
from fer_core.labels import CLASSES_7, EMOTIONS, class_list

# the evaluation sets of checkpoints/results.json (train/evaluate.py), in the order pages show them, with their labels
TEST_SETS = {
    "raf-db": "RAF-DB test",
    "fer2013": "FER2013 test",
    "fer2013-ferplus": "FER2013 test, FER+ labels",
    "affectnet-hq-app": "in the wild (affectnet-hq val, the app's crop)",
    "affectnet-hq": "in the wild (affectnet-hq val, whole image)",
    "ferplus7": "FER+ test, seven classes (neutral)",
    "neutral-pool": "colour neutral faces (neutral-pool val)",
}

RESULTS_PATH = CHECKPOINT_DIR / "results.json"
# one colour per emotion wherever a chart has a line or bar per class (Okabe-Ito: told apart with colour blindness)
# (neutral, the seventh class of a model that has it, in grey: no emotion)
EMOTION_COLORS = dict(zip(CLASSES_7, ["#E69F00", "#56B4E9", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#999999"]))


def has_score(box) -> bool:
    """Whether a face has a detector's score to show (a box, and not the Haar detector's NaN)."""
    return box is not None and box.score == box.score


def model_classes(name: str) -> tuple[str, ...]:
    """The class list of a checkpoint (read from its header, no weights loaded)."""
    from fer_core.checkpoints import read_spec
    from fer_core.errors import FerError

    try:
        return read_spec(name).classes
    except FerError:
        return EMOTIONS


def _leave_legacy_pages_mode() -> None:
    """On a fresh server, a page opened by its own URL (/model_card) before any session ran streamlit_app.py is run
    by Streamlit's legacy pages/ mode: no page config, the files' names in the sidebar. st.navigation switches that
    mode off for the process; this does the same and reruns, so the entry point runs and shows the page asked for."""
    try:  # Streamlit's own module (1.67, pinned): if a later release moves it, the pages still work, as before
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", False):  # st.navigation has never run in this process
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_pages_mode()  # every page imports this module first thing


class ComputeQueue:
    """One model computation at a time in this server process, first come first served.

    Every session's script runs on its own thread, and each torch call there starts a team of worker threads as wide
    as the machine: with several people uploading at once, ten such teams on two cores spend their time switching
    (`python bench/app_load.py`). Through this queue each computation has the whole machine in turn. Never enter it
    from inside itself (a cached function calls the cached functions it needs first, then takes its turn)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = self._serving = 0
        self._gone: set[int] = set()  # tickets whose thread stopped waiting

    @contextmanager
    def turn(self):
        with self._cond:
            ticket = self._next
            self._next += 1
            try:
                while ticket != self._serving:
                    self._cond.wait()
            except BaseException:
                self._gone.add(ticket)
                raise
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                while self._serving in self._gone:
                    self._gone.discard(self._serving)
                    self._serving += 1
                self._cond.notify_all()

    def waiting(self) -> int:
        """Computations queued or running in this process now."""
        with self._cond:
            return self._next - self._serving - len(self._gone)


COMPUTE = ComputeQueue()


def keep_for_good() -> None:
    """Move every object alive now (the libraries, loaded models) out of the garbage collector's sight: they live as
    long as the server, and walking them took 0.24 s a full collection (`python bench/app_gc.py`).
    .streamlit/config.toml turns off Streamlit's collection after every script run; Python's own collections then see
    only what was made since."""
    gc.collect()
    gc.freeze()


@st.cache_resource(show_spinner="Loading model…")
def get_predictor(name: str) -> Predictor:
    """One loaded model per checkpoint per process, shared by every session."""
    # a long-lived server: worth ~1 s once to build the int8 copy (or to time eager against the frozen float32
    # copy), here under the spinner rather than on the first upload
    predictor = load_predictor(name, frozen=None)
    predictor.prediction_model()
    # the default only: the Compare page loads every checkpoint at once, and a warm-up each would hold both cores
    if name == DEFAULT_CHECKPOINT and os.environ.get("FER_WARM_UP", "1") != "0":  # tests set 0
        threading.Thread(target=warm_up, args=(predictor,), name=f"warm-up {name}", daemon=True).start()
    keep_for_good()
    return predictor


_PRELOADING: set[str] = set()  # checkpoints a preload() thread has taken, in this process
_PRELOAD_LOCK = threading.Lock()


def preload(names: list[str]) -> None:
    """Load checkpoints (and choose each one's prediction copy) on a background thread, once per process: the
    Compare page starts it when it opens, so the first upload does not wait for every model (measured by
    `python bench/app_latency.py --compare --think 8`, with and without `--no-background`). get_predictor() then
    finds them in load_predictor's cache."""
    if os.environ.get("FER_WARM_UP", "1") == "0":  # tests: no background work
        return
    with _PRELOAD_LOCK:
        todo = [n for n in names if n not in _PRELOADING]
        _PRELOADING.update(todo)
    if todo:
        threading.Thread(target=_load_quietly, args=(todo,), name="preload models", daemon=True).start()


def _load_quietly(names: list[str]) -> None:
    for name in names:
        try:
            load_predictor(name, frozen=None).prediction_model()
        except Exception:  # noqa: BLE001 - a broken checkpoint: the page that runs it says why, not this thread
            continue
    keep_for_good()


def warm_up(predictor: Predictor) -> None:
    """A process's first explanation pays for one-off set-up, several times a later one's (pipeline.warm_up). Paid
    here, on a thread started when the model loads, while the person picks a photo, with the Explain page's
    starting methods and options."""
    from fer_core.pipeline import warm_up as explain_example

    # no try/except: on a thread, an error ends only the warm-up, and threading prints its traceback
    explain_example(predictor, DEFAULT_METHODS, method_options=method_options(OCCLUSION_WINDOW, OCCLUSION_STRIDE))
    keep_for_good()  # what the explainers imported


def checkpoint_names() -> list[str]:
    names = list_checkpoints()
    if DEFAULT_CHECKPOINT in names:  # the default first
        names.remove(DEFAULT_CHECKPOINT)
        names.insert(0, DEFAULT_CHECKPOINT)
    return names


@st.cache_data(show_spinner=False)
def load_results() -> dict:
    """checkpoints/results.json as written by train/evaluate.py ({} when absent)."""
    if not RESULTS_PATH.is_file():
        return {}
    return json.loads(RESULTS_PATH.read_text())


@st.cache_data(show_spinner=False)
def load_regions() -> dict:
    """checkpoints/regions.json as written by bench/regions.py ({} when absent): where each checkpoint looks, per
    emotion, on each test set."""
    path = CHECKPOINT_DIR / "regions.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def mean_map_image(mean_map: list, landmarks: list | None, side: int, *, size: int = 160) -> np.ndarray:
    """bench/regions.py's mean map of one emotion as a heatmap `size` px across, stretched to its own range, with
    the facial regions outlined at the faces' mean landmarks (given in a crop `side` px across)."""
    import cv2

    from fer_core.explainers import normalize_map
    from fer_core.overlay import heatmap, outline_regions

    cam = normalize_map(cv2.resize(np.asarray(mean_map, dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC))
    img = heatmap(cam)
    return outline_regions(img, np.asarray(landmarks) * size / side) if landmarks else img


@st.cache_data(show_spinner=False, max_entries=32)
def cached_crops(data: bytes, whole_image: bool) -> list:
    """The photo decoded and its faces found and cropped: the same for every model, so the Compare page's eight
    models (or a switch of model on the Explain page) decode and detect once (a 12 MP JPEG: 0.27 s each time here)."""
    with COMPUTE.turn():
        return locate_faces(data, whole_image=whole_image)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_faces(data: bytes, model: str, target: str | None, whole_image: bool) -> list:
    """Every face in uploaded bytes, found and classified but not yet explained (cheap: a group photo's
    maps are made one face at a time, when it is shown); recomputed only when an input changes."""
    predictor, crops = get_predictor(model), cached_crops(data, whole_image)
    with COMPUTE.turn():
        return classify_faces(predictor, crops, target=target)


def whole_toggle(whole_key: str) -> bool:
    """A page's "Whole image is one face" toggle, as the user sets it (faces_or_stop's button leaves it alone)."""
    return st.toggle("Whole image is one face (skip detection)", value=False, key=whole_key)


def whole_for(whole_key: str, data: bytes, toggled: bool) -> bool:
    """Whether this picture is scored as one face: the page's toggle is on, or faces_or_stop's button was pressed for
    this very picture (its digest), so the next picture is looked at for faces again. The button once switched the
    toggle on from a callback and a new picture's callback off again, and in a real browser the new upload's rerun
    could come back with the browser's own copy of the toggle still on: a group photo scored as one face
    (reproduced in Chromium; `tests/test_browser.py`)."""
    if toggled:
        return True
    pressed_for = st.session_state.get(_pressed_key(whole_key))  # hash the photo only once the button was pressed
    if pressed_for is not None and pressed_for == digest(data):
        st.caption("No face was found in this picture, so all of it is scored as one face; the next picture is "
                   "looked at for faces again.")
        return True
    return False


def _pressed_key(whole_key: str) -> str:
    """The session-state key under which faces_or_stop's button leaves the digest of the picture it was pressed for."""
    return f"{whole_key}_picture"


def faces_or_stop(name: str, data: bytes, model: str, target: str | None, whole_image: bool,
                  whole_key: str | None = None) -> list:
    """cached_faces() under a spinner; a photo without a face gets a warning (and, given the key of the page's
    whole-image toggle, a button that has whole_for score this picture whole), an unreadable one an error, and the
    page stops there (the rest of the app keeps working)."""
    from fer_core.errors import FerError, NoFaceFound

    try:
        with st.spinner("Finding faces…"):
            return cached_faces(data, model, target, whole_image)
    except NoFaceFound as exc:
        st.warning(f"{name}: {exc}")
        if whole_key:  # a face cropped so tight (or drawn) that no detector sees it: one click, not a hunt
            st.button("Use the whole image as the face", key=f"{whole_key}_button", icon=":material/crop_free:",
                      on_click=st.session_state.__setitem__, args=(_pressed_key(whole_key), digest(data)))
    except FerError as exc:
        st.error(f"{name}: {exc}")
    st.stop()


@st.cache_data(show_spinner=False, max_entries=128)
def cached_explanation(data: bytes, model: str, target: str | None, whole_image: bool, face: int,
                       methods: tuple[str, ...], layer: str | None, window: int, stride: int):
    """Face `face` of cached_faces() with its maps and region shares."""
    result, predictor = cached_faces(data, model, target, whole_image)[face], get_predictor(model)
    with COMPUTE.turn():
        return explain_face(predictor, result, list(methods), layer=layer, method_options=method_options(window, stride))


@st.cache_data(show_spinner=False, max_entries=32)
def boxed_photo(data: bytes, boxes: tuple[tuple[int, int, int, int], ...], picked: int) -> np.ndarray:
    """The photo with its numbered face boxes, 640-1600 px on its longer side: made once per photo and face
    picked (a 48 MP photo took 0.7 s to decode and draw on every rerun, and went to the browser whole)."""
    from fer_core.faces import FaceBox
    from fer_core.io import read_image
    from fer_core.overlay import draw_boxes

    with COMPUTE.turn():
        return draw_boxes(read_image(data), [FaceBox(*b) for b in boxes], picked=picked, min_side=640, max_side=1600)


def method_options(window: int, stride: int) -> dict[str, dict]:
    """The explainers' options the sidebar sets (occlusion's window and stride), per method."""
    return {"occlusion": {"window": window, "stride": stride}}


@st.cache_data(show_spinner=False, max_entries=256)
def cached_scores(data: bytes, model: str, target: str | None, whole_image: bool, face: int,
                  methods: tuple[str, ...], layer: str | None, window: int, stride: int, method: str) -> dict:
    """Faithfulness of one face's map; takes cached_explanation's arguments, so the map comes from its cache."""
    from fer_core.pipeline import faithfulness_for

    result = cached_explanation(data, model, target, whole_image, face, methods, layer, window, stride)
    predictor = get_predictor(model)
    with COMPUTE.turn():
        return faithfulness_for(predictor, result, method, layer=layer, options=method_options(window, stride).get(method))


def faces_zip(predictor: Predictor, results: list, methods, *, layer: str | None, options: dict, stem: str,
              figure, row, explained: dict | None = None) -> bytes:
    """Every face of `results` explained with `methods`: `figure(explained)` as `{stem}_face{N}.png` each and
    `row(face, explained)` for all in `{stem}_faces.csv` (no faithfulness scores: they would take seconds a face).
    `explained` maps a face's index to its result already explained the same way (the face on screen)."""
    import zipfile

    import pandas as pd

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        table = []
        for res in results:
            done = (explained or {}).get(res.index) or explain_face(predictor, res, list(methods), layer=layer,
                                                                     method_options=options)
            table.append(row(res, done))
            if done.maps:
                zf.writestr(f"{stem}_face{res.index + 1}.png", png_bytes(figure(done)))
        zf.writestr(f"{stem}_faces.csv", pd.DataFrame(table).to_csv(index=False))
    return buf.getvalue()


def labelled_photos_zip(items, rows: list[dict]) -> bytes:
    """A zip of each photo among `items` (scoring.ImageItem) that has faces with boxes among `rows` (score_items'
    rows, matched by filepath), labelled with every face's number, emotion and confidence (labelled_photo; JPEG).
    Names are flat and safe: a folder's or a zip's path joined by "_", any odd character replaced."""
    import re
    import zipfile
    from types import SimpleNamespace

    from fer_core.errors import FerError
    from fer_core.faces import FaceBox
    from fer_core.io import read_image
    from fer_core.overlay import labelled_photo

    faces: dict[str, list] = {}
    for r in rows:
        if not r.get("error") and r.get("x") is not None and r["x"] == r["x"]:  # a box (not NaN: scored whole)
            faces.setdefault(r["filepath"], []).append(SimpleNamespace(
                index=int(r["face"]) - 1, box=FaceBox(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"])),
                prediction=r["prediction"], confidence=float(r["confidence"])))
    buf, names = io.BytesIO(), set()
    with zipfile.ZipFile(buf, "w") as zf:
        for item in items:
            if item.name not in faces:
                continue
            try:
                photo = labelled_photo(read_image(item.data), faces[item.name])
            except FerError:  # it was read once to be scored; should it fail now, the others still go in
                continue
            stem = re.sub(r"[^\w.-]+", "_", item.name.rsplit(".", 1)[0]).strip("._") or "photo"
            name, k = f"{stem}_labelled.jpg", 1
            while name in names:
                k += 1
                name = f"{stem}_{k}_labelled.jpg"
            names.add(name)
            zf.writestr(name, jpeg_bytes(photo))
    return buf.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:12]


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    return _encoded(rgb, "JPEG", quality=quality)


def png_bytes(rgb: np.ndarray) -> bytes:
    return _encoded(rgb, "PNG")


def _encoded(rgb: np.ndarray, fmt: str, **options) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **options)
    return buf.getvalue()


def model_select_ui(key: str = "model", label: str = "Model") -> str | None:
    names = checkpoint_names()
    if not names:
        st.error(f"No checkpoints found in {CHECKPOINT_DIR}. Train one with train/train.py.")
        return None

    def fmt(n: str) -> str:
        spec = read_spec(n)
        tag = " (default)" if n == DEFAULT_CHECKPOINT else ""
        return f"{n}{tag} · {spec.arch}"

    return st.selectbox(label, names, format_func=fmt, key=key)


def methods_ui(model_name: str, key: str = "methods") -> list[str]:
    from fer_core.explainers import unsupported_reason

    predictor = get_predictor(model_name)
    options = list(EXPLAINERS)
    chosen = st.multiselect(
        "Explanation methods", options, default=[m for m in DEFAULT_METHODS if m in options],
        format_func=lambda m: EXPLAINERS[m].label + (" ⚠" if EXPLAINERS[m].fails_sanity else ""), key=key,
        help="⚠ = known to fail the model-randomisation sanity check",
    )
    for m in chosen:
        reason = unsupported_reason(predictor.model, m)
        if reason:
            st.caption(f"**{EXPLAINERS[m].label}** is not offered for this model: {reason}.")
    return [m for m in chosen if unsupported_reason(predictor.model, m) is None]


def without_repeats(model_name: str, methods: list[str], layer: str | None) -> list[str]:
    """`methods` less those whose map repeats an earlier one's for this model and layer (explainers.repeated_maps),
    each named in one line instead of drawn twice."""
    from fer_core.explainers import repeated_maps

    repeats = repeated_maps(get_predictor(model_name).model, methods, layer)
    by_first: dict[str, list[str]] = {}
    for m, first in repeats.items():
        by_first.setdefault(first, []).append(m)
    for first, same in by_first.items():
        st.caption(f"{', '.join(EXPLAINERS[m].label for m in same)}: the same map as {EXPLAINERS[first].label} for "
                   f"{model_name} at this layer (a global-average-pool + linear head), so it is drawn once.")
    return [m for m in methods if m not in repeats]


def layer_ui(model_name: str, key: str = "layer") -> str:
    predictor = get_predictor(model_name)
    layers = list(predictor.model.explain_layers())
    default = predictor.model.default_layer
    return st.selectbox("Layer (for layer-based methods)", layers, index=layers.index(default), key=key,
                        help=f"Default {default!r}: the model's own choice. Deeper = coarser but more class-specific.")


def target_ui(key: str = "target", classes: tuple[str, ...] = EMOTIONS) -> str | None:
    if st.session_state.get(key) not in (None, "the prediction", *classes):  # a class the new model does not have
        st.session_state[key] = "the prediction"
    choice = st.selectbox("Explain which class?", ["the prediction", *classes], key=key,
                          help="Pick another class to ask 'why not anger?'")
    return None if choice == "the prediction" else choice



def probs_chart(probs: np.ndarray, classes=None, highlight: str | None = None):
    import plotly.graph_objects as go

    classes = class_list(len(probs)) if classes is None else classes
    colors = ["#ff7f0e" if c == highlight else "#1f77b4" for c in classes]
    fig = go.Figure(go.Bar(x=[float(p) for p in probs], y=list(classes), orientation="h", marker_color=colors,
                           text=[f"{p:.0%}" for p in probs],
                           # per bar: plotly's "auto" dropped the label of a bar too thin to measure (a 0.001% class)
                           textposition=["inside" if p >= 0.5 else "outside" for p in probs]))
    # the axis labelled up to 100% (plotly's own ticks stopped at 80%)
    fig.update_layout(height=240, margin=dict(l=0, r=0, t=10, b=0),
                      xaxis=dict(range=[0, 1.02], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1]),
                      yaxis=dict(autorange="reversed"))
    return fig


def read_upload(upload) -> tuple[str, bytes]:
    return upload.name, upload.getvalue()


def results_path_text() -> str:
    return str(Path(RESULTS_PATH).relative_to(CHECKPOINT_DIR.parent))
