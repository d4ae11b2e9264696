"""Model card: what each checkpoint was trained on, how, its curves, limits and intended use."""
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from fer_core.checkpoints import read_spec
from fer_core.explainers import EXPLAINERS
from fer_core.faces import COARSE_SIDE, MARGIN_COLOUR, MARGIN_GREY, TURN_BELOW

st.title("Model card")
name = ui.model_select_ui(key="card_model", label="Checkpoint")
if not name:
    st.stop()
spec = read_spec(name)
res = ui.load_results().get("checkpoints", {}).get(name, {})

c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Architecture", spec.arch)
c2.metric("Parameters", f"{res['parameters'] / 1e6:.2f} M" if res else "—")
c3.metric("RAF-DB test acc", f"{res['raf-db']['accuracy']:.1%}" if "raf-db" in res else "not evaluated")
c4.metric("FER2013 test acc", f"{res['fer2013']['accuracy']:.1%}" if "fer2013" in res else "not evaluated")
c5.metric("In the wild acc", f"{res['affectnet-hq-app']['accuracy']:.1%}" if "affectnet-hq-app" in res else "not evaluated",
          help="affectnet-hq val: web photos and portraits the model never trained on, through the app's detector and "
               "crop")

predictor = ui.get_predictor(name)
st.subheader("Training data and preprocessing")
st.markdown("\n".join(f"- {d}" for d in spec.train_data) or "- (not recorded)")
lines = [
    f"- input: {spec.input_size}×{spec.input_size} {'grayscale' if spec.grayscale else 'RGB'}, "
    f"normalised with mean {spec.mean} and std {spec.std}",
    f"- faces: a square {1 + 2 * MARGIN_COLOUR:.2f} times the detector's box for a colour face, "
    f"{1 + 2 * MARGIN_GREY:.2f} for a black-and-white one (the eyes about 0.46 / 0.39 of the crop apart on test "
    "faces in a frame, nearer the colour and the black-and-white training faces' framing), eyes levelled; a face "
    "that already fills the picture keeps its framing (whole image for pre-cropped sets); the detector also looks "
    f"at a {COARSE_SIDE}-px copy, so a face that "
    "fills a large photo is found, at a smoothed one when a grainy photo showed it none, and at the picture turned "
    f"a quarter either way and upside down when no face scored {TURN_BELOW} (a photo whose EXIF orientation was "
    "lost), so a turned face is cropped upright",
    "- calibration: logits ÷ temperature {:.3f} for colour faces, {:.3f} for black-and-white ones (fitted on the "
    "validation split's logits of the {} model that predicts here)".format(*predictor.temperatures,
                                                                         predictor.precision),
    f"- test-time flip averaging: {'yes' if spec.tta_flip else 'no'}",
    f"- inference here: {predictor.precision}, {predictor.runtime} (a calibrated checkpoint's int8 copy, else the "
    f"faster of eager and a TorchScript-frozen copy as measured on this machine; bfloat16 autocast only "
    f"where the CPU has native bf16; gradient explanations use the float32 model, occlusion and the deletion/"
    f"insertion scores the copy that predicts; the results file was measured "
    f"in {res.get('precision', 'float32')} {res.get('runtime', 'eager')})",
]
if spec.int8:
    lines.append(
        f"- int8: activation ranges from {spec.int8.get('samples')} training faces; on the validation split it "
        f"predicts the float32 model's class for {spec.int8.get('val_agreement', 0):.1%} of faces (accuracy "
        f"{spec.int8.get('val_accuracy_float32', 0):.1%} float32, {spec.int8.get('val_accuracy_int8', 0):.1%} int8)")
members = spec.metrics.get("members")
if members:
    w = spec.args.get("weight", 0.5)
    lines.append(
        "- a two-branch ensemble (`train/duo.py`): its logits are exactly "
        + " + ".join(f"{share:.1f} × {m['checkpoint']} (val macro-F1 {m.get('val_macro_f1') or 0:.3f})"
                     for share, m in zip((w, 1 - w), members))
        + "; one GAP + linear head reads both branches, so CAM and Grad-CAM explain the pair")
lines.append(f"- code version: {spec.git_commit or 'unknown'}")
st.markdown("\n".join(lines))


def stage_line(n: int, stage: dict) -> str:
    """One training stage in words: epochs, schedule, teachers, best validation macro-F1."""
    args, epochs = stage["args"], len(stage["history"])
    teachers = " + ".join(str(t).rsplit("/", 1)[-1] for t in args.get("teacher") or [])
    return (f"{n}. {epochs} epoch{'' if epochs == 1 else 's'}, {args.get('schedule', '?')} schedule from learning "
            f"rate {args.get('lr', '?')}" + (f", distilled from {teachers}" if teachers else "")
            + f"; best validation macro-F1 {stage['metrics'].get('val_macro_f1', float('nan')):.4f}")


stages = spec.runs()
if len(stages) > 1:
    st.markdown("**Trained in stages**, each fine-tuning the one before (`train.py --init`):\n"
                + "\n".join(stage_line(n, s) for n, s in enumerate(stages, start=1)))
