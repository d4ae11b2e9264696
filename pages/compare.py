"""Compare models: measured accuracy beside the paper's, per-class recall, confusion, all models on one face."""
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from fer_core.errors import FerError
from fer_core.reference import PAPER, PAPER_ACCURACY, PEER_ACCURACY, PEERS

st.title("Compare models")
results = ui.load_results()
ckpts = results.get("checkpoints", {})
if not ckpts:
    st.warning(f"No results yet: run `python train/evaluate.py` to write {ui.results_path_text()}.")
else:
    cpus = ", ".join(sorted({r["cpu"] for r in ckpts.values() if r.get("cpu")}))
    st.caption(f"Measured by `python train/evaluate.py` on {results.get('machine', '?')} {cpus}, latency at batch 1. "
               "RAF-DB and FER2013: test splits, the whole 64×64 image as the face (FER+ labels: the FER+ annotators' "
               "majority among the six emotions). In the wild: the affectnet-hq validation faces (web photos and "
               "portraits; never trained on), found and cropped by the detector as the app does. Paper and peer "
               "numbers are quoted, not re-run.")
    rows = []
    # the default model first, then the zoo by RAF-DB accuracy
    order = sorted(ckpts, key=lambda n: (n != ui.DEFAULT_CHECKPOINT, -ckpts[n].get("raf-db", {}).get("accuracy", 0)))
    ckpts = {n: ckpts[n] for n in order}
    for name, r in ckpts.items():
        row = {"model": name, "arch": r["arch"], "params (M)": r["parameters"] / 1e6,
               "latency ms/face": r.get("latency_ms"),
               "precision": " ".join(v for v in (r.get("precision"), r.get("runtime")) if v) or None}
        for ds, short in (("raf-db", "raf-db"), ("fer2013", "fer2013"), ("fer2013-ferplus", "fer+"),
                          ("affectnet-hq-app", "in the wild")):
            if ds in r:
                row[f"{short} acc %"] = 100 * r[ds]["accuracy"]
                row[f"{short} macro-F1"] = r[ds]["macro_f1"]
                row[f"{short} ECE %"] = 100 * r[ds]["ece_after"]
        rows.append(row)
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.2f") for c in table.columns
                                if c not in ("model", "arch", "precision")})
    st.markdown("**Quoted, not re-run here** (test accuracy %; the zoo's own runs of the paper's architectures "
                "are in the table above)")
    quoted = [{"source": "GiMeFive paper", "model": arch, "raf-db acc %": nums.get("raf-db"),
               "fer2013 acc %": nums.get("fer2013")} for arch, nums in PAPER_ACCURACY.items()]
    quoted += [{"source": "peer package", "model": peer, "raf-db acc %": nums.get("raf-db"),
                "fer2013 acc %": nums.get("fer2013")} for peer, nums in PEER_ACCURACY.items()]
    st.dataframe(pd.DataFrame(quoted), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.1f") for c in ("raf-db acc %", "fer2013 acc %")})
    st.caption(f"Paper: {PAPER}. Peers: {PEERS}.")

    sets = [d for d in ui.TEST_SETS if any(d in r for r in ckpts.values())]
    ds = st.radio("Evaluation set", sets, horizontal=True, format_func=ui.TEST_SETS.get) if sets else None
if ckpts and ds:
    recall = pd.DataFrame([{"model": n, "emotion": e, "recall": r[ds]["recall"][i]}
                           for n, r in ckpts.items() if ds in r for i, e in enumerate(ui.class_list(len(r[ds]["recall"])))
                           if "support" not in r[ds] or r[ds]["support"][i]])
    st.plotly_chart(px.bar(recall, x="emotion", y="recall", color="model", barmode="group",
                           title=f"Per-class recall on {ui.TEST_SETS[ds]}"), width="stretch")
    pick = st.selectbox("Confusion matrix of", [n for n, r in ckpts.items() if ds in r])
    names = ui.class_list(len(ckpts[pick][ds]["confusion"]))
    cm = pd.DataFrame(ckpts[pick][ds]["confusion"], index=names, columns=names)
    norm = cm.div(cm.sum(axis=1).clip(lower=1), axis=0)
    fig = go.Figure(go.Heatmap(z=norm.values, x=list(names), y=list(names), colorscale="Blues",
                               text=cm.values, texttemplate="%{text}", zmin=0, zmax=1))
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed", height=420,
                      title=f"{pick} on {ui.TEST_SETS[ds]} (colour = row share, number = count)")
    st.plotly_chart(fig, width="stretch")

