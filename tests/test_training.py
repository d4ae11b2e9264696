import json
from pathlib import Path

import pytest

from fer_core.checkpoints import load_checkpoint
from tests.test_data import make_folder



@pytest.mark.parametrize("arch", ["fernet", "baseline"])
def test_one_epoch_smoke_training(tmp_path, monkeypatch, arch):
    import train as train_script

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=6)
    out = tmp_path / "m.safetensors"
    # baseline: mixing, and half the draws framed as the app crops a photo (the drawn faces have no face a detector
    # sees, so they keep their crops: the plumbing is what runs here; tests/test_framing.py checks the copies)
    mixing = ["--mixup", "0.2", "--cutmix", "1.0", "--mix-prob", "0.9", "--app-framed", "0.5"] if arch == "baseline" else []
    sam = ["--sam", "0.05"] if arch == "fernet" else []
    args = train_script.get_args_parser().parse_args(
        ["--arch", arch, "--data", str(data), "--epochs", "1", "--batch-size", "8", "--out", str(out),
         "--val-fraction", "0.2", "--perspective", "0.2", "--jpeg", "0.5", *mixing, *sam]
    )
    metrics = train_script.main(args)
    model, spec = load_checkpoint(out)
    assert spec.arch == arch and len(spec.history) == 1
    assert {"train_loss", "val_accuracy", "val_macro_f1", "train_macro_f1"} <= set(spec.history[0])
    assert spec.temperature > 0 and "val_ece_after" in metrics
    assert spec.args["epochs"] == 1 and spec.train_data
    assert spec.args["cutmix"] == (1.0 if arch == "baseline" else 0.0)
    assert spec.args["sam"] == (0.05 if arch == "fernet" else 0.0)
    assert spec.args["app_framed"] == (0.5 if arch == "baseline" else 0.0)
    json.dumps(spec.metrics)


def test_training_resumes(tmp_path, monkeypatch):
    import train as train_script

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=4)
    out = tmp_path / "r.safetensors"
    base = ["--arch", "fernet", "--data", str(data), "--batch-size", "8", "--out", str(out), "--val-fraction", "0.25"]
    train_script.main(train_script.get_args_parser().parse_args(base + ["--epochs", "1"]))
    assert out.with_suffix(".state.pt").is_file()
    train_script.main(train_script.get_args_parser().parse_args(base + ["--epochs", "2"]))
    _, spec = load_checkpoint(out)
    assert [h["epoch"] for h in spec.history] == [1, 2]


def test_sweep_writes_table(tmp_path, monkeypatch):
    import sweep

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=4)
    rows = sweep.main(sweep.get_args_parser().parse_args(
        ["--arch", "baseline", "--data", str(data), "--lr", "0.01", "0.001", "--batch-size", "8",
         "--epochs", "1", "--out", str(tmp_path / "sweep"), "--extra", "--val-fraction 0.25"]))
    assert len(rows) == 2 and (tmp_path / "sweep" / "sweep.md").read_text().count("baseline_lr") == 2
    assert rows[0]["val_macro_f1"] >= rows[1]["val_macro_f1"]


def test_init_from_checkpoint(tmp_path, monkeypatch):
    import train as train_script

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=4)
    base = ["--data", str(data), "--batch-size", "8", "--val-fraction", "0.25", "--epochs", "1"]
    first = tmp_path / "a.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(base + ["--arch", "fernet", "--out", str(first)]))
    second = tmp_path / "b.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        base + ["--arch", "fernet", "--init", str(first), "--out", str(second)]))
    _, spec = load_checkpoint(second)
    assert spec.args["init"] == str(first)
    _, parent = load_checkpoint(first)
    assert spec.lineage == (parent.as_stage(),) and parent.lineage == ()
    third = tmp_path / "c.safetensors"  # a fine-tune of the fine-tune: both earlier runs, oldest first
    train_script.main(train_script.get_args_parser().parse_args(
        base + ["--arch", "fernet", "--init", str(second), "--out", str(third), "--epochs", "2"]))
    _, grandchild = load_checkpoint(third)
    assert [s["args"]["out"] for s in grandchild.lineage] == [str(first), str(second)]
    stages = grandchild.stages()
    assert [(r["stage"], r["epoch"], r["total_epoch"]) for r in stages] == [(1, 1, 1), (2, 1, 2), (3, 1, 3), (3, 2, 4)]
    with pytest.raises(SystemExit, match="not a baseline"):
        train_script.main(train_script.get_args_parser().parse_args(
            base + ["--arch", "baseline", "--init", str(first), "--out", str(tmp_path / "d.safetensors")]))