if spec.args:
    with st.expander("Training arguments"):
        args = {("value" if len(stages) == 1 else f"stage {n}"): {k: str(v) for k, v in s["args"].items()}
                for n, s in enumerate(stages, start=1)}
        st.dataframe(pd.DataFrame(args).fillna("—").rename_axis("argument"), width="stretch")

curves = pd.DataFrame(spec.stages())
if len(curves):
    st.subheader("Training curves")
    tabs = st.tabs(["loss", "accuracy", "macro-F1"])
    starts = curves.groupby("stage")["total_epoch"].min().iloc[1:] - 0.5  # where each fine-tune began
    for tab, key in zip(tabs, ["loss", "accuracy", "macro_f1"]):
        cols = [c for c in (f"train_{key}", f"val_{key}") if c in curves]
        fig = px.line(curves, x="total_epoch", y=cols, markers=True, labels={"total_epoch": "epoch"})
        for x in starts:
            fig.add_vline(x=x, line_dash="dot", line_color="gray")
        tab.plotly_chart(fig, width="stretch", key=f"curve_{key}")
    st.caption("Train numbers are on augmented batches; validation is a stratified, seeded 10% of the training "
               "folders (never the test split)." + (" A dotted line marks where a fine-tune started." if len(starts) else ""))


@st.cache_data(show_spinner=False)
def class_balance(train_data: tuple) -> pd.DataFrame:
    from pathlib import Path

    from fer_core.data import datasets_root, load_labelled_folder

    rows = []
    for d in train_data:
        root = Path(d.split(" (")[0])
        root = root if root.is_absolute() else datasets_root() / root
        try:  # a folder, or a named set's labels CSV (fer2013/ferplus7_train_labels.csv)
            f = load_labelled_folder(root.parent, root) if root.suffix == ".csv" else load_labelled_folder(root)
        except (FileNotFoundError, ValueError):
            continue
        name = root.stem.removesuffix("_train_labels") if root.suffix == ".csv" else f.root.parent.name
        rows += [{"set": name, "emotion": e, "images": n} for e, n in zip(ui.CLASSES_7, f.class_counts())]
    return pd.DataFrame(rows)


bal = class_balance(spec.train_data)
if len(bal):
    st.subheader("Class balance of the training data")
    st.plotly_chart(px.bar(bal, x="emotion", y="images", color="set", barmode="group"), width="stretch")

if res:
    st.subheader("Per-class recall on the evaluation sets")
    rec = pd.DataFrame({label: pd.Series(res[ds]["recall"], index=ui.class_list(len(res[ds]["recall"])))
                        for ds, label in ui.TEST_SETS.items() if ds in res})
    # a class a set does not have (neutral in the six-class benchmarks) stays empty
    st.dataframe(rec.map(lambda v: "" if v != v else f"{v:.0%}"), width="stretch")
    wild = res.get("affectnet-hq-app", {})
    if wild.get("by_source"):
        st.caption("In the wild, per source: " + "; ".join(
            f"{src} ({v['n']} faces) {v['accuracy']:.1%} right, macro-F1 {v['macro_f1']:.3f}"
            for src, v in wild["by_source"].items()) + ". FFHQ portraits hold 99% of the pool's happiness faces, so "
            "each source's numbers say whether the model reads the face or the framing.")
rel = {ds: res[ds] for ds in ("raf-db", "fer2013", "affectnet-hq-app") if "reliability" in res.get(ds, {})}
if rel:
    st.subheader("Are its percentages honest?")
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                               line={"dash": "dot", "color": "gray"}))
    for ds, r in rel.items():
        bins = [(c, a, n) for c, a, n in zip(*(r["reliability"][k] for k in ("confidence", "accuracy", "count"))) if n]
        if not bins:
            continue
        conf, acc, count = (list(v) for v in zip(*bins))
        fig.add_trace(go.Scatter(
            x=conf, y=acc, mode="lines+markers", customdata=count, name=f"{ui.TEST_SETS.get(ds, ds)} (ECE {r['ece_after']:.1%})",
            marker={"size": [min(22, 4 + n ** 0.5 / 2) for n in count]},
            hovertemplate="confidence %{x:.2f}<br>right %{y:.0%}<br>%{customdata} faces<extra></extra>"))
    fig.update_layout(xaxis_title="the model's confidence (calibrated)", yaxis_title="share answered right",
                      xaxis_range=[0, 1.02], yaxis_range=[0, 1.02], height=420)
    st.plotly_chart(fig, width="stretch")
    st.caption("Test faces grouped by the top probability the app shows (15 equal bins; a larger dot holds more "
               "faces). On the dotted line a 70% answer is right 70% of the time. Expected calibration error "
               + ", ".join(f"{ds} {r['ece_before']:.1%} before temperature scaling → {r['ece_after']:.1%} after"
                           + (f" (a perfectly calibrated model would show about {r['ece_floor']['mean']:.1%} on these "
                              f"{r['n']:,} faces)" if "ece_floor" in r else "")
                           for ds, r in rel.items()) + " (`python train/evaluate.py`).")

