"""Temperature scaling: make the reported confidence mean what it says.

Networks trained with cross-entropy are usually over-confident: among predictions made with
"95 %" confidence, fewer than 95 % are right. Dividing the logits by one scalar T > 1, fitted on
the validation split by minimising the negative log-likelihood (Guo et al., 2017), fixes most of
that without changing any predicted class. T is stored in the saved model's `config.json`
(`temperature`) and every backend applies it.

The `uncertain` flag: a prediction whose calibrated top-class probability is below
`uncertain_threshold` (default 0.8, in `models.saved.DEFAULT_UNCERTAIN_THRESHOLD`) is flagged for
a person to look at. After calibration, a confidence below 0.8 means more than one such answer
in five is expected to be wrong, a rate no lab would accept unreviewed, while well-separated
smears (the large majority on this data set) stay above it. It is stored with the model and can
be overridden per call (`--uncertain-threshold`) or changed for good with
`bloodcell calibrate --uncertain-threshold`.

Calibration also fits the conformal prediction sets (`models.conformal`) on the same
temperature-scaled validation probabilities, at the coverage asked for (default 95%), and can
move the out-of-scope detector's threshold to another in-scope acceptance (`--ood-acceptance`)
from the validation scores saved with it, without the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from bloodcell.data.dataset import ManifestDataset
from bloodcell.errors import ModelError
from bloodcell.evaluation.metrics import expected_calibration_error
from bloodcell.evaluation.runs import open_run
from bloodcell.labels import LABELS
from bloodcell.models.backends import softmax
from bloodcell.models.conformal import DEFAULT_COVERAGE, fit_conformal
from bloodcell.models.saved import read_config, resolve_model_dir, update_config
from bloodcell.models.scope_detector import ScopeDetector
from bloodcell.models.torch_backend import dataset_logits
from bloodcell.records import CalibrationRecord, CalibrationResult, ScopeDetectorRecord


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `targets` under `softmax(logits / temperature)`."""
    t = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    return float(F.cross_entropy(t, torch.as_tensor(np.asarray(targets), dtype=torch.long)))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, max_iter: int = 200) -> float:
    """The T > 0 that minimises the NLL of `softmax(logits / T)` on (logits, targets).

    Optimises log T with L-BFGS so T stays positive; one scalar cannot over-fit a few hundred
    validation images. The targets are smoothed by 1/(n+2) (Laplace's rule of succession): when
    every validation image is right, plain NLL falls without end as T -> 0 and would make the
    model certain of everything; with the smoothing it stops where n of n correct allows.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if len(y) == 0:
        raise ValueError("cannot fit a temperature on zero samples")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y, label_smoothing=1.0 / (len(y) + 2))
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 100.0))


def calibration_summary(
    logits: np.ndarray, targets: np.ndarray, temperature: float
) -> CalibrationRecord:
    """ECE (`metrics.expected_calibration_error`) and NLL before (T=1) and after scaling."""
    return {
        "temperature": float(temperature),
        "n": int(len(targets)),
        "ece_before": expected_calibration_error(targets, softmax(logits)),
        "ece_after": expected_calibration_error(targets, softmax(logits, temperature)),
        "nll_before": nll(logits, targets),
        "nll_after": nll(logits, targets, temperature),
    }


def fit_and_store(
    model_dir: str | Path,
    logits: np.ndarray,
    targets: np.ndarray,
    coverage: float = DEFAULT_COVERAGE,
) -> CalibrationResult:
    """Fit T and the conformal sets on given validation logits; store both in the model config.

    For callers that already have the validation logits (the pipeline after training).
    """
    temperature = fit_temperature(logits, targets)
    summary = calibration_summary(logits, targets, temperature)
    conformal = fit_conformal(softmax(logits, temperature), targets, coverage)
    update_config(
        model_dir, temperature=temperature, calibration=summary, conformal=conformal.to_config()
    )
    return {**summary, "coverage": conformal.coverage}


def set_scope_acceptance(model_dir: str | Path, acceptance: float) -> ScopeDetectorRecord:
    """Move the out-of-scope threshold to another in-scope acceptance; returns its config."""
    model_dir = resolve_model_dir(model_dir)
    detector = ScopeDetector.load(model_dir, read_config(model_dir).get("ood"))
    if detector is None:
        raise ModelError(f"{model_dir}: this model has no out-of-scope detector; retrain it")
    config = detector.with_acceptance(acceptance).to_config()
    update_config(model_dir, ood=config)
    return config


def split_logits(
    run_dir: str | Path,
    split: str = "val",
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated logits and targets of the saved model on one split of its data."""
    run = open_run(run_dir, "torch", data_root, manifest)
    found = run.split(split)
    backend = run.backend
    if backend.labels != list(LABELS):
        raise ModelError(f"{run_dir}: model labels {backend.labels} differ from {list(LABELS)}")
    dataset = ManifestDataset(found.rows, found.root, backend.preprocess.transform())
    return dataset_logits(backend, dataset, batch_size=batch_size)


def calibrate_run(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    manifest: str | Path | None = None,
    batch_size: int = 64,
    coverage: float = DEFAULT_COVERAGE,
) -> CalibrationResult:
    """Fit the temperature and the conformal sets on the run's validation split and store them
    with the model.

    Returns the `calibration_summary` (temperature, ECE and NLL before/after, n, coverage).
    """
    logits, targets = split_logits(run_dir, "val", data_root, manifest, batch_size)
    return fit_and_store(run_dir, logits, targets, coverage)
