"""A real 2-process DDP training on the CPU (gloo), through the console script as a user runs it.

Lightning's DDP launcher re-runs the command line once per extra process, so the test must go
through `bloodcell train` in a subprocess rather than call `train()` in pytest's process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tests.conftest import make_dataset
from tests.train import make_manifest

from bloodcell.data.manifest import read_manifest, write_manifest
from bloodcell.train.devices import ValShardSampler

BLOODCELL = Path(sys.executable).with_name("bloodcell")


def _train(run: Path, data: Path, manifest: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        str(BLOODCELL),
        "train",
        "--data",
        str(data),
        "--manifest",
        str(manifest),
        "--out",
        str(run),
        "--model",
        "mobilenet_v2",
        "--no-pretrained",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a clean start: this process is not part of another job
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)


def odd_val_manifest(data: Path, out: Path, n_per_class: int) -> Path:
    """make_manifest's split with one test image moved to val: an odd val count, which a
    padding DistributedSampler would round up to an even one."""
    rows = read_manifest(make_manifest(data, out, n_per_class))
    i = next(i for i, r in enumerate(rows) if r.split == "test")
    rows[i] = replace(rows[i], split="val")
    return write_manifest(rows, out)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_val_shards_cover_every_image_once(monkeypatch: pytest.MonkeyPatch, world: int) -> None:
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: world)
    seen = []
    for rank in range(world):
        monkeypatch.setattr(dist, "get_rank", lambda rank=rank: rank)
        sampler = ValShardSampler(list(range(7)))
        assert len(sampler) == len(list(sampler))
        seen += list(sampler)
    assert sorted(seen) == list(range(7))


@pytest.mark.slow
@pytest.mark.parametrize("freeze", ["finetune", "frozen"])
def test_two_process_ddp_training_on_cpu(tmp_path: Path, freeze: str) -> None:
    """finetune: every step all-reduces the whole network's gradients; frozen: the default
    feature-cache path, each rank caching the backbone outputs before training its shard."""
    n_per_class = 9  # 6 train, 1 val, 2 test per class, then one test image moved to val
    data = make_dataset(tmp_path / "data", "generic", n_per_class=n_per_class, size=32)
    manifest = odd_val_manifest(data, tmp_path / "manifest.csv", n_per_class)
    run = tmp_path / "run"
    t0 = time.perf_counter()
    out = _train(run, data, manifest, "--freeze", freeze)
    seconds = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-3000:]

    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    # both ranks trained, each on its half of the 24 train images, for 2 epochs
    assert summary["train_samples_per_rank"] == [24, 24], summary
    assert summary["epochs_trained"] == 2
    assert summary["feature_cache"] == (None if freeze == "finetune" else "pooled")

    # run files written once, by rank 0: one log row per epoch, one best checkpoint
    rows = (run / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "curves.png").is_file()
    # val metrics summed over both ranks, each of the 5 val images exactly once (not padded)
    assert summary["val_images"] == 5

    from bloodcell.models.saved import load_model

    model = load_model(run)
    probs = model.predict_proba(torch.rand(3, 3, 32, 32))
    assert probs.shape == (3, 4)
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)
    print(f"2-process DDP run ({freeze}): {seconds:.1f} s")