looks = ui.load_regions().get(name, {})
if looks:
    st.subheader("Where it looks, per emotion")
    sets = list(looks)
    ds = st.radio("Test set", sets, horizontal=True, key="card_regions_set") if len(sets) > 1 else sets[0]
    r = looks[ds]
    # occlusion's mean maps first: sharper than the 4x4 CAM's, which lean on the mouth for every emotion
    method = st.radio("Map", r["methods"], horizontal=True, key="card_regions_method",
                      index=r["methods"].index("occlusion") if "occlusion" in r["methods"] else 0,
                      format_func=lambda m: EXPLAINERS[m].label if m in EXPLAINERS else m)
    for col, c in zip(st.columns(len(r["classes"])), r["classes"]):
        mean_map = r["mean_maps"][method][c]
        if mean_map is None:
            col.caption(f"**{c}**: no face right")
            continue
        col.image(ui.mean_map_image(mean_map, r["landmarks"], r["side"]), width="stretch",
                  caption=f"{c} ({r['right'][c]} faces)")
    shares = {c: s for c, s in r["shares"][method].items() if s}
    if r.get("area"):
        shares["(a map spread evenly)"] = r["area"]
    st.dataframe(pd.DataFrame(shares).T.map(lambda v: f"{v:.0%}"), width="stretch")
    st.caption(
        f"The mean map of the {ds} test faces of each emotion that this model gets right ({sum(r['right'].values())} "
        f"of {r['faces']}; scored whole, the maps explaining the prediction), each stretched to its own range; the "
        "outlines are the eyes & brows, nose and mouth regions at the faces' mean landmarks. The table gives each "
        "region's share of the map, averaged over those faces with each face's own regions; the last row is what a "
        "map spread evenly would give, so a region above it draws the map's attention. Where the model looks is not "
        f"why a person shows the emotion. (`{r['command'].strip()}`)")

st.subheader("Intended use and limitations")
st.markdown(
    """
- **Intended use**: learning and research about facial-expression classifiers and their explanations;
  curiosity about what a model attends to.
- **Not for**: diagnosis, hiring, policing, surveillance, lie detection or any decision about a person.
  A face shows an *expression*, not a felt emotion.
- **The live camera** (Live page) labels and explains each frame as it arrives and keeps only the last frame in
  memory (for "freeze"): it records nothing, stores nothing and reads no identity; a face's number is only a track
  between frames (it changes when the face leaves the view).
- **Classes**: the six basic emotions and, for a model that has it (the default), **neutral**. A six-class model
  (the zoo, as in the paper) has no neutral, so a calm face is forced into one of the six. Contempt and mixed
  expressions are not classes: a mixed face spreads its probability, and a subtle expression may be called
  neutral.
- **Where the neutral faces came from**: FER2013's neutral faces under the FER+ annotators' majority (48-px
  greyscale), the neutral AffectNet-HQ/FFHQ portraits (stored at 48 px, so blurrier) and a webcam collection of
  young adults of one population photographed frontally in class. They do not cover children or older people
  well, strong side views, or every skin tone and lighting; on faces unlike these, a calm face may still be given
  an emotion, and a quiet emotion (mild sadness) may be called neutral. Training saw greyscale and low-resolution
  views of every source so that "grey" or "blurry" does not mean neutral; docs/results.md measures both.
- **Accuracy differs across datasets and people**: RAF-DB (web photos) and FER2013 (48 px grayscale)
  give different numbers, and faces unlike the training data (age, skin tone, lighting, occlusion,
  head pose, glasses, masks) are less reliable. Check the per-class recall above — rare classes
  (fear, disgust) are the weakest.
- **Small faces**: a face under 24 px across in the photo has lost detail the model uses, and every few
  pixels below that cost several points of accuracy (README: small faces); the Explain page marks them.
- **Cut-off faces**: a photo that cuts off forehead and chin (a close-up, a tight crop from another dataset) is
  framed wider for the model, but what is cut off is gone: 4–9 points lower on test faces cut to their central
  70% (README: faces cropped tight); the Explain page and the CSV mark them.
- **Turned photos**: a photo turned sideways or upside down (its orientation tag lost) is also searched turned,
  and a face found so is cropped upright: 2–7 points lower than upright on turned test faces, and a turned face
  the detector is unsure of is missed (README: turned photos); the Explain page and the CSV mark them.
- **Side views**: a head turned away from the camera (the nose well off the eyes' midline) is right less often:
  on test faces in a plain frame, 80% against 88% for the rest of RAF-DB's, 66% against 73% for FER2013's; the
  confidence drops with it (README: side views); the Explain page and the CSV mark them.
- **Privacy**: photos are read in memory and never saved; a video is decoded from a temporary folder that is
  removed when its analysis ends. Recent results are cached in the server's memory; nothing is sent anywhere.
- **Explanations are approximations**: maps from different methods disagree; Guided Grad-CAM and Eigen-CAM fail
  the sanity check. Read the faithfulness scores before trusting a map.
"""
)
