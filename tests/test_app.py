"""Every page under AppTest (no browser): uploads of a face, a non-image, a faceless photo and a zip
with a bad member. Uses throwaway checkpoints and a results file written by train/evaluate.py."""
import base64
import io
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    from fer_core.checkpoints import ModelSpec, save_checkpoint
    from fer_core.runtime import DEFAULT_CHECKPOINT
    from fer_core.models import create_model, list_models
    from tests.test_data import make_folder

    d = tmp_path_factory.mktemp("app")
    ck = d / "checkpoints"
    torch.manual_seed(0)
    # an untrained model under the default's name and architecture, so the pages open on "(default)"
    arch = DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT in list_models() else "fernet"
    def epoch(n: int, f1: float) -> dict:
        return {"epoch": n, "train_loss": 1.0, "val_loss": 1.1, "train_accuracy": 0.5, "val_accuracy": 0.4,
                "train_macro_f1": 0.3, "val_macro_f1": f1}

    # a fine-tune (one epoch) of a two-epoch run, as train.py --init records it
    first = {"args": {"lr": 0.2, "schedule": "onecycle", "teacher": ["runs/a.safetensors"]}, "git_commit": "",
             "metrics": {"val_macro_f1": 0.19}, "history": [epoch(1, 0.1), epoch(2, 0.19)]}
    save_checkpoint(create_model(arch), ModelSpec(
        arch=arch, args={"lr": 0.02, "schedule": "cosine"}, metrics={"val_macro_f1": 0.2}, history=(epoch(1, 0.2),),
        lineage=(first,)), ck / f"{DEFAULT_CHECKPOINT}.safetensors")
    save_checkpoint(create_model("baseline"), ModelSpec(arch="baseline"), ck / "baseline.safetensors")
    # a seven-class model whose head leans to neutral whatever the face: what a calm face's answer looks like
    from fer_core.labels import CLASSES_7

    calm = create_model("fernet", num_classes=7)
    with torch.no_grad():
        calm.gap_linear.bias[6] = 8.0
    save_checkpoint(calm, ModelSpec(arch="fernet", classes=CLASSES_7), ck / "calm7.safetensors")
    test = make_folder(d / "data" / "test", n_per_class=2)
    mp = pytest.MonkeyPatch()
    mp.setenv("FER_CHECKPOINTS", str(ck))
    mp.setenv("FER_CACHE", str(d / "cache"))
    import fer_core.checkpoints as C

    mp.setattr(C, "CHECKPOINT_DIR", ck)
    import evaluate

    evaluate.main(evaluate.get_args_parser().parse_args(
        ["--data", f"raf-db={test}", "--output", str(ck / "results.json"), "--threads", "2",
         "--latency-repeats", "3"]))  # timing untrained models 200 times was most of this module's time
    import regions

    regions.main(["--data", f"raf-db={test}", "--methods", "cam,occlusion", "--out", str(ck / "regions.json")])
    yield ck
    mp.undo()


def _app(page: str):
    from streamlit.testing.v1 import AppTest

    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import os
os.chdir({str(ROOT)!r})
exec(open({str(ROOT / page)!r}).read(), {{"__name__": "__main__"}})
"""
    return AppTest.from_string(script, default_timeout=TIMEOUT)


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _no_exception(at):
    assert not at.exception, [e.value for e in at.exception]


def test_entry_point_runs(app_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    _no_exception(at)


def test_explain_example_face(app_env):
    at = _app("pages/explain.py")
    at.run()
    _no_exception(at)
    at.radio[0].set_value("Example").run()
    _no_exception(at)
    assert any("Face 1" in s.value for s in at.subheader)
    assert sum("deletion AUC" in c.value for c in at.caption) == 3  # one per default method
    conf = int(re.search(r"\((\d+)%\)", next(s.value for s in at.subheader if "Face 1" in s.value)).group(1))
    assert any("Unsure:" in c.value for c in at.caption) == (conf < 50)  # the throwaway model is unsure
    labels = [b.label for b in at.get("download_button")]
    assert "Numbers (CSV)" in labels and "Figure (PNG)" in labels


def test_explain_shows_a_seven_class_models_neutral_answer(app_env):
    """A model with neutral: the face's answer, its probability chart and the target picker carry the seventh class."""
    at = _app("pages/explain.py")
    at.run()
    at.selectbox(key="model").set_value("calm7").run()
    at.radio[0].set_value("Example").run()
    _no_exception(at)
    assert any("Face 1" in s.value and "neutral" in s.value for s in at.subheader), [s.value for s in at.subheader]
    assert "neutral" in at.selectbox(key="target").options
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "neutral" in chart["data"][0]["y"]


