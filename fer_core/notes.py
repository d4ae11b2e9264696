"""The face notes: what a reader should know before trusting one face's answer. Each has a name, the short label
the CSV's `note` column and the tables carry, an icon and the sentence the Explain page and the CLI's explain
report show; `face_notes` decides which apply to a face. Costs are measured in docs/results.md."""
from __future__ import annotations

from dataclasses import dataclass

from .faces import SIDE_VIEW, SMALL_FACE_PX, FaceBox, head_turn

UNSURE_BELOW = 0.5  # a top probability under this gets a word: no class reached half


@dataclass(frozen=True)
class FaceNote:
    name: str
    label: str  # the word in the CSV and the tables
    icon: str
    sentence: str  # may hold {side} (the face's side in the photo's pixels) and {small} (SMALL_FACE_PX)


NOTES = {n.name: n for n in (
    FaceNote("small", "small face", "🔍",
             "A small face: {side:.0f} px across in the photo. Below {small} px the model lacks the detail it learned "
             "from, and its accuracy falls (docs/results.md: small faces)."),
    FaceNote("cut_off", "cut-off face", "✂️",
             "A face cut off by the picture's edges (forehead or chin missing): the model learned from whole faces, so "
             "the crop was framed in the picture's mean colour to show it at their size. Accuracy is lower on such "
             "faces (docs/results.md: faces cropped tight)."),
    FaceNote("turned", "turned photo", "🔄",
             "This face was found with the photo turned sideways or upside down (its orientation tag may have been "
             "lost), so the crop was turned upright. Accuracy is a little lower on such faces (docs/results.md: "
             "turned photos)."),
    FaceNote("side_view", "side view", "↪️",
             "A side view: the head is turned away from the camera. The model learned mostly from faces looking at it "
             "and is right 7-9 points less often on side views of test faces; its confidence drops with them "
             "(docs/results.md: side views)."),
    FaceNote("unsure", "unsure", "🤔",
             "Unsure: no class gets half of the probability — a mixed or subtle expression, or a face unlike the "
             "training faces (a six-class model, which has no neutral, also spreads a calm face over the six). The "
             "percentages are calibrated on validation faces: where it says 40%, it is right about 40% of the time."),
)}
SMALL_FACE, CUT_OFF, TURNED, SIDE, UNSURE = (NOTES[k].label for k in ("small", "cut_off", "turned", "side_view",
                                                                      "unsure"))
BY_LABEL = {n.label: n for n in NOTES.values()}


def note_sentence(label: str, side: float = float("nan")) -> str:
    """The sentence of the note whose label is `label`, for a face `side` px across in the photo."""
    return BY_LABEL[label].sentence.format(side=side, small=SMALL_FACE_PX)


def face_notes(source_side: float, confidence: float, cut_off: bool = False, box: FaceBox | None = None) -> list[str]:
    """The labels of the notes that apply to one face, in NOTES' order: "small face" (under SMALL_FACE_PX across
    in the photo), "cut-off face" (the picture cuts the face off, so the crop was framed: FaceCrop.widened),
    "turned photo" (found with the picture turned: `box`.turn, its crop turned upright), "side view" (the
    detector's landmarks put the nose SIDE_VIEW eye distances off the eyes' midline) and "unsure" (no class got
    UNSURE_BELOW). The app, the CLI's CSV and its explain report say the same."""
    side = box is not None and box.landmarks is not None and head_turn(box.landmarks) >= SIDE_VIEW
    return ([SMALL_FACE] if source_side < SMALL_FACE_PX else []) + ([CUT_OFF] if cut_off else []) + (
        [TURNED] if box is not None and box.turn else []) + ([SIDE] if side else []) + (
        [UNSURE] if confidence < UNSURE_BELOW else [])
