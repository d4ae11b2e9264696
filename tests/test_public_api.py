"""The public API is what the README says, and stays the same object however it is reached: every name in
`fer_core.__all__` imported as a user would, twice, in a fresh interpreter, with submodules imported in between;
then the README's library example."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_every_public_name_is_stable_across_accesses_and_imports():
    proc = run_fresh("""
        import importlib, pkgutil
        import fer_core
        first = {name: getattr(fer_core, name) for name in fer_core.__all__}
        for mod in pkgutil.iter_modules(fer_core.__path__):  # every submodule imported, as other code would
            if mod.name not in ("__main__",) and not mod.ispkg:
                importlib.import_module(f"fer_core.{mod.name}")
        for name in fer_core.__all__:
            again = getattr(fer_core, name)
            assert again is first[name], (name, first[name], again)
            exec(f"from fer_core import {name} as imported")
            assert imported is first[name], name
        assert callable(fer_core.explain) and not isinstance(fer_core.explain, type(fer_core))
        print("ok", len(fer_core.__all__), fer_core.__version__)
    """)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-2000:]


def test_version_is_the_packages():
    import tomllib

    import fer_core

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fer_core.__version__"}
    assert fer_core.__version__.count(".") == 2


def test_readme_library_example_runs(random_checkpoint):
    """The README's example, with the README's names, on a made-up photo (the test checkpoint stands in for the
    default so the test needs no trained weights)."""
    proc = run_fresh(f"""
        import numpy as np
        from skimage import data
        from fer_core import analyze, explain_face, load_predictor, EMOTIONS
        from fer_core import explain  # the function, even after the explainers were imported
        predictor = load_predictor({str(random_checkpoint)!r})
        photo = np.ascontiguousarray(data.astronaut())
        faces = analyze(photo, predictor=predictor, methods=["gradcam", "cam", "occlusion"], faithfulness=True)
        for face in faces:
            print(face.box, face.prediction, face.confidence, face.notes, face.regions["gradcam"], face.scores["gradcam"])
        third = explain_face(predictor, faces[0], ["gradcam", "occlusion"], faithfulness=True)
        assert set(third.maps) == {{"gradcam", "occlusion"}} and faces[0].prediction in predictor.classes
        assert callable(explain)
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