def test_explain_group_photo_maps_the_face_picked(app_env):
    at = _app("pages/explain.py")
    at.run()
    at.radio[0].set_value("Example").run()
    next(s for s in at.selectbox if s.label == "Example").set_value("Group of three (made from the astronaut)").run()
    _no_exception(at)
    face = next(s for s in at.selectbox if s.label == "Face")
    assert len(face.options) == 3
    face.set_value(2).run()
    _no_exception(at)
    assert any(s.value.startswith("Face 3:") for s in at.subheader)
    assert sum("deletion AUC" in c.value for c in at.caption) == 3  # its three maps, scored
    assert len(at.dataframe) == 1  # the region table of the face shown
    assert {"All 3 faces (ZIP)", "Labelled photo (PNG)"} <= {b.label for b in at.get("download_button")}


def test_explain_under_load_shows_the_maps_and_scores_on_a_click(app_env, monkeypatch):
    import ui

    monkeypatch.setattr(ui.COMPUTE, "waiting", lambda: 4)  # four other requests are being served
    at = _app("pages/explain.py")
    at.run()
    at.radio[0].set_value("Example").run()
    _no_exception(at)
    assert len(at.image) >= 4 and not any("deletion AUC" in c.value for c in at.caption)  # maps now, scores wait
    button = next(b for b in at.button if b.label.startswith("Score faithfulness"))
    assert "4 other request(s)" in button.label
    button.click().run()
    assert sum("deletion AUC" in c.value for c in at.caption) == 3
    at.slider[0].set_value(0.3).run()  # a later rerun of the same photo keeps its scores
    assert sum("deletion AUC" in c.value for c in at.caption) == 3
    assert not any(b.label.startswith("Score faithfulness") for b in at.button)


def test_the_compute_queue_serves_one_at_a_time_in_arrival_order():
    import threading
    import time

    import ui

    queue, order, inside = ui.ComputeQueue(), [], []
    gate = threading.Event()

    def work(k):
        with queue.turn():
            inside.append(k)
            assert len(inside) == 1  # nobody else in
            if k == 0:
                gate.wait(5)
            order.append(k)
            inside.remove(k)

    threads = [threading.Thread(target=work, args=(0,))]
    threads[0].start()
    while queue.waiting() < 1:
        time.sleep(0.01)
    for k in (1, 2, 3):  # they arrive while 0 holds its turn, in this order
        threads.append(threading.Thread(target=work, args=(k,)))
        threads[-1].start()
        while queue.waiting() < k + 1:
            time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3] and queue.waiting() == 0


def test_warm_up_explains_and_scores_the_default_methods_once(app_env, predictor, monkeypatch):
    import fer_core.pipeline as pipeline
    import ui

    calls = []
    real_explain, real_faith = pipeline.explain_face, pipeline.faithfulness_for
    monkeypatch.setattr(pipeline, "explain_face", lambda p, r, methods, **kw: calls.append(("explain", tuple(methods)))
                        or real_explain(p, r, methods, **kw))
    monkeypatch.setattr(pipeline, "faithfulness_for", lambda p, r, m, **kw: calls.append(("faith", m))
                        or real_faith(p, r, m, **kw))
    ui.warm_up(predictor)
    assert calls == [("explain", ("gradcam", "integrated_gradients", "occlusion")), ("faith", "gradcam"),
                     ("faith", "integrated_gradients"), ("faith", "occlusion")]


def test_preload_loads_each_checkpoint_once_on_a_thread_and_skips_a_broken_one(app_env, monkeypatch):
    import threading

    import ui

    loaded = []

    class Loaded:
        def prediction_model(self):
            return None

    def load(name, frozen=False):
        assert threading.current_thread() is not threading.main_thread() and frozen is None  # as get_predictor
        loaded.append(name)
        if name == "broken":
            raise ValueError("not a checkpoint")
        return Loaded()

    monkeypatch.setattr(ui, "load_predictor", load)
    monkeypatch.setattr(ui, "_PRELOADING", set())
    monkeypatch.setenv("FER_WARM_UP", "1")

    def run(names):
        before = set(threading.enumerate())
        ui.preload(names)
        for t in set(threading.enumerate()) - before:
            t.join(10)

    run(["a", "broken", "b"])
    run(["b", "a", "c"])  # the second page view: only what no thread has taken yet
    assert loaded == ["a", "broken", "b", "c"]
    monkeypatch.setenv("FER_WARM_UP", "0")  # tests' setting: no background work
    run(["d"])
    assert loaded == ["a", "broken", "b", "c"]