def test_promote_keeps_only_better_on_validation(tmp_path, monkeypatch):
    import promote
    import torch

    from fer_core.checkpoints import ModelSpec, read_spec, save_checkpoint
    from fer_core.models import create_model

    monkeypatch.setattr(promote, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    model = create_model("baseline")
    runs = {}
    for name, f1 in [("good", 0.6), ("worse", 0.5)]:
        runs[name] = save_checkpoint(model, ModelSpec(arch="baseline", metrics={"val_macro_f1": f1}),
                                     tmp_path / name / "baseline.safetensors")
    def args(argv):  # these runs record no training data to calibrate int8 on (test_quantize does)
        return promote.get_args_parser().parse_args(argv + ["--no-int8"])

    assert promote.main(args([str(runs["good"])])) is True
    dest = tmp_path / "checkpoints" / "baseline.safetensors"
    stale = tmp_path / "checkpoints" / "baseline.lineage.json"  # train/lineage.py's record for the run replaced
    stale.write_text("{}")
    assert read_spec(dest).metrics["val_macro_f1"] == 0.6
    assert dest.stat().st_size < runs["good"].stat().st_size * 0.6  # stored as float16
    loaded, _ = load_checkpoint(dest)
    assert next(loaded.parameters()).dtype == torch.float32  # and restored as float32
    assert promote.main(args([str(runs["worse"])])) is False
    assert read_spec(dest).metrics["val_macro_f1"] == 0.6
    assert stale.is_file()  # kept while its run stays
    assert promote.main(args([str(runs["worse"]), "--force"])) is True
    assert not stale.exists()
    assert read_spec(dest).metrics["val_macro_f1"] == 0.5
    bare = save_checkpoint(model, ModelSpec(arch="baseline"), tmp_path / "bare.safetensors")
    with pytest.raises(SystemExit, match="no validation macro-F1"):
        promote.main(args([str(bare)]))


def test_distillation_loss_and_teacher_ensemble():
    import torch

    from fer_core.models import create_model
    from fer_core.training import Ensemble, distillation_loss

    torch.manual_seed(0)
    s, t = torch.randn(5, 6), torch.randn(5, 6)
    assert float(distillation_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    manual = (torch.softmax(t / 2, 1) * (torch.log_softmax(t / 2, 1) - torch.log_softmax(s / 2, 1))).sum(1).mean() * 4
    assert float(distillation_loss(s, t, 2.0)) == pytest.approx(float(manual), rel=1e-5)
    a, b = create_model("baseline").eval(), create_model("baseline").eval()
    ens = Ensemble([a, b]).train()
    assert not any(m.training for m in ens.modules()) and not any(p.requires_grad for p in ens.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ens(x), (a(x) + b(x)) / 2)


def test_training_with_a_teacher(tmp_path, monkeypatch):
    import train as train_script

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=4)
    base = ["--data", str(data), "--batch-size", "8", "--val-fraction", "0.25", "--epochs", "1", "--arch", "baseline"]
    teacher = tmp_path / "t.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(base + ["--out", str(teacher)]))
    student = tmp_path / "s.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        base + ["--out", str(student), "--teacher", str(teacher), str(teacher), "--distill-alpha", "0.7"]))
    _, spec = load_checkpoint(student)
    assert spec.args["teacher"] == [str(teacher)] * 2 and spec.args["distill_alpha"] == 0.7
    with pytest.raises(SystemExit, match="student reads"):
        train_script.main(train_script.get_args_parser().parse_args(
            base + ["--out", str(tmp_path / "g.safetensors"), "--grayscale", "--teacher", str(teacher)]))
    # a student of another input size: the 64-px teacher reads its batches resized back to 64 px
    big = tmp_path / "s80.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        base + ["--arch", "fernet", "--width", "8", "--input-size", "80", "--out", str(big), "--teacher", str(teacher)]))
    assert load_checkpoint(big)[1].input_size == 80


def test_a_resized_teacher_reads_its_own_input_size():
    import torch
    import torch.nn.functional as F

    from fer_core.models import create_model
    from fer_core.training import Resized

    torch.manual_seed(0)
    model = create_model("baseline").eval()
    x80 = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        want = model(F.interpolate(x80, size=(64, 64), mode="bilinear", antialias=True, align_corners=False))
        torch.testing.assert_close(Resized(model, 64)(x80), want)
        x64 = torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(Resized(model, 64)(x64), model(x64))  # its own size passes unchanged


def test_width_is_recorded_and_rebuilt(tmp_path, monkeypatch):
    import torch
    import train as train_script

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=4)
    base = ["--data", str(data), "--batch-size", "8", "--val-fraction", "0.25", "--epochs", "1", "--width", "16"]
    out = tmp_path / "w.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        base + ["--arch", "fernet", "--last-stride", "1", "--out", str(out)]))
    model, spec = load_checkpoint(out)
    assert spec.model_kwargs == {"width": 16, "last_stride": 1} and spec.args["width"] == 16
    assert sum(p.numel() for p in model.parameters()) < 1_000_000  # a quarter of the default's channels²
    assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape[-2:] == (8, 8)
    with pytest.raises(SystemExit, match="does not take --width$"):
        train_script.main(train_script.get_args_parser().parse_args(
            base + ["--arch", "baseline", "--out", str(tmp_path / "b.safetensors")]))


