"""Fetch the Kaggle B-ALL datasets with kagglehub, or say clearly how to use a local copy.

kagglehub caches downloads (``~/.cache/kagglehub``, or $KAGGLEHUB_CACHE), so a second call is
free; without network it fails within a second (name resolution), which we turn into advice.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bloodcell.errors import DatasetError

#: Short names accepted by `--dataset`, and their Kaggle handles.
DATASETS: dict[str, str] = {
    "mehradaria": "mehradaria/leukemia",
    "4class": "mohammadamireshraghi/blood-cell-cancer-all-4class",
}


def _offline_advice(handle: str, exc: BaseException) -> str:
    return (
        f"download of Kaggle dataset {handle!r} failed ({type(exc).__name__}: {exc}). "
        "If you are offline or Kaggle refuses (some datasets need Kaggle credentials: "
        "KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json), download it by hand from "
        f"https://www.kaggle.com/datasets/{handle}, unpack it, and point bloodcell at the "
        "folder with --data DIR or BLOODCELL_DATA=DIR"
    )


def download(dataset: str = "mehradaria", dest: Path | str | None = None) -> Path:
    """Download `dataset` ('mehradaria' or '4class'), copy to `dest` if given; return its path."""
    if dataset not in DATASETS:
        raise DatasetError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)} "
            "or use a local folder with --data DIR"
        )
    handle = DATASETS[dataset]
    try:
        import kagglehub

        path = Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # noqa: BLE001 - network, auth and API errors all mean "no data"
        raise DatasetError(_offline_advice(handle, exc)) from exc
    if dest is None:
        return path
    dest = Path(dest).expanduser()
    try:
        shutil.copytree(path, dest, dirs_exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"downloaded to {path} but could not copy it to {dest} ({exc}); "
            f"free space or pick another --dest, or use --data {path} directly"
        ) from exc
    return dest