def test_every_face_zip_has_a_figure_each_and_one_table(app_env, predictor):
    from dataclasses import replace

    import ui
    from fer_core.examples import group_photo
    from fer_core.pipeline import analyze, explain_face

    results = analyze(group_photo(), predictor=predictor)  # classified, not yet explained
    # the face on screen is already explained: the zip takes it as it is (here marked by a black crop)
    shown = replace(explain_face(predictor, results[1], ["cam", "gradcam"]), face=np.zeros((64, 64, 3), np.uint8))
    data = ui.faces_zip(predictor, results, ["cam", "gradcam"], layer=None, options={}, stem="group",
                        figure=lambda done: done.face, row=lambda res, done: {"face": res.index + 1, **{
                            f"{m}_mouth": sh["mouth"] for m, sh in done.regions.items()}}, explained={1: shown})
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(zf.namelist()) == ["group_face1.png", "group_face2.png", "group_face3.png", "group_faces.csv"]
    table = zf.read("group_faces.csv").decode().splitlines()
    assert table[0] == "face,cam_mouth,gradcam_mouth" and len(table) == 4
    pixels = [np.asarray(Image.open(zf.open(f"group_face{i}.png"))).max() for i in (1, 2, 3)]
    assert pixels[1] == 0 and pixels[0] > 0 and pixels[2] > 0


def test_explain_warns_under_maps_that_fail_the_sanity_check(app_env):
    at = _app("pages/explain.py")
    at.run()
    at.multiselect[0].set_value(["gradcam", "eigencam"]).run()
    at.radio[0].set_value("Example").run()
    _no_exception(at)
    assert sum("Fails the sanity check" in w.value for w in at.warning) == 1  # Eigen-CAM's, not Grad-CAM's


def test_explain_says_a_side_view_is_less_reliable(app_env, astronaut, monkeypatch):
    """A face noted "side view" (head_turn past SIDE_VIEW) gets a word on the Explain page; the astronaut, who faces
    the camera, does not. No picture here turns a head reliably, so the measure is stubbed for the second upload."""
    import fer_core.notes

    at = _app("pages/explain.py")
    at.run()
    at.file_uploader[0].set_value(("face.png", _png(astronaut), "image/png")).run()
    _no_exception(at)
    assert not any("A side view" in i.value for i in at.info)
    monkeypatch.setattr(fer_core.notes, "head_turn", lambda landmarks: 0.3)  # a head turned away
    at = _app("pages/explain.py")  # a new session: the last one's face picker formats its faces' notes anew
    at.run()
    at.file_uploader[0].set_value(("face.png", _png(astronaut), "image/png")).run()
    _no_exception(at)
    assert any("A side view" in i.value for i in at.info)


