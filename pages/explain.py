"""Explain: one photo in, every face boxed, probabilities and explanation maps side by side."""
import json

import numpy as np
import pandas as pd
import streamlit as st

import ui
from fer_core.examples import EXAMPLES
from fer_core.explainers import EXPLAINERS
from fer_core.notes import BY_LABEL, CUT_OFF, SMALL_FACE, UNSURE, note_sentence
from fer_core.overlay import COLORMAPS, grid, labelled_photo, overlay
from fer_core.pipeline import MAX_FACES
from fer_core.regions import region_sentence
from fer_core.rows import face_row

st.title("Why does the model think so?")
st.caption("Upload a photo: every face is found, classified (six emotions, and neutral for a model that knows it) "
           "and explained. "
           "Not for diagnosis or surveillance — see the model card.")

with st.sidebar:
    model = ui.model_select_ui()
    if model:
        methods = ui.methods_ui(model)
        target = ui.target_ui(classes=ui.model_classes(model))
        layer = ui.layer_ui(model)
        methods = ui.without_repeats(model, methods, layer)
    alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05)
    cmap = st.selectbox("Colormap", list(COLORMAPS))
    whole = ui.whole_toggle("explain_whole")
    faith = st.toggle("Faithfulness scores", value=True,
                      help="Deletion/insertion AUC (tied pixels taken in a seeded random order) and the "
                           "model-randomisation sanity check, per map: the rank correlation (tied values share their "
                           "average rank) and the SSIM between the map and the same method's map once the head and "
                           "the last stage are re-initialised; lower is better, and a map that collapses to a constant "
                           "on the randomised model changed completely (it passes). One face's value comes from one "
                           "random re-initialisation: a rough check, not a verdict. On CPUs with native bfloat16, "
                           "occlusion's randomised copy runs in bf16 (twice as fast; it raises the value by ~0.08)")
    with st.expander("Occlusion options"):
        window = st.slider("Window (px at model input)", 4, 16, ui.OCCLUSION_WINDOW, 2)
        stride = st.slider("Stride", 2, 8, ui.OCCLUSION_STRIDE, 1)

if not model:
    st.stop()

frozen = st.session_state.get("frozen_frame")  # a frame frozen on the Live page, explained here
sources = ["Upload", "Camera", "Example"] + (["Live frame"] if frozen else [])
source = st.radio("Image source", sources, horizontal=True, label_visibility="collapsed",
                  index=len(sources) - 1 if frozen else 0)
data, name = None, None
if source == "Live frame":
    name, data = "live-frame.png", frozen
elif source == "Upload":
    up = st.file_uploader("Photo (JPEG, PNG, HEIC, AVIF, WebP, BMP, TIFF, GIF)", key="photo")
    if up is not None:
        name, data = ui.read_upload(up)
elif source == "Camera":
    shot = st.camera_input("Take a snapshot")
    if shot is not None:
        name, data = "camera.jpg", shot.getvalue()
else:
    ex = st.selectbox("Example", list(EXAMPLES))
    name, data = f"{ex}.png", ui.png_bytes(EXAMPLES[ex]())

if data is None:
    st.info("Upload a photo, take a snapshot, or pick an example to begin.")
    st.stop()

whole = ui.whole_for("explain_whole", data, whole)
results = ui.faces_or_stop(name, data, model, target, whole, "explain_whole")

boxes = tuple(r.box.as_tuple() for r in results if r.box is not None)
left, right = st.columns([2, 3])
with left:
    photo = st.empty()  # drawn after the picker, so the face picked stands out
    idx = st.selectbox("Face", range(len(results)), format_func=lambda i: (
        f"Face {i + 1}: {results[i].prediction} {results[i].confidence:.0%}"
        + (f" · detector {results[i].box.score:.2f}" if ui.has_score(results[i].box) else "")
        + "".join(f" ({n})" for n in results[i].notes)),
        help="Faces are numbered most confident first (the detector's score: how sure it is that this is a face)")
    photo.image(ui.boxed_photo(data, boxes, idx), width="stretch",
                caption=f"{name}: {len(results)} face(s)" + (f", face {idx + 1} in red" if len(boxes) > 1 else "")
                + (f" (the {MAX_FACES} most confident: the page explains at most {MAX_FACES} faces of a photo; "
                   "`fer explain` takes them all)" if len(results) >= MAX_FACES else ""))
key = (data, model, target, whole, idx, tuple(methods), layer, window, stride)
with st.spinner("Explaining…"):
    r = ui.cached_explanation(*key)
with right:
    st.subheader(f"Face {idx + 1}: **{r.prediction}** ({r.confidence:.0%})")
    st.plotly_chart(ui.probs_chart(r.probs, highlight=r.target), width="stretch")
    for label in r.notes:  # the notes' sentences (fer_core.notes): unsure as a caption, the rest as boxes
        if label == UNSURE:
            st.caption(note_sentence(label))
        else:
            (st.warning if label in (SMALL_FACE, CUT_OFF) else st.info)(
                note_sentence(label, r.source_side), icon=BY_LABEL[label].icon)
    if r.target != r.prediction:
        st.caption(f"Maps below explain **{r.target}**, not the prediction.")

