"""Batch: many images, a folder or a zip -> one row per face, filters, charts and the CLI's CSV."""
import base64
from dataclasses import replace

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

import ui
from fer_core.scoring import NO_FACE, WHOLE_FALLBACK, ImageItem, iter_zip, noted_faces, score_columns, score_items

st.title("Batch scoring")
st.caption("Upload many photos, a whole folder or a .zip. Each face gets a row; files that cannot be "
           "read are listed with the reason while the rest are scored. Same CSV columns as "
           "`python -m fer_core score`.")

with st.sidebar:
    model = ui.model_select_ui(key="batch_model")
    whole = ui.whole_toggle("batch_whole")
    fallback = st.toggle("No face found: score the whole image", value=False, key="batch_fallback", disabled=whole,
                         help="For a folder of face crops: an image in which the detector finds no face is scored "
                              "as one face instead of listed as a problem; its note says so.")

files = st.file_uploader("Images or .zip archives", accept_multiple_files=True, key="batch_files")
folder = st.file_uploader("…or a whole folder", accept_multiple_files="directory", key="batch_folder")
uploads = list(files or []) + list(folder or [])
if not model or not uploads:
    st.info("Add files to start.")
    st.stop()


def items_from_uploads(ups):
    """Every upload (a zip's members one by one); a name seen before gets " (2)", " (3)"… so that each row's
    filepath is one file (two photo.jpg from different folders are two files, and "Why?" must find the right one)."""
    seen: dict[str, int] = {}

    def unique(item: ImageItem) -> ImageItem:
        seen[item.name] = n = seen.get(item.name, 0) + 1
        return item if n == 1 else replace(item, name=f"{item.name} ({n})")

    for up in ups:
        data = up.getvalue()
        if up.name.lower().endswith(".zip"):
            yield from map(unique, iter_zip(data, up.name))
        else:  # any other name may still be an image; read_image decides
            yield unique(ImageItem(up.name, data))


def run_batch(model: str, whole: bool, fallback: bool, uploads) -> list[dict]:
    items = list(items_from_uploads(uploads))
    bar = st.progress(0.0, text="Scoring…")
    rows = score_items(items, ui.get_predictor(model), whole_image=whole, keep_faces=True, whole_if_no_face=fallback,
                       progress=lambda n, name: bar.progress(n / len(items), text=f"{n}/{len(items)} {name}"))
    bar.empty()
    for r in rows:
        face = r.pop("_face", None)
        if face is not None:
            r["thumbnail"] = "data:image/png;base64," + base64.b64encode(ui.png_bytes(_thumb(face))).decode()
    return rows


def _thumb(face):
    import cv2

    return cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA)


def explain_face_of(filepath: str, face: int, whole: bool) -> None:
    """The maps of one scored face (its file found again among the uploads, a zip member re-read from memory);
    `whole`: the file was scored as one whole-image face."""
    from fer_core.errors import FerError
    from fer_core.explainers import EXPLAINERS
    from fer_core.pipeline import MAX_FACES
    from fer_core.overlay import overlay

    data = next((item.data for item in items_from_uploads(uploads) if item.name == filepath), None)
    if data is None:  # the uploads changed since the table was made
        st.info("That file is no longer among the uploads.")
        return
    idx = face - 1
    try:
        if idx >= len(ui.cached_faces(data, model, None, whole)):  # analyze() keeps the MAX_FACES largest
            st.info(f"Only a photo's {MAX_FACES} largest faces can be explained here.")
            return
        with st.spinner("Explaining…"):
            r = ui.cached_explanation(data, model, None, whole, idx, tuple(ui.DEFAULT_METHODS), None,
                                      ui.OCCLUSION_WINDOW, ui.OCCLUSION_STRIDE)
    except FerError as exc:
        st.error(f"{filepath}: {exc}")
        return
    cols = st.columns(1 + len(r.maps))
    cols[0].plotly_chart(ui.probs_chart(r.probs, highlight=r.target), width="stretch", key="batch_why_probs")
    for col, (m, cam) in zip(cols[1:], r.maps.items()):
        col.image(overlay(r.face, cam), caption=EXPLAINERS[m].label, width="stretch")
    for m, reason in r.errors.items():  # e.g. CAM on a model whose head is not one linear layer
        st.caption(f"**{EXPLAINERS[m].label}** is not shown for {model}: {reason}.")
    st.caption("The Explain page takes the same photo further: another class as the target, other methods and "
               "layers, faithfulness scores, region shares and downloads.")