def test_explain_uploads(app_env, astronaut, close_up):
    import cv2

    at = _app("pages/explain.py")
    at.run()
    at.file_uploader[0].set_value(("face.png", _png(astronaut), "image/png")).run()
    _no_exception(at)
    assert any("Face 1" in s.value for s in at.subheader)
    assert not any("small face" in w.value for w in at.warning)
    tiny = cv2.resize(astronaut, (77, 77), interpolation=cv2.INTER_AREA)  # her face ~14 px across, her crop 13
    at.file_uploader[0].set_value(("tiny.png", _png(tiny), "image/png")).run()
    _no_exception(at)
    assert any("A small face: 13 px" in w.value for w in at.warning)
    at.file_uploader[0].set_value(("close-up.png", _png(close_up), "image/png")).run()  # forehead and chin cut off
    _no_exception(at)
    assert any("cut off by the picture's edges" in w.value for w in at.warning)
    assert not any("turned sideways" in i.value for i in at.info)
    at.file_uploader[0].set_value(("turned.png", _png(np.ascontiguousarray(np.rot90(astronaut, 3))), "image/png")).run()
    _no_exception(at)
    assert any("turned sideways or upside down" in i.value for i in at.info)
    at.file_uploader[0].set_value(("notes.jpg", b"this is text, not a photo", "image/jpeg")).run()
    _no_exception(at)
    assert any("not an image" in e.value for e in at.error)
    from fer_core.examples import no_face

    at.file_uploader[0].set_value(("coffee.png", _png(no_face()), "image/png")).run()
    _no_exception(at)
    assert any("no face found" in w.value for w in at.warning)
    assert not at.toggle(key="explain_whole").value
    at.button(key="explain_whole_button").click().run()  # the warning's one-click way out
    _no_exception(at)
    assert not at.warning and any(s.value.startswith("Face 1:") for s in at.subheader)  # the whole picture, classified
    said = "all of it is scored as one face"
    assert any(said in c.value for c in at.caption) and not at.toggle(key="explain_whole").value  # the toggle untouched
    group = _png(np.concatenate([astronaut, astronaut], axis=1))
    at.file_uploader[0].set_value(("two.png", group, "image/png")).run()  # the button held for one picture
    assert len(next(s for s in at.selectbox if s.label == "Face").options) == 2
    assert not any(said in c.value for c in at.caption)
    at.toggle(key="explain_whole").set_value(True).run()  # set by hand, it stays for the next picture
    at.file_uploader[0].set_value(("coffee.png", _png(no_face()), "image/png")).run()
    assert at.toggle(key="explain_whole").value and not at.warning and not any(said in c.value for c in at.caption)


def test_explain_baseline_says_why_no_cam(app_env):
    at = _app("pages/explain.py")
    at.run()
    at.selectbox(key="model").set_value("baseline").run()
    at.multiselect(key="methods").set_value(["gradcam", "cam"]).run()
    _no_exception(at)
    assert any("CAM needs a global-average-pool" in c.value for c in at.caption)


def test_explain_names_a_repeated_map_instead_of_drawing_it(app_env):
    """CAM, HiResCAM and XGrad-CAM are Grad-CAM's map for the default's GAP + linear head: one map, one line."""
    at = _app("pages/explain.py")
    at.run()
    at.multiselect(key="methods").set_value(["gradcam", "cam", "hirescam", "occlusion"]).run()
    at.radio[0].set_value("Example").run()
    _no_exception(at)
    assert any("CAM, HiResCAM: the same map as Grad-CAM" in c.value for c in at.caption)
    assert sum("deletion AUC" in c.value for c in at.caption) == 2  # Grad-CAM and occlusion drawn, once each


def _plotly_values(a):
    """A plotly figure's array: a list, or {"dtype", "bdata"} (base64) as plotly 6 writes numpy arrays."""
    if isinstance(a, dict):
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"])
    return np.asarray(a)


def test_batch_with_zip_and_bad_files(app_env, astronaut):
    import cv2

    at = _app("pages/batch.py")
    at.run()
    _no_exception(at)
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("good/one.png", _png(astronaut))
        zf.writestr("bad.jpg", b"\xff\xd8 truncated")
        zf.writestr("../escape.png", _png(astronaut[::2, ::2]))
    at.file_uploader(key="batch_files").set_value([
        ("photo.png", _png(astronaut), "image/png"),
        ("tiny.png", _png(cv2.resize(astronaut, (77, 77), interpolation=cv2.INTER_AREA)), "image/png"),
        ("broken.png", b"nope", "image/png"),
        ("set.zip", z.getvalue(), "application/zip"),
    ]).run()
    _no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Faces scored"] == "4" and metrics["Problems"] == "2"
    table = next(d.value for d in at.dataframe if "note" in d.value)
    assert list(table.columns[:6]) == ["thumbnail", "filepath", "face", "prediction", "confidence", "note"]
    notes = dict(zip(table["filepath"], table["note"]))
    assert notes["tiny.png"] == "small face, unsure" and notes["photo.png"] == "unsure"  # the throwaway model
    assert any(c.value.startswith("Faces noted: 4 unsure, 1 small face") for c in at.caption)  # counted above the table
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    conf = next(c for c in charts if c["layout"]["title"]["text"] == "Confidence")
    x, y = (_plotly_values(conf["data"][0][k]) for k in "xy")
    assert len(x) == 20 and x.min() < 0.05 and x.max() > 0.95  # bins over 0-1, not over the data
    assert y.sum() == 4
    why = at.selectbox(key="batch_why")
    assert why.value is None and not at.image  # nothing explained until a face is picked
    assert any(label.startswith("set.zip/good/one.png · face 1: ") for label in why.options)
    why.set_value(("set.zip/good/one.png", 1)).run()  # a zip member, found again in memory
    _no_exception(at)
    assert [c for i in at.image for c in i.captions] == ["Grad-CAM", "Integrated Gradients", "Occlusion"]
    assert "Labelled photos (ZIP)" in [b.label for b in at.get("download_button")]