score_slots = {}
if r.maps:
    cols = st.columns(len(r.maps))
    for col, (m, cam) in zip(cols, r.maps.items()):
        e = EXPLAINERS[m]
        with col:
            st.image(overlay(r.face, cam, alpha=alpha, colormap=cmap), caption=e.label, width="stretch")
            if e.fails_sanity:
                st.warning("Fails the sanity check: do not read as evidence.", icon="⚠️")
            st.caption(region_sentence(r.regions[m], r.target))
            score_slots[m] = st.empty()
for m, why in r.errors.items():
    st.info(f"{EXPLAINERS[m].label} not shown: {why}")

scores = {}
scored = st.session_state.setdefault("explain_scored", set())  # this session's photos+settings scored or asked for
this = (ui.digest(data), *key[1:]) if faith and r.maps else None
busy = ui.COMPUTE.waiting() if this else 0
if this and busy and this not in scored:
    # others are waiting for their maps: the scores (several times the maps' work) wait for a click
    st.button(f"Score faithfulness ({busy} other request(s) are being served right now, so the scores wait for "
              "this click)", icon=":material/speed:", on_click=scored.add, args=(this,))
elif this:  # maps are on screen already; the scores fill in below them
    scored.add(this)
    with st.spinner("Scoring faithfulness…"):
        for m, slot in score_slots.items():
            s = scores[m] = ui.cached_scores(*key, m)
            sanity = (f"sanity similarity {s['sanity_similarity']:.2f} (lower better; SSIM "
                      f"{s.get('sanity_ssim', float('nan')):.2f})")
            if s.get("sanity_collapsed"):
                sanity = "sanity: the map collapsed to a constant on the randomised model (it changed: passes)"
            slot.caption(f"deletion AUC {s['deletion_auc']:.2f} (lower better) · insertion AUC "
                         f"{s['insertion_auc']:.2f} (higher better) · {sanity}")

if r.maps:
    regions = pd.DataFrame(r.regions).T.map(lambda v: f"{v:.0%}")
    regions.index = [EXPLAINERS[m].label for m in regions.index]
    st.markdown("**Where the evidence lies** (share of each map on each facial region)")
    st.dataframe(regions, width="stretch")

def download_row(res, explained=None, scores=None) -> dict:
    """One face's CSV/JSON row: box and scores; with `explained` (its explain_face result) the maps' region
    shares, with `scores` their faithfulness."""
    row = {**face_row(res.index, res.box, res.probs, notes=res.notes), "target": res.target}
    for m, s in (scores or {}).items():
        row.update({f"{m}_{k}": v for k, v in s.items()})
    for m, sh in (explained.regions if explained is not None else {}).items():
        row.update({f"{m}_share_{k}": v for k, v in sh.items()})
    return row


def figure(res) -> np.ndarray:
    return grid(res.face, res.maps, titles={m: EXPLAINERS[m].label for m in res.maps}, alpha=alpha, colormap=cmap,
                header=f"{res.prediction} {res.confidence:.0%} (explaining {res.target}) · {model}")


# every face's scores; the maps' numbers for the face shown (each face is explained when picked)
rows = [download_row(res, r, scores) if res.index == r.index else download_row(res) for res in results]
stem = name.rsplit(".", 1)[0]
predictor = ui.get_predictor(model)  # resolved here: the button's callable runs on another thread


def every_face_zip() -> bytes:  # run when the button is clicked
    return ui.faces_zip(predictor, results, methods, layer=layer, options=ui.method_options(window, stride), stem=stem,
                        figure=figure, row=download_row, explained={r.index: r})


def labelled_png() -> bytes:  # run when the button is clicked
    from fer_core.io import read_image

    return ui.png_bytes(labelled_photo(read_image(data), results))


d1, d2, d3, d4, d5 = st.columns(5)
if r.maps:
    d1.download_button("Figure (PNG)", lambda: ui.png_bytes(figure(r)), f"{stem}_face{idx + 1}.png", "image/png",
                       on_click="ignore")  # made when clicked, not on every rerun (40 ms)
d2.download_button("Numbers (CSV)", pd.DataFrame(rows).to_csv(index=False), f"{stem}.csv", "text/csv", on_click="ignore")
d3.download_button("Numbers (JSON)", json.dumps({"image": name, "model": model, "faces": rows}, indent=2),
                   f"{stem}.json", "application/json", on_click="ignore")
if boxes:
    d4.download_button("Labelled photo (PNG)", labelled_png, f"{stem}_labelled.png", "image/png", on_click="ignore",
                       help="The photo with every face's box, number, emotion and confidence")
if len(results) > 1 and methods:
    d5.download_button(f"All {len(results)} faces (ZIP)", every_face_zip, f"{stem}_faces.zip", "application/zip",
                       on_click="ignore", help="Every face's maps as figures and their region shares in one CSV, "
                       "made when you click (a few tenths of a second a face)")