def test_mix_batch_mixes_images_and_labels_by_the_same_share():
    import torch

    from fer_core.training import mix_batch

    n = 16
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()
    y = torch.arange(n)
    same, y2, lam = mix_batch(x, y, mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.0)
    assert same is x and lam == 1.0 and torch.equal(y2, y)
    torch.manual_seed(0)
    for _ in range(20):  # mixup: every pixel is lam · own + (1 - lam) · partner
        xm, y2, lam = mix_batch(x, y, mixup_alpha=0.4)
        assert 0.0 <= lam <= 1.0
        expected = lam * y.float() + (1 - lam) * y2.float()
        assert torch.allclose(xm[:, :, 0, 0], expected.view(n, 1).expand(n, 3), atol=1e-5)
    for _ in range(20):  # CutMix: the share of own pixels is lam; the rest is the partner's
        xm, y2, lam = mix_batch(x, y, cutmix_alpha=1.0)
        own = (xm[:, 0] == y.float().view(n, 1, 1)).float().mean((1, 2))
        moved = y2 != y
        assert torch.allclose(own[moved], torch.full_like(own[moved], lam), atol=1e-6)
        assert ((xm[:, 0] == y.float().view(n, 1, 1)) | (xm[:, 0] == y2.float().view(n, 1, 1))).all()
    assert torch.equal(x, torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 32, 32))  # not in place


def _one_step(model, x_u8, y, *, lr, sam_rho, seed=0, targets=None):
    import numpy as np
    import torch

    from fer_core.checkpoints import ModelSpec
    from fer_core.training import train_one_epoch

    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return train_one_epoch(
        model, x_u8, y, np.arange(len(y)), spec=ModelSpec(arch="fernet"), augment=None, optimizer=opt,
        scheduler=None, criterion=torch.nn.CrossEntropyLoss(), batch_size=len(y), device=torch.device("cpu"),
        bf16=False, sam_rho=sam_rho, max_grad_norm=0, targets=targets)