def test_labelled_photos_zip_has_each_photo_with_faces_under_a_safe_name(astronaut):
    import ui
    from fer_core.examples import group_photo
    from fer_core.scoring import ImageItem

    items = [ImageItem("../up/a b.png", _png(astronaut)), ImageItem("set.zip/x/a b.png", _png(group_photo())),
             ImageItem("crop.png", _png(astronaut[:64, :64])), ImageItem("bad.png", b"nope")]
    rows = [{"filepath": "../up/a b.png", "face": 1, "x": 180, "y": 68, "w": 88, "h": 104, "prediction": "anger",
             "confidence": 0.5, "error": ""},
            *({"filepath": "set.zip/x/a b.png", "face": k, "x": 40 * k, "y": 50, "w": 30, "h": 30,
               "prediction": "fear", "confidence": 0.9, "error": ""} for k in (1, 2)),
            {"filepath": "crop.png", "face": 1, "x": float("nan"), "prediction": "fear", "confidence": 0.9,
             "error": ""},  # scored whole: no box to draw
            {"filepath": "bad.png", "error": "the data is not an image format we can read"}]
    with zipfile.ZipFile(io.BytesIO(ui.labelled_photos_zip(items, rows))) as zf:
        assert zf.namelist() == ["up_a_b_labelled.jpg", "set.zip_x_a_b_labelled.jpg"]  # flat: no "..", no folders
        photo = np.asarray(Image.open(io.BytesIO(zf.read("up_a_b_labelled.jpg"))))
    assert photo.shape == (640, 640, 3)  # the 512-px photo, enlarged for its label
    assert not np.array_equal(photo, np.asarray(Image.fromarray(astronaut).resize((640, 640))))  # drawn on


def test_batch_same_names_are_two_files_and_why_says_what_is_missing(app_env, astronaut):
    from fer_core.examples import group_photo

    at = _app("pages/batch.py")
    at.run()
    at.selectbox(key="batch_model").set_value("baseline")  # an MLP head: no CAM
    at.file_uploader(key="batch_files").set_value([("a.png", _png(astronaut[:, ::-1]), "image/png"),
                                                   ("a.png", _png(group_photo()), "image/png")]).run()
    _no_exception(at)
    table = next(d.value for d in at.dataframe if "note" in d.value)
    assert sorted(table["filepath"]) == ["a.png", "a.png (2)", "a.png (2)", "a.png (2)"]
    at.selectbox(key="batch_why").set_value(("a.png (2)", 3)).run()  # the second a.png's third face
    _no_exception(at)
    assert [c for i in at.image for c in i.captions] == ["Grad-CAM", "Integrated Gradients", "Occlusion"]


def test_batch_scores_a_faceless_crop_whole_when_asked(app_env, astronaut):
    at = _app("pages/batch.py")
    at.run()
    blank = np.full((90, 70, 3), 128, np.uint8)
    at.file_uploader(key="batch_files").set_value([("face.png", _png(astronaut), "image/png"),
                                                   ("blank.png", _png(blank), "image/png")]).run()
    assert {m.label: m.value for m in at.metric}["Problems"] == "1"
    assert any("1 with no face found" in c.value and "score the whole image" in c.value for c in at.caption)
    at.toggle(key="batch_fallback").set_value(True).run()
    _no_exception(at)
    assert {m.label: m.value for m in at.metric}["Problems"] == "0"
    assert not any("with no face found" in c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "note" in d.value)
    assert table.set_index("filepath")["note"]["blank.png"].startswith("no face found: the whole image scored")
    at.selectbox(key="batch_why").set_value(("blank.png", 1)).run()  # explained as it was scored: whole
    _no_exception(at)
    assert not at.error and [c for i in at.image for c in i.captions] == ["Grad-CAM", "Integrated Gradients", "Occlusion"]


