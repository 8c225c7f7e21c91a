"""download: the real kagglehub call, offline here, must fail fast with advice."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from bloodcell.data.download import download
from bloodcell.errors import DatasetError


def _online() -> bool:
    try:
        socket.create_connection(("www.kaggle.com", 443), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("dataset", ["mehradaria", "4class"])
def test_offline_download_gives_advice(tmp_path: Path, monkeypatch, dataset: str) -> None:
    if _online():
        pytest.skip("network reachable: a real download would start")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    start = time.monotonic()
    with pytest.raises(DatasetError) as err:
        download(dataset, dest=tmp_path / "dest")
    assert time.monotonic() - start < 30
    msg = str(err.value)
    assert "download" in msg and "failed" in msg
    assert "--data DIR" in msg and "BLOODCELL_DATA" in msg and "kaggle.com/datasets/" in msg
    assert not (tmp_path / "dest").exists()


def test_unknown_dataset() -> None:
    with pytest.raises(DatasetError, match="unknown dataset.*mehradaria"):
        download("cifar")