def test_sam_step_undoes_its_ascent_counts_the_batch_once_and_changes_the_update():
    import copy

    import torch

    from fer_core.models import create_model

    torch.manual_seed(0)
    base = create_model("fernet", width=8)
    x_u8 = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8)
    y = torch.arange(16) % 6

    def bn_stats(m):
        return [t.clone() for n, t in m.state_dict().items() if "running_" in n]

    # lr 0: the weights must come back exactly (the ascent is undone) and the running statistics must
    # be those of one forward pass (the second, perturbed pass does not count the batch again)
    plain, sam = copy.deepcopy(base), copy.deepcopy(base)
    _one_step(plain, x_u8, y, lr=0.0, sam_rho=0.0)
    _one_step(sam, x_u8, y, lr=0.0, sam_rho=0.5)
    for a, b in zip(plain.parameters(), sam.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(bn_stats(plain), bn_stats(sam)):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(bn_stats(base), bn_stats(sam)))
    assert all(m.momentum == 0.1 for m in sam.modules() if isinstance(m, torch.nn.BatchNorm2d))

    # lr > 0: SAM's update is the gradient at the perturbed weights, not the plain one
    plain, sam = copy.deepcopy(base), copy.deepcopy(base)
    _one_step(plain, x_u8, y, lr=0.1, sam_rho=0.0)
    _one_step(sam, x_u8, y, lr=0.1, sam_rho=0.5)
    moved_plain = torch.cat([(p - q).flatten() for p, q in zip(plain.parameters(), base.parameters())])
    moved_sam = torch.cat([(p - q).flatten() for p, q in zip(sam.parameters(), base.parameters())])
    assert moved_plain.abs().sum() > 0 and moved_sam.abs().sum() > 0
    assert not torch.allclose(moved_plain, moved_sam, atol=1e-6)


def test_sam_ascent_moves_the_weights_by_rho():
    import torch

    from fer_core.training import sam_ascent, sam_descent_back

    lin = torch.nn.Linear(4, 3)
    lin(torch.randn(5, 4)).pow(2).sum().backward()
    before = [p.detach().clone() for p in lin.parameters()]
    moved = sam_ascent(lin, 0.05)
    step = torch.cat([(p - b).flatten() for p, b in zip(lin.parameters(), before)])
    assert torch.linalg.vector_norm(step).item() == pytest.approx(0.05, rel=1e-4)
    grad = torch.cat([p.grad.flatten() for p in lin.parameters()])
    assert torch.nn.functional.cosine_similarity(step, grad, dim=0).item() == pytest.approx(1.0, abs=1e-5)
    sam_descent_back(moved)
    for p, b in zip(lin.parameters(), before):
        assert torch.equal(p.detach(), b)


def test_a_separate_forward_computes_the_training_logits_and_the_model_learns_through_it():
    """train_one_epoch's `forward` (fit's torch.compile'd model) is what the step calls, twice under SAM,
    and the update lands in the plain model's weights (the same step as without it)."""
    import copy

    import numpy as np
    import torch

    from fer_core.checkpoints import ModelSpec
    from fer_core.models import create_model
    from fer_core.training import train_one_epoch

    torch.manual_seed(0)
    base = create_model("fernet", width=8)
    x_u8 = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8)
    y = torch.arange(16) % 6
    for rho, calls_per_step in ((0.0, 1), (0.5, 2)):
        plain, routed = copy.deepcopy(base), copy.deepcopy(base)
        calls = []

        def forward(x, m=routed):
            calls.append(len(x))
            return m(x)

        _one_step(plain, x_u8, y, lr=0.1, sam_rho=rho)
        torch.manual_seed(0)
        train_one_epoch(
            routed, x_u8, y, np.arange(16), spec=ModelSpec(arch="fernet"), augment=None,
            optimizer=torch.optim.SGD(routed.parameters(), lr=0.1), scheduler=None,
            criterion=torch.nn.CrossEntropyLoss(), batch_size=16, device=torch.device("cpu"), bf16=False,
            sam_rho=rho, max_grad_norm=0, forward=forward)
        assert calls == [16] * calls_per_step
        for a, b in zip(plain.parameters(), routed.parameters()):
            assert torch.equal(a, b)
        assert any(not torch.equal(a, b) for a, b in zip(base.parameters(), routed.parameters()))


