"""Entry point: page config + navigation over pages/."""
import streamlit as st

st.set_page_config(page_title="FER explained", page_icon=":material/mood:", layout="wide")

pages = [
    st.Page("pages/explain.py", title="Explain a face", icon=":material/search:", default=True),
    st.Page("pages/batch.py", title="Batch scoring", icon=":material/folder_open:"),
    st.Page("pages/video.py", title="Video", icon=":material/movie:"),
    st.Page("pages/live.py", title="Live camera", icon=":material/videocam:"),
    st.Page("pages/compare.py", title="Compare models", icon=":material/leaderboard:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/badge:"),
]
st.navigation(pages).run()
