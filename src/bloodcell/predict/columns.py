"""The CSV columns of a prediction and of a folder summary (also what `--resume` checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bloodcell.predict.records import Prediction

ANSWER_COLUMNS = ["label", "display_name", "confidence", "uncertain"]
SCOPE_COLUMNS = ["out_of_scope", "ood_score", "prediction_set"]


def csv_header(labels: Sequence[str]) -> list[str]:
    probs = [f"prob_{lb}" for lb in labels]
    return ["path", *ANSWER_COLUMNS, *SCOPE_COLUMNS, *probs, "engine", "error"]


def csv_row(p: Prediction, labels: Sequence[str]) -> list[str]:
    """One CSV row; `prediction_set` is its labels joined by '|'."""
    if not p.ok:
        return (
            [p.path]
            + [""] * (len(ANSWER_COLUMNS) + len(SCOPE_COLUMNS) + len(labels) + 1)
            + [p.error or ""]
        )
    answer = [p.label or "", p.display_name or "", _num(p.confidence), _bool(p.uncertain)]
    scope = [_bool(p.out_of_scope), _num(p.ood_score), "|".join(p.prediction_set or [])]
    probs = [_num((p.probabilities or {}).get(lb)) for lb in labels]
    return [p.path, *answer, *scope, *probs, p.engine or "", ""]


def group_csv_header(labels: Sequence[str]) -> list[str]:
    return (
        ["folder", "n_images", "n_errors", "n_uncertain", "n_out_of_scope"]
        + [f"count_{lb}" for lb in labels]
        + [f"mean_prob_{lb}" for lb in labels]
    )


def group_csv_row(g: dict[str, Any], labels: Sequence[str]) -> list[Any]:
    mean = g["mean_probabilities"]
    return (
        [g["folder"], g["n_images"], g["n_errors"], g["n_uncertain"], g["n_out_of_scope"]]
        + [g["counts"][lb] for lb in labels]
        + [f"{mean[lb]:.6f}" if mean else "" for lb in labels]
    )


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def _bool(v: bool | None) -> str:
    return "" if v is None else str(bool(v)).lower()
