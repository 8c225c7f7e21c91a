"""The run folder before training: checked against `resume`, with the run's settings and data
recorded (`train_config.json`) and its manifest copied, so a resume needs only the folder."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bloodcell.data.manifest import file_sha256, read_manifest
from bloodcell.errors import ModelError
from bloodcell.records import TrainConfigRecord
from bloodcell.run_dir import (
    CHECKPOINT_DIR,
    LAST_CKPT,
    MANIFEST_COPY,
    MODEL_DIR,
    TRAIN_CONFIG_FILE,
    read_json,
    write_json,
)
from bloodcell.train.config import TrainConfig
from bloodcell.train.devices import is_rank_zero


def prepare_run(
    config: TrainConfig | None,
    data_root: Path | None,
    manifest: Path | None,
    run: Path,
    resume: bool,
) -> tuple[TrainConfig, Path, Path]:
    """Check the run dir against `resume`, write/read train_config.json, copy the manifest."""
    if resume:
        return _resumed(config, data_root, manifest, run)
    if not is_rank_zero():  # rank 0 checks and writes the run dir (maybe right now); not us
        if config is None or data_root is None or manifest is None:
            raise ValueError("config, data_root and manifest are needed to start a run")
        return config, Path(data_root), Path(manifest)
    return _started(config, data_root, manifest, run)


def _resumed(
    config: TrainConfig | None, data_root: Path | None, manifest: Path | None, run: Path
) -> tuple[TrainConfig, Path, Path]:
    """The settings and data the run started with; `config` and `manifest`, when given, must
    be the same."""
    cfg_path = run / TRAIN_CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelError(f"cannot resume: {cfg_path} not found; start the run without --resume")
    saved: TrainConfigRecord = read_json(cfg_path)
    saved_cfg = TrainConfig.from_dict(saved["config"])
    if config is not None and config != saved_cfg:
        diff = {
            k: (v, getattr(config, k))
            for k, v in saved_cfg.to_dict().items()
            if getattr(config, k) != v
        }
        raise ModelError(
            f"cannot resume {run} with different settings {diff} (saved, given); "
            "resume without changing options, or train into a new --out"
        )
    data_root = data_root or Path(saved["data"]["data_root"])
    manifest = manifest or run / MANIFEST_COPY
    if file_sha256(manifest) != saved["data"]["manifest_sha256"]:
        raise ModelError(
            f"cannot resume {run}: manifest {manifest} differs from the one it started on"
        )
    return saved_cfg, Path(data_root), Path(manifest)


def _started(
    config: TrainConfig | None, data_root: Path | None, manifest: Path | None, run: Path
) -> tuple[TrainConfig, Path, Path]:
    """A new run in an unused folder: its records written, its manifest copied."""
    if (run / CHECKPOINT_DIR / LAST_CKPT).exists() or (run / MODEL_DIR).exists():
        raise ModelError(
            f"{run} already holds a training run; pass --resume to continue it, "
            "or choose another --out"
        )
    if config is None or data_root is None or manifest is None:
        raise ValueError("config, data_root and manifest are needed to start a run")
    run.mkdir(parents=True, exist_ok=True)
    read_manifest(manifest)  # fail early, with the manifest's own error, on a bad file
    copy = run / MANIFEST_COPY
    if Path(manifest).resolve() != copy.resolve():
        shutil.copyfile(manifest, copy)
    record = {
        "config": config.to_dict(),
        "data": data_record(manifest, data_root),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(run / TRAIN_CONFIG_FILE, record)
    return config, Path(data_root), Path(manifest)


def data_record(manifest: str | Path, data_root: str | Path) -> dict[str, str]:
    """What a model records about its data: the manifest (path and sha256) and the data root."""
    return {
        "manifest_sha256": file_sha256(manifest),
        "manifest": str(Path(manifest).resolve()),
        "data_root": str(Path(data_root).expanduser().resolve()),
    }
