"""analyze(image, ...): the one place that chains read -> detect -> crop -> classify -> explain."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import cv2
import numpy as np

from .errors import NoFaceFound
from .faces import FINDABLE_PX, FaceBox, FaceCrop, crop_face, detect_faces, whole_image_crop
from .io import ImageSource, read_image
from .notes import face_notes
from .runtime import Predictor, load_predictor

MAX_FACES = 50  # analyze() keeps a photo's most confident faces up to this many


@dataclass(frozen=True)
class FaceResult:
    """One analysed face. `probs` (K,) sum to 1; each map in `maps` is float32 (h, w) in [0, 1] at
    the crop's size; `scores[method]` holds its faithfulness numbers; `regions[method]` the share of
    the map on each facial region."""

    index: int
    box: FaceBox | None
    face: np.ndarray
    probs: np.ndarray
    prediction: str
    confidence: float
    target: str
    landmarks: np.ndarray
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    regions: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    source_side: float = float("nan")  # the crop's side in the photo's pixels (FaceCrop.source_side)
    cut_off: bool = False  # the picture cut the face off and the crop was framed (FaceCrop.widened)

    @property
    def notes(self) -> list[str]:
        return face_notes(self.source_side, self.confidence, self.cut_off, self.box)


def find_faces(
    image: np.ndarray, *, whole_image: bool = False, detector: str = "auto",
    margin: float | None = None, align: bool = True,
) -> list[tuple[FaceBox | None, FaceCrop]]:
    """Detected faces (the most confident first) with their crops; the whole image as one face on request."""
    if whole_image:
        return [(None, whole_image_crop(image))]
    return [(b, crop_face(image, b, margin=margin, align=align)) for b in detect_faces(image, detector=detector)]


def analyze(
    image: ImageSource,
    *,
    predictor: Predictor | None = None,
    methods: Sequence[str] = (),
    target: str | int | None = None,
    layer: str | None = None,
    whole_image: bool = False,
    detector: str = "auto",
    margin: float | None = None,
    align: bool = True,
    faithfulness: bool = False,
    road: bool = False,
    method_options: dict[str, dict] | None = None,
    max_faces: int = MAX_FACES,
    explain_faces: Sequence[int] | None = None,
) -> list[FaceResult]:
    """Detect every face, classify it and explain it with each of `methods`.

    `target` (name or index) is the class to explain; default: each face's own prediction.
    `explain_faces`: the indices of the faces to explain (default all; the rest are classified only,
    and `explain_face` can explain one later). Raises UnreadableImage/ImageTooLarge for bad input and
    NoFaceFound when nothing is detected. A method that does not apply to the model (CAM on an MLP head)
    is reported in `errors`.
    """
    predictor = predictor or load_predictor()
    found = locate_faces(image, whole_image=whole_image, detector=detector, margin=margin, align=align,
                         max_faces=max_faces)
    results = []
    for r in classify_faces(predictor, found, target=target):
        if methods and (explain_faces is None or r.index in explain_faces):
            r = explain_face(predictor, r, methods, layer=layer, faithfulness=faithfulness, road=road,
                             method_options=method_options)
        results.append(r)
    return results


def locate_faces(
    image: ImageSource, *, whole_image: bool = False, detector: str = "auto", margin: float | None = None,
    align: bool = True, max_faces: int = MAX_FACES,
) -> list[tuple[FaceBox | None, FaceCrop]]:
    """analyze()'s first half, the same for every model: read the image and crop its `max_faces` most confident faces.
    Raises UnreadableImage/ImageTooLarge for bad input and NoFaceFound when nothing is detected."""
    rgb = read_image(image)
    found = find_faces(rgb, whole_image=whole_image, detector=detector, margin=margin, align=align)[:max_faces]
    if not found:
        h, w = rgb.shape[:2]
        if min(h, w) < FINDABLE_PX:
            raise NoFaceFound(f"no face found in the {w}×{h} image: it is too small for the detector (a face needs "
                              f"about {FINDABLE_PX} px or more across); for a face crop, use whole-image mode")
        raise NoFaceFound(f"no face found in the {w}×{h} image; try a larger, frontal face or whole-image mode")
    return found


def classify_faces(predictor: Predictor, found: Sequence[tuple[FaceBox | None, FaceCrop]], *,
                   target: str | int | None = None) -> list[FaceResult]:
    """analyze()'s second half: locate_faces()'s crops classified by one model (not yet explained)."""
    probs = predictor.predict([c.face for _, c in found])
    classes = predictor.classes
    results = []
    for i, ((box, crop), p) in enumerate(zip(found, probs)):
        pred = int(np.argmax(p))
        t = pred if target is None else (classes.index(target) if isinstance(target, str) else int(target))
        results.append(FaceResult(index=i, box=box, face=crop.face, probs=p, prediction=classes[pred],
                                  confidence=float(p[pred]), target=classes[t], landmarks=crop.landmarks,
                                  source_side=crop.source_side, cut_off=crop.widened))
    return results


def explain_face(
    predictor: Predictor, result: FaceResult, methods: Sequence[str], *, layer: str | None = None,
    faithfulness: bool = False, road: bool = False, method_options: dict[str, dict] | None = None,
) -> FaceResult:
    """`result` with a map and its region shares (and with `faithfulness`, its scores) for each of `methods`,
    explaining the result's `target`; a method that does not apply to the model is reported in `errors`."""
    from .explainers import explain, unsupported_reason
    from .regions import region_shares

    maps, scores, regions, errors = {}, {}, {}, {}
    x = predictor.input_tensor(result.face)
    size = result.face.shape[0]
    t = predictor.classes.index(result.target)
    forward = predictor.scorer()  # occlusion runs the module that predicted
    for m in methods:
        reason = unsupported_reason(predictor.model, m)
        if reason:
            errors[m] = reason
            continue
        options = (method_options or {}).get(m, {})
        small = explain(predictor.model, x, t, m, layer=layer, forward=forward, **options)
        maps[m] = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR).clip(0, 1)
        regions[m] = region_shares(maps[m], result.landmarks)
        if faithfulness:
            from .faithfulness import faithfulness_scores

            scores[m] = faithfulness_scores(predictor.model, x, small, t, scorer=forward, method=m, layer=layer,
                                            road=road, options=options)
    return replace(result, maps=maps, scores=scores, regions=regions, errors=errors)