def test_compare_finds_the_faces_once_for_every_model(app_env, astronaut, monkeypatch):
    import ui

    calls = []
    real = ui.locate_faces
    monkeypatch.setattr(ui, "locate_faces", lambda data, **kw: calls.append(kw) or real(data, **kw))
    at = _app("pages/compare.py")
    at.run()
    photo = np.ascontiguousarray(astronaut[7:, ::-1])  # bytes no other test cached
    at.file_uploader(key="compare_photo").set_value(("mirrored.png", _png(photo), "image/png")).run()
    _no_exception(at)
    assert len(at.dataframe[-1].value) == 3 and len(calls) == 1  # three models, one detection


def test_compare_and_model_card(app_env, astronaut):
    from fer_core.runtime import DEFAULT_CHECKPOINT
    from fer_core.labels import CLASSES_7, EMOTIONS

    at = _app("pages/compare.py")
    at.run()
    _no_exception(at)
    measured, quoted = (d.value for d in at.dataframe)
    assert not measured.isna().any().any()  # every cell measured (the quoted rows have their own table)
    assert "gimefive" in set(quoted["model"]) and quoted["raf-db acc %"].notna().all()
    at.file_uploader(key="compare_photo").set_value(("face.png", _png(astronaut), "image/png")).run()
    _no_exception(at)
    models = at.dataframe[-1].value  # every model on the one face, the default first
    assert list(models["model"])[0] == DEFAULT_CHECKPOINT and set(models["model"]) == {DEFAULT_CHECKPOINT, "baseline",
                                                                                         "calm7"}
    # shown in percent; a six-class model's neutral cell is empty
    assert np.allclose(models[list(CLASSES_7)].fillna(0).sum(axis=1), 100, atol=1e-2)
    assert models.loc[models["model"] == "baseline", "neutral"].isna().all()
    assert len(at.get("download_button")) == 1
    assert not at.get("progress")  # the per-model progress bar is gone once every model has run
    from fer_core.examples import group_photo, no_face

    at.file_uploader(key="compare_photo").set_value(("group.png", _png(group_photo()), "image/png")).run()
    _no_exception(at)
    assert len(at.selectbox(key="compare_face").options) == 3
    first = at.dataframe[-1].value
    at.selectbox(key="compare_face").set_value(2).run()
    _no_exception(at)
    assert not np.allclose(at.dataframe[-1].value[list(EMOTIONS)], first[list(EMOTIONS)])
    at.file_uploader(key="compare_photo").set_value(("empty.png", _png(no_face()), "image/png")).run()
    _no_exception(at)
    assert any("empty.png" in w.value for w in at.warning)
    at.button(key="compare_whole_button").click().run()  # the warning's button: this picture scored whole
    _no_exception(at)
    assert len(at.dataframe[-1].value) == 3 and not at.toggle(key="compare_whole").value
    at.toggle(key="compare_whole").set_value(True).run()  # the whole image as the face: scored after all
    _no_exception(at)
    assert len(at.dataframe[-1].value) == 3
    at.file_uploader(key="compare_photo").set_value(("notes.jpg", b"not a photo", "image/jpeg")).run()
    _no_exception(at)
    assert any("notes.jpg" in e.value for e in at.error) and len(at.dataframe) == 2  # the measured tables stay
    at = _app("pages/model_card.py")
    at.run()
    _no_exception(at)
    assert any("Intended use" in s.value for s in at.subheader)
    stages = next(m.value for m in at.markdown if "Trained in stages" in m.value)
    assert "1. 2 epochs, onecycle schedule from learning rate 0.2, distilled from a.safetensors" in stages
    assert "2. 1 epoch, cosine" in stages and "0.2000" in stages
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)  # the loss tab: both stages on one epoch axis
    assert [_plotly_values(t["x"]).tolist() for t in curve["data"]] == [[1, 2, 3], [1, 2, 3]]
    assert [sh["x0"] for sh in curve["layout"]["shapes"]] == [2.5]  # the fine-tune starts after epoch 2
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    diagram = next(c for c in charts if c["data"][0].get("name") == "perfectly calibrated")
    points = diagram["data"][1]  # the test set evaluate.py scored: one dot per non-empty bin, sized by its faces
    written = json.load(open(app_env / "results.json"))["checkpoints"][DEFAULT_CHECKPOINT]
    counts = written["raf-db"]["reliability"]["count"]
    assert sum(_plotly_values(points["customdata"])) == sum(counts) > 0 and points["name"].startswith("RAF-DB test")
    looks = json.load(open(app_env / "regions.json"))[DEFAULT_CHECKPOINT]["raf-db"]
    assert any(s.value == "Where it looks, per emotion" for s in at.subheader)
    right = [c for c in EMOTIONS if looks["right"][c]]  # the untrained model gets some of the toy faces right
    captions = [c for i in at.image for c in i.captions]
    assert captions == [f"{c} ({looks['right'][c]} faces)" for c in right]
    table = at.dataframe[-1].value
    assert list(table.index) == [*right, "(a map spread evenly)"] and list(table.columns)[:3] == ["eyes & brows", "nose", "mouth"]
    assert at.radio(key="card_regions_method").value == "occlusion"  # its sharper maps first
    at.radio(key="card_regions_method").set_value("cam").run()
    _no_exception(at)