def test_compiling_a_distilled_run_compiles_the_teachers_too(tmp_path, monkeypatch):
    """fit with TrainConfig(compile=...) routes the student's training forward and the teachers' forward through
    `compiled` (the teachers' eager forward was most of a distilled GPU step), and both are called."""
    import numpy as np
    import torch

    import fer_core.training as training
    from fer_core.checkpoints import ModelSpec
    from fer_core.models import create_model

    torch.manual_seed(0)
    student, teacher = create_model("fernet", width=8), training.Ensemble([create_model("fernet", width=8)])
    calls = {}

    def fake_compiled(module, mode):
        def run(x):
            calls[id(module)] = calls.get(id(module), 0) + 1
            return module(x)
        return run

    monkeypatch.setattr(training, "compiled", fake_compiled)
    x_u8 = torch.randint(0, 256, (24, 3, 64, 64), dtype=torch.uint8)
    config = training.TrainConfig(epochs=1, batch_size=8, bf16=False, compile="default")
    training.fit(student, config, spec=ModelSpec(arch="fernet", model_kwargs={"width": 8}), x_u8=x_u8,
                 y=torch.arange(24) % 6, train_idx=np.arange(16), val_idx=np.arange(16, 24),
                 out=tmp_path / "s.safetensors", augment=None, teacher=teacher, log=lambda _: None)
    assert calls == {id(student): 2, id(teacher): 2}  # two batches, each through both compiled callables


def _committed_and_a_copy(tmp_path, monkeypatch, arch: str):
    """A 1-epoch run promoted into a temporary checkpoints/ as fernet.safetensors, and a copy of it elsewhere
    (the same network, the same validation split); promote's parse_args."""
    import shutil

    import promote
    import train as train_script

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(promote, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    data = make_folder(tmp_path / "train", n_per_class=4)
    run = tmp_path / "fernet.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        ["--arch", arch, "--data", str(data), "--epochs", "1", "--batch-size", "8", "--out", str(run),
         "--val-fraction", "0.25"]))
    args = promote.get_args_parser().parse_args
    assert promote.main(args([str(run), "--no-int8", "--dtype", "float32"])) is True
    copy = tmp_path / "copy" / "fernet.safetensors"
    copy.parent.mkdir()
    shutil.copy(run, copy)
    return copy, args


def test_validation_predictions_feed_each_run_its_own_input_size(tmp_path, monkeypatch):
    """A run trained at 80 px (train.py --input-size 80) is re-scored on the validation faces decoded at 80 px, the
    committed 64-px one at 64: its fully convolutional network would also take 64-px faces, and score lower."""
    import quantize
    import train as train_script

    committed, _ = _committed_and_a_copy(tmp_path, monkeypatch, "fernet")
    big = tmp_path / "f80.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        ["--arch", "fernet", "--data", str(tmp_path / "train"), "--epochs", "1", "--batch-size", "8", "--out", str(big),
         "--val-fraction", "0.25", "--input-size", "80"]))
    sizes = []
    real = quantize.predict_logits
    monkeypatch.setattr(quantize, "predict_logits", lambda m, x, **kw: sizes.append(tuple(x.shape[-2:])) or real(m, x, **kw))
    y, preds = quantize.validation_predictions(committed, big)
    assert sizes == [(64, 64), (80, 80)] and len(y) == len(preds[0]) == len(preds[1]) == 6


def test_evaluate_scores_a_run_at_its_own_input_size(tmp_path, monkeypatch):
    """train/evaluate.py decodes the test split at each model's input size (it refused any but 64 px)."""
    import evaluate
    import train as train_script

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=4)
    test = make_folder(tmp_path / "test", n_per_class=2)
    runs = []
    for size in (64, 80):
        runs.append(tmp_path / f"f{size}.safetensors")
        train_script.main(train_script.get_args_parser().parse_args(
            ["--arch", "fernet", "--width", "8", "--data", str(data), "--epochs", "1", "--batch-size", "8",
             "--out", str(runs[-1]), "--val-fraction", "0.25", "--input-size", str(size)]))
    sizes = []
    real = evaluate.evaluate_on
    monkeypatch.setattr(evaluate, "evaluate_on",
                        lambda p, x, y, *rest, **kw: sizes.append(x.shape[-1]) or real(p, x, y, *rest, **kw))
    out = evaluate.main(evaluate.get_args_parser().parse_args(
        ["--models", *map(str, runs), "--data", f"raf-db={test}", "--no-write", "--latency-repeats", "2"]))
    assert sizes == [64, 64, 80, 80] and out["f80"]["raf-db"]["n"] == 12  # the fixed sample, then the whole split