signature = (tuple((u.name, ui.digest(u.getvalue())) for u in uploads), model, whole, fallback)
if st.session_state.get("batch_signature") != signature:  # score only when the inputs changed
    st.session_state["batch_rows"] = run_batch(model, whole, fallback, uploads)
    st.session_state["batch_signature"] = signature
rows = st.session_state["batch_rows"]
df = pd.DataFrame(rows)
classes = ui.model_classes(model)
columns = score_columns(not whole, classes)
for c in columns:
    if c not in df:
        df[c] = None
bad = df[df["error"].fillna("") != ""]
good = df[df["error"].fillna("") == ""].copy()

c1, c2, c3 = st.columns(3)
c1.metric("Files", len(uploads))
c2.metric("Faces scored", len(good))
c3.metric("Problems", len(bad))
noted = noted_faces(good.to_dict("records"))
if noted:
    st.caption(f"Faces noted: {noted} (the note column says which; the README's Results say how much each kind "
               "loses).")
if len(bad):
    with st.expander(f"{len(bad)} file(s) not scored", expanded=len(good) == 0):
        st.dataframe(bad[["filepath", "error"]], hide_index=True, width="stretch")
        faceless = int((bad["error"] == NO_FACE).sum())  # none with either switch on: such a file is scored whole
        if faceless:
            st.caption(f"{faceless} with no face found: if they are face crops, switch on “No face found: score the "
                       "whole image” in the sidebar.")

if len(good):
    f1, f2 = st.columns(2)
    keep = f1.multiselect("Show predictions", classes, default=list(classes))
    lo = f2.slider("Minimum confidence", 0.0, 1.0, 0.0, 0.05)
    view = good[good["prediction"].isin(keep) & (good["confidence"] >= lo)]
    # what a person reads first, then the class probabilities and the box (the CSV keeps the CLI's column order)
    first = ["thumbnail", "filepath", "face", "prediction", "confidence", "note"]
    shown = first + [c for c in columns if c not in first and c != "error"]
    st.dataframe(
        view[shown], hide_index=True, width="stretch",
        column_config={"thumbnail": st.column_config.ImageColumn("crop", width="small"),
                       "confidence": st.column_config.NumberColumn(format="%.2f"),
                       **{c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="%.2f")
                          for c in classes}},
    )
    # keyed by (file, face), so a pick stays the same face when the filters above change the table
    labels = {(f, int(n)): f"{f} · face {int(n)}: {p} {c:.0%}"
              for f, n, p, c in view[["filepath", "face", "prediction", "confidence"]].itertuples(index=False)}
    pick = st.selectbox("Why? Explain one face", list(labels), index=None, key="batch_why", format_func=labels.get,
                        placeholder="pick a face to see its Grad-CAM, Integrated Gradients and occlusion maps")
    if pick is not None:
        notes = good.loc[(good["filepath"] == pick[0]) & (good["face"] == pick[1]), "note"]
        explain_face_of(*pick, whole or any(WHOLE_FALLBACK in str(n) for n in notes))  # explained as it was scored
    g1, g2 = st.columns(2)
    counts = view["prediction"].value_counts().reindex(classes, fill_value=0).reset_index()
    counts.columns = ["emotion", "faces"]
    g1.plotly_chart(px.bar(counts, x="emotion", y="faces", title="Predicted classes", color="emotion",
                           color_discrete_map=ui.EMOTION_COLORS).update_layout(showlegend=False), width="stretch")
    # fixed 0.05-wide bins over 0-1 (plotly's own bins span only the data: a sliver when every face is ~0.99)
    n, edges = np.histogram(view["confidence"].astype(float), bins=20, range=(0.0, 1.0))
    hist = pd.DataFrame({"confidence": (edges[:-1] + edges[1:]) / 2, "faces": n})
    g2.plotly_chart(px.bar(hist, x="confidence", y="faces", range_x=[0, 1], title="Confidence")
                    .update_traces(width=0.05 * 0.9), width="stretch")


def labelled_zip() -> bytes:  # made when the button is clicked
    return ui.labelled_photos_zip(items_from_uploads(uploads), good.to_dict("records"))


d1, d2 = st.columns(2)
d1.download_button("Download CSV", df[columns].to_csv(index=False), "scores.csv", "text/csv", on_click="ignore")
if len(good) and "x" in good and good["x"].notna().any():
    d2.download_button("Labelled photos (ZIP)", labelled_zip, "labelled_photos.zip", "application/zip",
                       on_click="ignore", help="Each photo with its faces boxed and labelled with number, emotion and "
                       "confidence (JPEG), made when you click")