def faithfulness_for(predictor: Predictor, result: FaceResult, method: str, *, layer: str | None = None,
                     road: bool = False, options: dict | None = None) -> dict[str, float]:
    """Faithfulness scores of one map of an analysed face (so a UI can show maps first, scores after);
    `options` are the ones the map was made with (analyze's method_options[method])."""
    from .faithfulness import faithfulness_scores

    s = predictor.spec.input_size
    small = cv2.resize(result.maps[method], (s, s), interpolation=cv2.INTER_AREA)
    t = predictor.classes.index(result.target)
    return faithfulness_scores(predictor.model, predictor.input_tensor(result.face), small, t,
                               scorer=predictor.scorer(), method=method, layer=layer, road=road, options=options)


def warm_up(predictor: Predictor, methods: Sequence[str] | None = None, *,
            method_options: dict[str, dict] | None = None) -> FaceResult:
    """One example face (the astronaut) analysed, explained with `methods` (those the model supports) and scored: a
    process's first explanation pays one-off set-up (the first backward pass, the prediction copy's first runs at
    occlusion's batch shapes) several times a later one's, so a server pays it once, before a person asks. `methods`
    default to the app's starting ones (explain.DEFAULT_METHODS)."""
    from .examples import astronaut
    from .explainers import DEFAULT_METHODS, unsupported_reason

    face = analyze(astronaut(), predictor=predictor, whole_image=True)[0]
    supported = [m for m in methods or DEFAULT_METHODS if unsupported_reason(predictor.model, m) is None]
    method_options = method_options or {}
    done = explain_face(predictor, face, supported, method_options=method_options)
    for m in done.maps:
        faithfulness_for(predictor, done, m, options=method_options.get(m))
    return done