def test_promote_rescores_runs_that_share_a_validation_split(tmp_path, monkeypatch):
    """A recorded number alone (a GPU run records it on re-encoded faces) cannot promote a run: both are
    re-scored on the validation images, where an identical copy ties and is not better."""
    import promote

    from fer_core.checkpoints import read_spec, update_spec

    twin, args = _committed_and_a_copy(tmp_path, monkeypatch, "fernet")
    update_spec(twin, metrics={"val_macro_f1": 0.99})  # recorded higher, the same network
    assert promote.main(args([str(twin), "--no-int8"])) is False
    assert read_spec(tmp_path / "checkpoints" / "fernet.safetensors").metrics["val_macro_f1"] != 0.99
    assert promote.main(args([str(twin), "--no-int8", "--recorded"])) is True
    import quantize

    update_spec(twin, args={**read_spec(twin).args, "split_seed": 7})
    with pytest.raises(ValueError, match="not validated on the same faces"):
        quantize.validation_predictions(twin, tmp_path / "checkpoints" / "fernet.safetensors")


def test_the_validation_key_ignores_how_often_a_folder_repeats():
    """`--data raf-db:4 fer2013` validates on the faces `--data raf-db:2 fer2013` does; other folders,
    another image count or another split seed do not."""
    from quantize import validation_key

    from fer_core.checkpoints import ModelSpec

    def spec(*folders, **args):
        return ModelSpec(arch="fernet", train_data=folders, args={"split_seed": 0, **args})

    raf2, raf4 = "raf-db/train (9747 images, x2)", "raf-db/train (9747 images, x4)"
    fer = "fer2013/train (23742 images, x1)"
    two = validation_key(spec(raf2, fer))
    assert two == validation_key(spec(raf4, fer))
    assert two != validation_key(spec("raf-db/train (9740 images, x2)", fer))
    assert two != validation_key(spec(fer, raf2))
    assert two != validation_key(spec(raf2, fer, split_seed=1))


def test_promote_margin_refuses_a_gain_smaller_than_it(tmp_path, monkeypatch, capsys):
    """With --margin a re-scored run must beat the committed checkpoint by more than the margin; the paired
    bootstrap of the difference is printed either way."""
    import numpy as np
    import promote
    import quantize

    rival, args = _committed_and_a_copy(tmp_path, monkeypatch, "baseline")
    y = np.arange(600) % 6
    better = np.where(np.arange(600) % 10 == 0, (y + 1) % 6, y)  # 90% right
    worse = np.where(np.arange(600) % 10 < 2, (y + 1) % 6, y)  # 80% right
    monkeypatch.setattr(quantize, "validation_predictions",
                        lambda *paths: (y, [better if Path(p) == rival else worse for p in paths]))
    assert promote.main(args([str(rival), "--no-int8", "--margin", "0.2"])) is False
    out = capsys.readouterr().out
    assert "paired bootstrap over the 600 faces" in out and "by more than 0.2" in out
    assert promote.main(args([str(rival), "--no-int8", "--margin", "0.05"])) is True


def test_soup_averages_fine_tunes_of_one_network(tmp_path, monkeypatch):
    """train/soup.py: the uniform soup's weights are the mean of its ingredients'; the greedy soup starts from the
    best-scoring ingredient and records what it kept; runs validated on other faces are refused."""
    import soup
    import torch
    import train as train_script

    from fer_core.checkpoints import read_spec, update_spec

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=4)
    base = ["--data", str(data), "--batch-size", "8", "--val-fraction", "0.25", "--epochs", "1", "--arch", "baseline",
            "--split-seed", "0"]
    runs = []
    for seed in (1, 2):
        runs.append(tmp_path / f"r{seed}.safetensors")
        train_script.main(train_script.get_args_parser().parse_args(
            base + ["--seed", str(seed), "--out", str(runs[-1])]))
    parse = soup.get_args_parser().parse_args
    uniform = tmp_path / "uniform.safetensors"
    report = soup.main(parse([*map(str, runs), "--method", "uniform", "--out", str(uniform), "--dtype", "float32"]))
    (a, _), (b, _), (u, spec) = (load_checkpoint(p) for p in (*runs, uniform))
    for key, value in u.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a.state_dict()[key] + b.state_dict()[key]) / 2)
    assert sorted(spec.args["soup"]) == ["r1.safetensors", "r2.safetensors"] and spec.args["soup_seeds"] != [1, 1]
    assert spec.metrics["val_macro_f1"] == pytest.approx(report["val_macro_f1"]) and spec.temperature > 0
    greedy = tmp_path / "greedy.safetensors"
    report = soup.main(parse([*map(str, runs), "--out", str(greedy)]))
    best = max(report["own"], key=report["own"].get)
    assert report["kept"][0] == best and report["val_macro_f1"] >= report["own"][best]
    assert read_spec(greedy).args["soup_method"] == "greedy"
    assert read_spec(greedy).args["seed"] == {"r1.safetensors": 1, "r2.safetensors": 2}[best]  # the best one's record
    update_spec(runs[1], args={**read_spec(runs[1]).args, "split_seed": 7})
    with pytest.raises(SystemExit, match="same network, input or validation split"):
        soup.main(parse([*map(str, runs), "--out", str(tmp_path / "no.safetensors")]))


