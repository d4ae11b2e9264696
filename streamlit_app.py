"""Entry point: page config + navigation over pages/."""
import streamlit as st

st.set_page_config(page_title="FER explained", page_icon="🙂", layout="wide")

pages = [
    st.Page("pages/explain.py", title="Explain a face", icon="🔍", default=True),
    st.Page("pages/batch.py", title="Batch scoring", icon="🗂️"),
    st.Page("pages/video.py", title="Video", icon="🎞️"),
    st.Page("pages/compare.py", title="Compare models", icon="📊"),
    st.Page("pages/model_card.py", title="Model card", icon="🪪"),
]
st.navigation(pages).run()
