"""The four B-ALL classes: canonical labels, display names, and folder-name matching.

Every other module speaks in canonical labels; only discovery ever sees folder names.
"""

from __future__ import annotations

import re

#: Canonical labels, in the fixed order used for model outputs and reports.
LABELS: tuple[str, ...] = ("benign", "early_pre_b", "pre_b", "pro_b")

#: Human-readable names shown in reports, the CLI and the web page.
DISPLAY_NAMES: dict[str, str] = {
    "benign": "Benign",
    "early_pre_b": "Malignant Early Pre-B",
    "pre_b": "Malignant Pre-B",
    "pro_b": "Malignant Pro-B",
}

#: Labels that count as malignant for the clinical benign-vs-malignant question.
MALIGNANT: frozenset[str] = frozenset({"early_pre_b", "pre_b", "pro_b"})


def _normalise(name: str) -> str:
    """Lower-case a folder name and keep only letters, so that
    "[Malignant] early Pre-B" and "Malignant-Early" compare alike."""
    name = name.lower().replace("malignant", " ").replace("pre b", "preb").replace("pre-b", "preb")
    return re.sub(r"[^a-z]+", " ", name).strip()


def label_for_folder(name: str) -> str | None:
    """Map a class folder name from any known layout to its canonical label.

    Returns None when the name does not clearly mean one of the four classes, so that
    the caller can report the folder instead of guessing.
    """
    words = _normalise(name).split()
    text = " ".join(words)
    if not words:
        return None
    if text in {"benign", "hematogone", "hematogones", "normal"}:
        return "benign"
    if text in {"early", "early preb", "earlypreb", "early pre b", "early pre"} or text.startswith(
        "early"
    ):
        return "early_pre_b" if "pro" not in words else None
    if text in {"pre", "preb", "pre b"}:
        return "pre_b"
    if text in {"pro", "prob", "pro b"} or text.startswith("pro "):
        return "pro_b"
    canonical = text.replace(" ", "_")
    return canonical if canonical in LABELS else None


def display_name(label: str) -> str:
    """Display name for a canonical label (raises KeyError for unknown labels)."""
    return DISPLAY_NAMES[label]
