"""Live: the browser's camera, every face boxed, classified and (optionally) explained frame by frame."""
import json
import os
import time

import pandas as pd
import plotly.express as px
import streamlit as st

import ui
from fer_core.live import LiveSession

# Where the browser and this server find each other. On localhost no server is needed; across networks (a Space, a
# phone on mobile data) a STUN server finds the public address and, behind strict NATs, only a TURN server relays.
DEFAULT_ICE = [{"urls": ["stun:stun.l.google.com:19302"]}]

st.title("Live camera")
st.caption("Your camera's frames are processed on this server as they arrive and sent back annotated; nothing is "
           "recorded or stored, and no identity is read. Not for surveillance — see the model card.")

try:
    import av
    from streamlit_webrtc import WebRtcMode, webrtc_streamer
except ImportError:
    st.error("The live view needs streamlit-webrtc (pip install streamlit-webrtc). Use the Explain page's camera "
             "snapshot instead.")
    st.page_link("pages/explain.py", label="Explain a snapshot", icon=":material/photo_camera:")
    st.stop()

with st.sidebar:
    model = ui.model_select_ui(key="live_model")
    overlay = st.radio("Overlay on faces", ["none", "gradcam", "cam"], horizontal=True,
                       format_func={"none": "None", "gradcam": "Grad-CAM", "cam": "CAM"}.get,
                       help="An explanation map inside each face's box, for its top emotion (slower)")
    smooth = st.slider("Smoothing over time", 0.0, 0.9, 0.6, 0.1, help="0 = raw per-frame probabilities")

if not model:
    st.stop()

predictor = ui.get_predictor(model)
session: LiveSession | None = st.session_state.get("live_session")
if session is None or session.predictor is not predictor:
    session = LiveSession(predictor, smooth=smooth, overlay=overlay)
    st.session_state["live_session"] = session
session.smooth, session.overlay = smooth, overlay  # read by the stream's thread on its next frame


def callback(frame):
    """The stream's thread: one frame in, the annotated frame out."""
    out = session.process(frame.to_ndarray(format="rgb24"))
    return av.VideoFrame.from_ndarray(out, format="rgb24")


ice = json.loads(os.environ["FER_RTC_ICE_SERVERS"]) if os.environ.get("FER_RTC_ICE_SERVERS") else DEFAULT_ICE
ctx = webrtc_streamer(
    key="live", mode=WebRtcMode.SENDRECV, video_frame_callback=callback, async_processing=True,
    rtc_configuration={"iceServers": ice},
    media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}, "audio": False},
)
st.caption("Press START and allow the camera. If the video does not start within a few seconds, no connection "
           "could be made between your browser and this server (a firewall or a network that needs a TURN relay: "
           "set FER_RTC_ICE_SERVERS, see the README); the Explain page's camera snapshot works without one.")

rate, faces, chart = st.empty(), st.empty(), st.empty()
freeze = st.button("Freeze: explain this frame with every method", disabled=not ctx.state.playing)
if freeze and session.last_frame is not None:
    from fer_core.explainers import supported_explainers

    st.session_state["frozen_frame"] = ui.png_bytes(session.last_frame)
    st.session_state["model"] = model  # the Explain page's own widgets: the live model, every method it supports
    st.session_state["methods"] = list(supported_explainers(predictor.model))
    st.switch_page("pages/explain.py")


def show(n: int) -> None:
    s = session.stats()
    rate.markdown(f"**{s['fps']:.1f} processed frames/s** ({s['ms']:.0f} ms each; {s['frames']} processed). Frames "
                  "that arrive while one is processed are skipped, so the view never lags behind the camera.")
    faces.markdown("  ".join(f"`#{i}` **{e}** {p:.0%}" for i, e, p in session.last_faces) or "No face in view.")
    rows = session.history()
    if rows:
        df = pd.DataFrame(rows).melt(id_vars=["t", "face"], var_name="emotion", value_name="probability")
        fig = px.line(df, x="t", y="probability", color="emotion", facet_row="face", range_y=[0, 1],
                      labels={"t": "seconds"}, height=220 * df["face"].nunique())
        chart.plotly_chart(fig, width="stretch", key=f"live_chart_{n}")  # a new element each refresh


show(0)
refresh = 0
while ctx.state.playing:  # refresh the rate, the faces and the last ~20 s twice a second while the stream runs
    time.sleep(0.5)
    refresh += 1
    show(refresh)