st.header("Run every model on one face")
rank = {n: i for i, n in enumerate(ckpts)}  # the accuracy table's order: the default, then by RAF-DB accuracy
names = sorted(ui.checkpoint_names(), key=lambda n: rank.get(n, len(rank)))  # unscored ones last
ui.preload(names)  # while the person picks a photo
up = st.file_uploader("A photo with a face", key="compare_photo")
whole = ui.whole_toggle("compare_whole")
if up is not None:
    from fer_core.overlay import overlay

    name, data = ui.read_upload(up)
    whole = ui.whole_for("compare_whole", data, whole)
    faces = ui.faces_or_stop(name, data, names[0], None, whole, "compare_whole")  # every model reuses its crops
    idx = 0
    if len(faces) > 1:
        left, _ = st.columns([2, 3])
        photo = left.empty()
        idx = left.selectbox("Face", range(len(faces)), format_func=lambda i: f"Face {i + 1}", key="compare_face")
        photo.image(ui.boxed_photo(data, tuple(f.box.as_tuple() for f in faces), idx), width="stretch",
                    caption=f"{name}: {len(faces)} faces, face {idx + 1} in red")
    table = st.empty()  # filled once every model has run
    # a checkpoint the preload has not reached yet loads here (seconds for all of them): say which runs
    progress = st.empty()
    rows = []
    cols = st.columns(min(4, len(names)) or 1)
    for i, n in enumerate(names):
        progress.progress(i / len(names), text=f"Model {i + 1} of {len(names)}: {n}")
        with cols[i % len(cols)]:
            try:
                r = ui.cached_explanation(data, n, None, whole, idx, ("gradcam",), None, ui.OCCLUSION_WINDOW,
                                          ui.OCCLUSION_STRIDE)
            except FerError as exc:  # one model's failure (a broken checkpoint) leaves the others shown
                st.error(f"{n}: {exc}")
                continue
            rows.append({"model": n, "prediction": r.prediction, "confidence": r.confidence,
                         **dict(zip(ui.class_list(len(r.probs)), map(float, r.probs)))})
            # two lines for every model, so a long name (cnn_se_residual) does not push its map below the others'
            st.markdown(f"**{n}**  \n{r.prediction} ({r.confidence:.0%})")
            if "gradcam" in r.maps:
                st.image(overlay(r.face, r.maps["gradcam"]), caption="Grad-CAM", width="stretch")
            st.plotly_chart(ui.probs_chart(r.probs), width="stretch", key=f"cmp_{n}")
    progress.empty()
    if rows:
        with table.container():
            df = pd.DataFrame(rows)  # a six-class model's neutral cell is empty: it cannot say neutral
            percent = [c for c in ("confidence", *ui.CLASSES_7) if c in df]
            shown = df.assign(**{c: 100 * df[c] for c in percent})
            st.dataframe(shown, hide_index=True, width="stretch", column_config={
                c: st.column_config.NumberColumn(format="%.1f%%") for c in percent})
            first, said = df["model"].iloc[0], df["prediction"].iloc[0]
            agree = int((df["prediction"] == said).sum())
            st.caption((f"All {len(df)} models say {said}." if agree == len(df) else
                        f"{agree} of {len(df)} models agree with {first} ({said}); the zoo models are weaker (table "
                        "above), so a split vote is common.") + " Calibrated probabilities, as each model's card says.")
            st.download_button("Every model's probabilities (CSV)", df.to_csv(index=False),
                               f"{name.rsplit('.', 1)[0]}_face{idx + 1}_models.csv", "text/csv", on_click="ignore")
