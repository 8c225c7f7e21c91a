"""Temperature scaling: fits T on validation logits, lowers ECE, is stored with the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.models import make_run

from bloodcell.errors import DatasetError
from bloodcell.evaluation.calibrate import calibrate_run, calibration_summary, fit_temperature
from bloodcell.evaluation.metrics import expected_calibration_error
from bloodcell.models.backends import softmax
from bloodcell.models.engines import open_model

BLOODCELL = Path(sys.executable).with_name("bloodcell")


def overconfident(n: int = 2000, scale: float = 4.0, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Logits of a ~70 %-accurate classifier, multiplied by `scale` (so over-confident)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += 1.5
    return (logits * scale).astype(np.float32), y


def test_summary_reports_the_metrics_ece() -> None:
    """Calibration reports the same ECE as evaluation (`metrics.expected_calibration_error`)."""
    logits, y = overconfident()
    s = calibration_summary(logits, y, 2.0)
    assert s["ece_before"] == expected_calibration_error(y, softmax(logits))
    assert s["ece_after"] == expected_calibration_error(y, softmax(logits, 2.0))


def test_fit_temperature_undoes_overconfidence() -> None:
    logits, y = overconfident(scale=4.0)
    t = fit_temperature(logits, y)
    assert 2.5 < t < 6.0  # the logits were inflated 4x
    s = calibration_summary(logits, y, t)
    assert s["ece_after"] < s["ece_before"] / 3
    assert s["nll_after"] < s["nll_before"]
    assert fit_temperature(*overconfident(scale=0.3)) < 1.0  # under-confident: T < 1


def test_calibrate_run_stores_temperature(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    s = calibrate_run(run, coverage=0.9)
    assert set(s) == {
        "temperature",
        "n",
        "ece_before",
        "ece_after",
        "nll_before",
        "nll_after",
        "coverage",
    }
    assert s["n"] == 8  # 2 val images per class
    # The tiny model gets every validation image right; the fit (targets smoothed by 1/(n+2))
    # must then not sharpen it towards certainty, as plain NLL would (T -> the 0.05 clamp).
    assert s["temperature"] >= 0.1
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["temperature"] == pytest.approx(s["temperature"])
    assert config["calibration"]["ece_after"] == pytest.approx(s["ece_after"])
    assert open_model(run).temperature == pytest.approx(s["temperature"])
    # The prediction sets are refitted on the same temperature-scaled validation split.
    assert config["conformal"]["coverage"] == 0.9 and len(config["conformal"]["scores"]) == 8
    assert open_model(run).conformal.coverage == 0.9


def test_ood_acceptance_moves_the_threshold_without_the_data(tmp_path: Path) -> None:
    from bloodcell.evaluation.calibrate import set_scope_acceptance

    run = make_run(tmp_path)
    before = open_model(run).ood_threshold
    after = set_scope_acceptance(run, 0.6)["threshold"]
    assert after < before and open_model(run).ood_threshold == pytest.approx(after)


def test_calibrate_run_without_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    monkeypatch.delenv("BLOODCELL_DATA", raising=False)
    with pytest.raises(DatasetError, match="--data"):
        calibrate_run(run, data_root=tmp_path / "nowhere")


def test_cli_calibrate(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    out = subprocess.run(
        [str(BLOODCELL), "calibrate", str(run), "--uncertain-threshold", "0.9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "temperature" in out.stdout and "ECE" in out.stdout
    assert open_model(run).uncertain_threshold == 0.9


def test_perfectly_separated_validation_does_not_make_the_model_certain() -> None:
    """With every validation image right, plain NLL would drive T to 0 (certainty)."""
    import numpy as np

    from bloodcell.evaluation.calibrate import fit_temperature

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    logits = rng.normal(0, 0.3, (300, 4))
    logits[np.arange(300), y] += 3.0  # always right, with moderate margins
    t = fit_temperature(logits, y)
    assert 0.1 < t < 1.0  # sharpened, but not to the clamp
    z = logits / t
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert p.max(1).mean() < 0.999
