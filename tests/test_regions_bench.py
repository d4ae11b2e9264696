"""bench/regions.py: where a model looks, per emotion, over the faces it gets right."""
import json

import numpy as np


from regions import MAP_SIDE, crop_landmarks, main, where_it_looks


def _face(astronaut):
    import cv2

    return cv2.resize(astronaut[60:180, 164:284], (64, 64), interpolation=cv2.INTER_AREA)  # her face, RAF-DB-like


def test_only_faces_it_gets_right_count_and_their_regions_come_from_their_landmarks(astronaut, predictor):
    from fer_core.regions import REGIONS

    face = _face(astronaut)
    lm = crop_landmarks(face)
    assert lm is not None and lm.shape == (5, 2) and (lm[0, 0] < lm[1, 0]) and (lm[:2, 1] < lm[3:, 1]).all()
    said = int(predictor.predict([face]).argmax())
    other = (said + 1) % 6
    out = where_it_looks(predictor, [face, face[:, ::-1].copy(), face], np.array([said, said, other]),
                         ["cam", "occlusion"], {"occlusion": {"window": 16, "stride": 8}})
    c, o = predictor.classes[said], predictor.classes[other]
    assert out["total"][c] == 2 and out["total"][o] == 1 and out["right"][o] == 0
    assert 1 <= out["right"][c] <= 2 and out["landmarks_found"] == out["right"][c]
    assert out["shares"]["cam"][o] is None and out["mean_maps"]["occlusion"][o] is None  # nothing right to average
    for m in ("cam", "occlusion"):
        shares = out["shares"][m][c]
        assert list(shares) == list(REGIONS) and abs(sum(shares.values()) - 1) < 1e-3
        assert np.asarray(out["mean_maps"][m][c]).shape == (MAP_SIDE, MAP_SIDE)
    assert abs(sum(out["area"].values()) - 1) < 1e-3 and 0.05 < out["area"]["mouth"] < 0.4
    json.dumps(out)  # all plain numbers


def test_main_adds_each_checkpoint_and_set_to_the_file(tmp_path, random_checkpoint, capsys):
    from tests.test_data import make_folder

    make_folder(tmp_path / "data" / "test", n_per_class=1)
    out = tmp_path / "regions.json"
    out.write_text(json.dumps({"other": {"raf-db": {}}}))
    main(["--model", str(random_checkpoint), "--data", f"toy={tmp_path / 'data' / 'test'}", "--methods", "cam",
          "--out", str(out)])
    doc = json.loads(out.read_text())
    assert set(doc) == {"other", "tiny"} and doc["tiny"]["toy"]["faces"] == 6
    assert doc["tiny"]["toy"]["command"].startswith("python bench/regions.py --model")
    assert "| (a map spread evenly) |" in capsys.readouterr().out or doc["tiny"]["toy"]["area"] is None
