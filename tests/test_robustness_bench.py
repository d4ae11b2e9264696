"""bench/robustness.py: every corruption is deterministic, keeps shape and dtype, and changes the face."""

import numpy as np
import pytest
import torch


from robustness import CORRUPTIONS, corrupt_batch, face_size_corruptions


def test_corruptions_are_seeded_and_change_the_image(astronaut):
    import cv2

    face = cv2.resize(astronaut[20:220, 150:350], (64, 64), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.stack([face, face[:, ::-1]]).copy()).permute(0, 3, 1, 2).contiguous()
    for name, fn in CORRUPTIONS.items():
        a, b = corrupt_batch(x, fn, seed=1), corrupt_batch(x, fn, seed=1)
        assert a.shape == x.shape and a.dtype == torch.uint8, name
        assert torch.equal(a, b), name
        changed = (a.int() - x.int()).abs().float().mean().item()
        assert (changed == 0) == (name == "clean"), (name, changed)


def test_face_size_rows_lose_more_detail_the_smaller_the_face(astronaut):
    import cv2

    face = cv2.resize(astronaut[20:220, 150:350], (64, 64), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(face[None].copy()).permute(0, 3, 1, 2).contiguous()
    rows = face_size_corruptions([12, 24, 48])
    assert list(rows) == ["clean", "face 12 px", "face 24 px", "face 48 px"]
    lost = [(corrupt_batch(x, rows[f"face {s} px"]).int() - x.int()).abs().float().mean().item() for s in (12, 24, 48)]
    assert lost[0] > lost[1] > lost[2] > 0


def test_detection_bench_frames_a_crop_with_surroundings_and_scores_the_central_face(astronaut):
    """bench/detection.py --context: the crop is mirrored outwards and the face it scores is the one in the
    middle (a mirrored half-face can be found too), framed by the app's crop rule (a colour face: eyes ~0.45 apart)."""
    from detection import central, resized

    from fer_core.pipeline import find_faces

    tight = astronaut[60:180, 165:285]  # the face, about as tightly as RAF-DB crops it
    framed = resized(tight, 400, context=0.5)
    assert framed.shape[:2] == (400, 400)  # 120 px padded by 60 on every side, then resized
    found = find_faces(framed)
    dist = [abs(b.x + b.w / 2 - 200) + abs(b.y + b.h / 2 - 200) for b, _ in found]
    crop = central(found, framed.shape)[1]
    assert crop is found[int(np.argmin(dist))][1] and min(dist) < 40
    assert 0.41 < crop.eyes_apart < 0.48  # the old 5% margin: 0.36


def test_detection_bench_plain_border_and_turned_picture(astronaut):
    """--plain: the border is the crop's mean colour (one face, no mirrored ones); --turn k: the picture turned k
    quarter turns anticlockwise last, whose one face the detector turns back upright."""
    from detection import central, resized

    from fer_core.pipeline import find_faces

    tight = astronaut[60:180, 165:285]
    plain = resized(tight, 400, context=0.5, plain=True)
    assert (plain[0, 0] == tight.reshape(-1, 3).mean(0).astype(int)).all()
    turned = resized(tight, 400, context=0.5, plain=True, turn=1)
    assert (turned == np.rot90(plain)).all()
    found = find_faces(turned)
    assert len(found) == 1 and len(find_faces(resized(tight, 400, context=0.5))) > 1  # mirrored faces around it
    crop, upright = central(found, turned.shape)[1].face, find_faces(plain)[0][1].face
    assert crop.shape == upright.shape and np.abs(crop.astype(float) - upright).mean() < 12  # not sideways


def test_detection_bench_splits_the_faces_found_by_head_turn():
    """--by-pose: frontal faces and side views (fer_core.faces.SIDE_VIEW) apart, each with its share of the faces
    found, accuracy and mean top probability; a face without landmarks (NaN) is in neither part."""
    from detection import by_pose

    turns = np.array([0.05, 0.3, np.nan, 0.25, 0.1])
    right = np.array([True, False, True, True, False])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.2, 0.8], [0.7, 0.3]])
    frontal, side = by_pose(turns, right, probs).values()
    assert frontal == pytest.approx({"share": 0.4, "accuracy": 0.5, "confidence": 0.8})
    assert side == pytest.approx({"share": 0.4, "accuracy": 0.5, "confidence": 0.7})
    assert list(by_pose(np.array([0.0]), right[:1], probs[:1])) == [next(iter(by_pose(turns, right, probs)))]
