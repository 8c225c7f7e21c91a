"""The layout of everything bloodcell writes: a run folder (`RunDir`), a saved model directory
(`ModelDir`) and a cross-validation folder (`CvDir`, `FoldDir`); each file name is spelled once,
here. Also the one rule for finding a run's data.

`bloodcell train --out RUN` (and `bloodcell run`, and each cross-validation fold) writes:

  RUN/manifest.csv             the split it trained on (a copy, unless it was made there)
  RUN/train_config.json        the recipe and where the data was (`records.TrainConfigRecord`)
  RUN/checkpoints/             Lightning checkpoints: best-*.ckpt, and last.ckpt for --resume
  RUN/log.csv, RUN/curves.png  one row per epoch, and its plot
  RUN/train_summary.json       how training went (`records.TrainSummary`)
  RUN/model/                   the saved model (`models.saved`), its metrics.json and card
  RUN/eval/<split>/            metrics.json, predictions.csv, pictures, report.md, robustness.*,
                               audit.json, audit.png
  RUN/eval/ood/                ood.json, ood_scores.png
  RUN/data/, report.md, run_summary.json   what `bloodcell run` adds

A saved model directory (`models.saved`) holds:

  model.safetensors, config.json, metrics.json   the weights, what the model is, its figures
  ood.safetensors                                 the out-of-scope detector's statistics
  model.onnx, model.int8.onnx                     the checked ONNX engines (`export`)
  README.md                                       the model card (`reporting.model_card`)

A cross-validation folder (`bloodcell cv --out CV`; `workflows.cv_job`) holds:

  cv_config.json, verify.json, cv.json, report.md, folds.png    the settings and the results
  seed-S/fold-F/manifest.csv, run/, predictions.csv             one fold (`FoldDir`)
  image/, near/, block/, protocols.json, protocols.png          with --compare-protocols

Every module reads and writes these paths through these classes, so each name is spelled once.
It imports nothing but the error types and the records, so the data and model layers can use it
too; that is also why the one helper for writing a file atomically (`atomic`) and the one
reader and writer of the JSON records (`read_json`, `write_json`) live here.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bloodcell.errors import DatasetError
from bloodcell.records import DataRecord

MODEL_DIR = "model"
EVAL_DIR = "eval"
CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
LOG_FILE = "log.csv"
CURVES_FILE = "curves.png"
#: The training settings and data record (named apart from the model's own `config.json`).
TRAIN_CONFIG_FILE = "train_config.json"
#: What training reports about itself (epochs, timings, the chosen checkpoint).
TRAIN_SUMMARY_FILE = "train_summary.json"
MANIFEST_COPY = "manifest.csv"
REPORT_MD = "report.md"
RUN_SUMMARY_FILE = "run_summary.json"
DATA_DIR = "data"
VERIFY_FILE = "verify.json"
FIGURES_DIR = "figures"
#: In RUN/eval/<split>/.
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_PNG = "robustness.png"
#: The shortcut audit (`evaluation.shortcut_audit`), in RUN/eval/<split>/.
AUDIT_JSON = "audit.json"
AUDIT_PNG = "audit.png"
#: RUN/eval/ood/ holds the out-of-scope folders' scores (not a split).
SCOPE_FOLDERS_DIR = "ood"
SCOPE_FOLDERS_JSON = "ood.json"
SCOPE_FOLDERS_PNG = "ood_scores.png"
#: In a model directory.
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SCOPE_DETECTOR_FILE = "ood.safetensors"
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"
#: The model card (written by `reporting.model_card`; the server needs only the name).
CARD_FILE = "README.md"
#: In a cross-validation folder.
CV_SETTINGS_FILE = "cv_config.json"
CV_FILE = "cv.json"
PROTOCOLS_FILE = "protocols.json"
FOLDS_PNG = "folds.png"
PROTOCOLS_PNG = "protocols.png"
FOLD_RUN_DIR = "run"
#: The dataset folder when neither the command line nor the run names one that exists.
DATA_ENV = "BLOODCELL_DATA"


@dataclass(frozen=True)
class RunData:
    """The dataset folder and the split manifest a run's images are read with."""

    root: Path
    manifest: Path