def _video_bytes(tmp_path, astronaut, frames=12):
    import cv2

    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (320, 240))
    face = cv2.resize(astronaut[:, :, ::-1], (200, 240))
    for i in range(frames):
        fr = np.full((240, 320, 3), 180, np.uint8)
        fr[:, 10 + i * 5:210 + i * 5] = face
        vw.write(fr)
    vw.release()
    return path.read_bytes()


def test_video_page(app_env, astronaut, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the page writes the clip while it works
    at = _app("pages/video.py")
    at.run()
    _no_exception(at)
    at.file_uploader(key="video_file").set_value(("clip.avi", _video_bytes(tmp_path, astronaut), "video/x-msvideo")).run()
    _no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Frames"] == "12" and metrics["Faces tracked"] == "1"
    per_face = next(d.value for d in at.dataframe if "most_often" in d.value)
    assert per_face["frames"].tolist() == [6] and per_face["happiness_share"].between(0, 1).all()  # every 2nd frame
    import ui

    timeline = json.loads(at.get("plotly_chart")[0].proto.spec)
    colours = {t["name"]: t["line"]["color"] for t in timeline["data"]}  # one colour per class of the model
    assert colours == {c: ui.EMOTION_COLORS[c] for c in colours} and len(colours) in (6, 7)
    at.file_uploader(key="video_file").set_value(("fake.mp4", b"not a video", "video/mp4")).run()
    _no_exception(at)
    assert any("fake.mp4" in e.value for e in at.error)
    assert not list(scratch.glob("fer_video_*"))  # neither the clip nor the bad file is left on disk


def test_live_page_renders_and_a_frozen_frame_goes_to_explain(app_env, astronaut, monkeypatch):
    """The Live page (its stream component stubbed: it needs a real server, which tests/test_browser.py drives) shows
    its rate and faces and says how to fall back; a frame frozen there is offered first on the Explain page, and
    explained."""
    import types

    calls = []
    state = types.SimpleNamespace(playing=False)
    fake = types.SimpleNamespace(WebRtcMode=types.SimpleNamespace(SENDRECV="sendrecv"),
                                 webrtc_streamer=lambda **kw: calls.append(kw) or types.SimpleNamespace(state=state))
    monkeypatch.setitem(sys.modules, "streamlit_webrtc", fake)
    at = _app("pages/live.py")
    at.run()
    _no_exception(at)
    assert calls and calls[0]["async_processing"] and calls[0]["rtc_configuration"]["iceServers"]
    assert any("No face in view" in m.value for m in at.markdown)
    at = _app("pages/explain.py")
    at.session_state["frozen_frame"] = _png(astronaut)
    at.run()
    _no_exception(at)
    assert at.radio[0].value == "Live frame" and any(s.value.startswith("Face 1") for s in at.subheader)


def test_the_server_freezes_its_long_lived_objects_instead_of_collecting_after_every_run():
    """Streamlit's collection after every script run walked ~576,000 objects (0.24 s, bench/app_gc.py) with torch and the pages'
    libraries loaded: the app's config turns it off and ui.keep_for_good() freezes what lives as long as the server."""
    import gc
    import tomllib

    import ui

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    try:
        ui.keep_for_good()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
