"""Training under torchrun: two CPU processes (gloo) share each epoch through DistributedDataParallel and end with the
same weights; rank 0 alone writes the checkpoint, which loads and records the world size."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from tests.test_data import make_folder

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    from fer_core.checkpoints import ModelSpec
    from fer_core.models import create_model
    from fer_core.training import TrainConfig, fit

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same initial weights and the same shuffle on both ranks, as train.py seeds them
    model = create_model("fernet", width=8)
    g = torch.Generator().manual_seed(1)
    x_u8 = torch.randint(0, 256, (40, 3, 64, 64), dtype=torch.uint8, generator=g)
    y = torch.arange(40) % 6
    seen = []
    import fer_core.training as training

    real = training.train_one_epoch

    def spy(*args, **kwargs):  # the indices this rank trains on: its share of the shuffle
        seen.append(kwargs["shard"])
        return real(*args, **kwargs)

    training.train_one_epoch = spy
    fit(model, TrainConfig(epochs=2, batch_size=4, bf16=False, lr=0.05, no_resume=True),
        spec=ModelSpec(arch="fernet", model_kwargs={"width": 8}), x_u8=x_u8, y=y, train_idx=np.arange(32),
        val_idx=np.arange(32, 40), out=Path(folder) / "run.safetensors", augment=None, device=torch.device("cpu"))
    torch.save({"state": model.state_dict(), "shards": seen}, Path(folder) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_end_with_identical_weights(tmp_path, monkeypatch):
    import types

    # spawned children re-import the parent's __main__; an AppTest run earlier in this process leaves a page script
    # there, so give them an empty one
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a["shards"] == [(0, 2)] * 2 and b["shards"] == [(1, 2)] * 2
    for k, v in a["state"].items():
        assert torch.equal(v, b["state"][k]), k
    from fer_core.checkpoints import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "run.safetensors")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_torchrun_trains_and_rank_0_writes_a_checkpoint_that_records_the_world_size(tmp_path):
    data = make_folder(tmp_path / "train", n_per_class=4)
    out = tmp_path / "run.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FER_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "train" / "train.py"), "--arch", "baseline", "--data", str(data), "--epochs", "1",
         "--batch-size", "4", "--val-fraction", "0.25", "--no-augment", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    from fer_core.checkpoints import load_checkpoint

    _, spec = load_checkpoint(out)
    assert spec.args["world_size"] == 2 and spec.metrics["best_epoch"] == 1
    assert done.stdout.count("best val macro-F1") == 1  # rank 0 alone reports