def test_one_hot_targets_train_as_the_labels_do_and_soft_targets_change_the_step():
    import copy

    import torch

    from fer_core.models import create_model

    torch.manual_seed(0)
    base = create_model("fernet", width=8)
    x_u8 = torch.randint(0, 256, (12, 3, 64, 64), dtype=torch.uint8)
    y = torch.arange(12) % 6
    one_hot = torch.nn.functional.one_hot(y, 6).float()
    hard, as_targets, soft = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    r_hard = _one_step(hard, x_u8, y, lr=0.1, sam_rho=0)
    r_one_hot = _one_step(as_targets, x_u8, y, lr=0.1, sam_rho=0, targets=one_hot)
    assert abs(r_hard["loss"] - r_one_hot["loss"]) < 1e-5
    for a, b in zip(hard.parameters(), as_targets.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    spread = 0.5 * one_hot + 0.5 * one_hot.roll(1, dims=1)  # half the votes on the next class
    r_soft = _one_step(soft, x_u8, y, lr=0.1, sam_rho=0, targets=spread)
    assert r_soft["loss"] != r_hard["loss"] and r_soft["accuracy"] == r_hard["accuracy"]  # scored on y
    assert any(not torch.allclose(a, b) for a, b in zip(hard.parameters(), soft.parameters()))


def test_a_soft_target_run_on_two_folders_is_rescored_against_ferplus_too(tmp_path, monkeypatch):
    """--ferplus soft end to end, and group_scores_on_run_split's FER+ column for the folder with votes."""
    import numpy as np
    import quantize
    import train as train_script

    from fer_core.data import ferplus_majority, ferplus_votes, load_labelled_folder
    from fer_core.evaluation import training_splits
    from fer_core.metrics import classification_report
    from fer_core.training import predict_logits
    from tests.test_data import _with_votes

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    plain = make_folder(tmp_path / "plain" / "train", n_per_class=4)
    voted = tmp_path / "voted" / "train"
    _with_votes(voted)
    out = tmp_path / "m.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        ["--arch", "fernet", "--width", "8", "--data", str(plain), str(voted), "--ferplus", "soft", "--epochs", "1",
         "--batch-size", "4", "--val-fraction", "0.5", "--out", str(out), "--label-smoothing", "0"]))
    scores = quantize.group_scores_on_run_split(out)[str(out)]
    assert set(scores) == {"plain", "voted", "mean", "voted-ferplus"}
    assert scores["mean"] == pytest.approx((scores["plain"] + scores["voted"]) / 2)
    # the FER+ column by hand: the voted folder's validation faces that have a majority among the six
    model, spec = load_checkpoint(out)
    sources, positions = [], []
    x_u8, _, _, val_idx = training_splits(spec, sources, positions)
    paths, votes = load_labelled_folder(voted).paths, ferplus_votes(voted)
    mine = [(i, ferplus_majority(votes[paths[p].name])) for i, (s, p) in enumerate(zip(sources, positions))
            if s == str(voted) and paths[p].name in votes and ferplus_majority(votes[paths[p].name]) >= 0]
    assert mine  # at least one such face was drawn for validation
    pred = predict_logits(model, x_u8[val_idx[[i for i, _ in mine]]], spec=spec, tta_flip=spec.tta_flip).argmax(1)
    assert scores["voted-ferplus"] == pytest.approx(
        classification_report(np.array([m for _, m in mine]), pred.numpy())["macro_f1"])
