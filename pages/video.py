"""Video: per-frame emotions, tracked per face, as an annotated video and a timeline."""
import tempfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

import ui
from fer_core.errors import FerError
from fer_core.labels import CLASSES_7
from fer_core.video import MAX_DURATION_S, analyze_video, timeline_columns, dominant_segments, face_summary

MAX_VIDEO_MB = 50
st.title("Emotions over time")
st.caption(f"Limits: up to {MAX_VIDEO_MB} MB and {MAX_DURATION_S:.0f} s; frames are analysed at up to 640 px. "
           "mp4, avi, mov, webm, mkv — whatever OpenCV can decode.")

with st.sidebar:
    model = ui.model_select_ui(key="video_model")
    every = st.number_input("Analyse every Nth frame", 1, 30, 2)
    overlay = st.toggle("Grad-CAM overlay on faces (slower)", value=False)
    smooth = st.slider("Smoothing over time", 0.0, 0.9, 0.5, 0.1, help="0 = raw per-frame probabilities")

up = st.file_uploader("Video clip", type=["mp4", "avi", "mov", "webm", "mkv", "m4v"], key="video_file")
if not model or up is None:
    st.info("Upload a short clip to start.")
    st.stop()
data = up.getvalue()
if len(data) > MAX_VIDEO_MB * 1024 * 1024:
    st.error(f"{up.name} is {len(data) / 1e6:.0f} MB; the limit is {MAX_VIDEO_MB} MB.")
    st.stop()

signature = (up.name, ui.digest(data), model, every, overlay, smooth)
if st.session_state.get("video_signature") != signature:
    # OpenCV decodes from a file: the upload and the annotated copy live in a folder removed when done, so a
    # user's clip is not left on the server's disk
    with tempfile.TemporaryDirectory(prefix="fer_video_") as tmp:
        work = Path(tmp)
        src = work / f"input{Path(up.name).suffix.lower() or '.mp4'}"
        src.write_bytes(data)
        bar = st.progress(0.0, text="Analysing frames…")
        try:
            summary = analyze_video(
                src, predictor=ui.get_predictor(model), out_video=work / "annotated.mp4", every=int(every),
                overlay="gradcam" if overlay else "none", smooth=float(smooth),
                progress=lambda d, t: bar.progress(min(1.0, d / max(t, 1)), text=f"frame {d}/{t}"),
            )
        except FerError as exc:
            bar.empty()
            st.error(f"{up.name}: {exc}")
            st.stop()
        bar.empty()
        st.session_state["video_result"] = (summary, (work / "annotated.mp4").read_bytes())
        st.session_state["video_signature"] = signature
summary, video_bytes = st.session_state["video_result"]

c1, c2, c3, c4 = st.columns(4)
c1.metric("Frames", summary["frames"])
c2.metric("Analysed", summary["analysed_frames"])
c3.metric("Faces tracked", summary["faces"])
c4.metric("Analysis speed", f"{summary['analysis_fps']:.1f} fps")
if summary["truncated"]:
    st.warning(f"The file ends early: {summary['frames']} of {summary['frames_reported']} frames could be decoded.")
video_col, _ = st.columns([3, 2])
video_col.video(video_bytes)
rows = summary["rows"]
if not rows:
    st.warning("No face was found in any analysed frame.")
else:
    df = pd.DataFrame(rows)
    classes = [c for c in CLASSES_7 if c in df]  # the model's classes: the six emotions, and neutral where it has it
    per_face = pd.DataFrame(face_summary(rows, classes))
    st.markdown("**Each face over the clip** (share of its analysed frames with each emotion as the prediction)")
    shares = [f"{e}_share" for e in classes]
    st.dataframe(per_face[["face", "first_s", "last_s", "frames", "most_often", *shares]], hide_index=True,
                 width="stretch", column_config={
                     "face": st.column_config.NumberColumn("face", format="#%d"),
                     "first_s": st.column_config.NumberColumn("seen from (s)", format="%.1f"),
                     "last_s": st.column_config.NumberColumn("to (s)", format="%.1f"),
                     "most_often": st.column_config.TextColumn("most often"),
                     **{f"{e}_share": st.column_config.ProgressColumn(e, min_value=0.0, max_value=1.0, format="percent",
                                                                      width="small") for e in classes}})
    faces = sorted(df["face"].unique())
    face = st.selectbox("Face", faces, format_func=lambda f: f"Face #{f}")
    long = df[df["face"] == face].melt(id_vars=["time_s"], value_vars=list(classes), var_name="emotion",
                                       value_name="probability")
    fig = px.line(long, x="time_s", y="probability", color="emotion", title=f"Face #{face}",
                  category_orders={"emotion": list(classes)}, color_discrete_map=ui.EMOTION_COLORS,
                  labels={"time_s": "time (s)"})
    fig.update_yaxes(range=[0, 1])
    st.plotly_chart(fig, width="stretch")
    st.markdown("**Dominant emotion per segment**")
    st.dataframe(pd.DataFrame(dominant_segments(rows, int(face))), hide_index=True, width="stretch")
    t1, t2 = st.columns(2)
    t1.download_button("Timeline (CSV)", df[timeline_columns(classes)].to_csv(index=False), "timeline.csv", "text/csv",
                       on_click="ignore")
    t2.download_button("Per-face summary (CSV)", per_face.to_csv(index=False), "faces.csv", "text/csv",
                       on_click="ignore", help="each face's share of frames and mean probability per emotion")
st.download_button("Annotated video (mp4)", video_bytes, "annotated.mp4", "video/mp4", on_click="ignore")