@dataclass(frozen=True)
class RunDir:
    """One run folder; every path in it is a property or method of this."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of_model(cls, model_dir: str | Path) -> RunDir:
        """The run holding a saved model (`RUN/model` -> RUN); a model directory that is not
        inside a run is its own run folder (its evaluations go beside the weights)."""
        model_dir = Path(model_dir)
        return cls(model_dir.parent if model_dir.name == MODEL_DIR else model_dir)

    # --- what training writes ----------------------------------------------------------------

    @property
    def model(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CKPT

    @property
    def log(self) -> Path:
        return self.path / LOG_FILE

    @property
    def curves(self) -> Path:
        return self.path / CURVES_FILE

    @property
    def train_config(self) -> Path:
        return self.path / TRAIN_CONFIG_FILE

    @property
    def train_summary(self) -> Path:
        return self.path / TRAIN_SUMMARY_FILE

    @property
    def manifest_copy(self) -> Path:
        return self.path / MANIFEST_COPY

    # --- what evaluation writes ----------------------------------------------------------------

    def eval_dir(self, split: str) -> Path:
        return self.path / EVAL_DIR / split

    def eval_report(self, split: str) -> Path:
        return self.eval_dir(split) / REPORT_MD

    def robustness_json(self, split: str) -> Path:
        return self.eval_dir(split) / ROBUSTNESS_JSON

    def robustness_png(self, split: str) -> Path:
        return self.eval_dir(split) / ROBUSTNESS_PNG

    def audit_json(self, split: str) -> Path:
        return self.eval_dir(split) / AUDIT_JSON

    def audit_png(self, split: str) -> Path:
        return self.eval_dir(split) / AUDIT_PNG

    @property
    def scope_folders_dir(self) -> Path:
        return self.path / EVAL_DIR / SCOPE_FOLDERS_DIR

    @property
    def scope_folders_json(self) -> Path:
        return self.scope_folders_dir / SCOPE_FOLDERS_JSON

    @property
    def scope_folders_png(self) -> Path:
        return self.scope_folders_dir / SCOPE_FOLDERS_PNG

    # --- what `bloodcell run` adds ---------------------------------------------------------------

    @property
    def report(self) -> Path:
        return self.path / REPORT_MD

    @property
    def run_summary(self) -> Path:
        return self.path / RUN_SUMMARY_FILE

    @property
    def data_dir(self) -> Path:
        return self.path / DATA_DIR

    @property
    def verify(self) -> Path:
        return self.data_dir / VERIFY_FILE

    @property
    def figures(self) -> Path:
        return self.data_dir / FIGURES_DIR

    def link(self, target: Path, start: Path | None = None) -> str:
        """`target` relative to the folder `start` (default the run), as a markdown link needs
        it: a report or card links its pictures so the run folder can be moved whole."""
        return Path(os.path.relpath(target, start or self.path)).as_posix()

    # --- the data it was trained on -------------------------------------------------------------

    def find_data(
        self,
        recorded: DataRecord | None,
        data_root: str | Path | None = None,
        manifest: str | Path | None = None,
    ) -> RunData:
        """The dataset folder and manifest to read this run's images with.

        `recorded` is what the model recorded at training time (its config's `data`). The
        manifest is the one given, else the recorded one if it is still there, else the run's
        copy (RUN/manifest.csv: a run folder moved to another machine still has it). The data
        folder is the one given, else the recorded one if it exists, else $BLOODCELL_DATA.
        """
        recorded = recorded or {}
        return RunData(self._data_root(recorded, data_root), self._manifest(recorded, manifest))

    def _manifest(self, recorded: DataRecord, given: str | Path | None) -> Path:
        if given:
            if not Path(given).is_file():
                raise DatasetError(f"manifest not found: {given}")
            return Path(given)
        for candidate in (recorded.get("manifest"), self.manifest_copy):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
        raise DatasetError(
            f"{self.path}: the training manifest is gone ({recorded.get('manifest')}, and no "
            f"{MANIFEST_COPY} in the run); pass --manifest FILE"
        )

    def _data_root(self, recorded: DataRecord, given: str | Path | None) -> Path:
        if given:
            root = Path(given).expanduser()
            if not root.is_dir():
                raise DatasetError(f"dataset folder {root} not found; pass --data DIR")
            return root
        for candidate in (recorded.get("data_root"), os.environ.get(DATA_ENV)):
            if candidate and Path(candidate).expanduser().is_dir():
                return Path(candidate).expanduser()
        raise DatasetError(
            f"{self.path}: dataset folder {recorded.get('data_root') or '(not recorded)'} not "
            f"found; pass --data DIR or set {DATA_ENV}"
        )


@dataclass(frozen=True)
class ModelDir:
    """One saved model directory (`RUN/model/`, or one on its own); every file in it is a
    property of this."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def scope_detector(self) -> Path:
        return self.path / SCOPE_DETECTOR_FILE

    @property
    def onnx(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def int8_onnx(self) -> Path:
        return self.path / INT8_ONNX_FILE

    @property
    def card(self) -> Path:
        return self.path / CARD_FILE


@dataclass(frozen=True)
class FoldDir:
    """One fold of a cross-validation: its manifest, its training run, its predictions."""

    path: Path

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST_COPY

    @property
    def run(self) -> RunDir:
        return RunDir(self.path / FOLD_RUN_DIR)

    @property
    def predictions(self) -> Path:
        """Written last: a fold with this file is done."""
        return self.path / PREDICTIONS_FILE


@dataclass(frozen=True)
class CvDir:
    """One cross-validation folder (`bloodcell cv --out CV`)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def fold(self, seed: int, fold: int) -> FoldDir:
        """Fold `fold` (counted from 1) of seed `seed`."""
        return FoldDir(self.path / f"seed-{seed}" / f"fold-{fold}")

    def protocol(self, name: str) -> CvDir:
        """The cross-validation of one protocol of the leakage study."""
        return CvDir(self.path / name)

    @property
    def settings(self) -> Path:
        return self.path / CV_SETTINGS_FILE

    @property
    def verify(self) -> Path:
        return self.path / VERIFY_FILE

    @property
    def result(self) -> Path:
        return self.path / CV_FILE

    @property
    def protocols(self) -> Path:
        return self.path / PROTOCOLS_FILE

    @property
    def report(self) -> Path:
        return self.path / REPORT_MD

    @property
    def folds_png(self) -> Path:
        return self.path / FOLDS_PNG

    @property
    def protocols_png(self) -> Path:
        return self.path / PROTOCOLS_PNG

    def confusion_png(self, seed: int) -> Path:
        return self.path / f"confusion_matrix_seed-{seed}.png"


@contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` that replaces it only when the block finishes, so a
    killed process never leaves a half-written file under the real name.

    The file ends up with the mode any new file gets (0o666 less the umask, e.g. 0o644), not
    the 0o600 a temporary file usually has (`tempfile.mkstemp`, and safetensors' own atomic
    save): the temporary is created here with 0o666, so the kernel applies the umask (and any
    default ACL) without changing the process's umask, and that mode is restored on it before
    the rename in case the writer replaced it with a file of its own.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = os.fstat(fd).st_mode & 0o7777
        os.close(fd)
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, record: object, sort_keys: bool = True) -> Path:
    """Write a JSON record the one way every record bloodcell leaves is written: indented, keys
    sorted unless the record's own order is meant for reading, a final newline, and atomically
    (`atomic`), so a killed run never leaves half a record that a rerun would trust."""
    path = Path(path)
    text = json.dumps(record, indent=2, sort_keys=sort_keys) + "\n"
    with atomic(path) as tmp:
        tmp.write_text(text)
    return path


def read_json(path: str | Path) -> Any:
    """A JSON record written by `write_json`; the caller names its type (`records`)."""
    return json.loads(Path(path).read_text())
