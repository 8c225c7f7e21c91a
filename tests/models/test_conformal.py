"""Conformal prediction sets: coverage, set size, plain words, save and reload."""

from __future__ import annotations

import numpy as np
import pytest
from tests.models import tiny_model_dir

from bloodcell.errors import BloodcellError
from bloodcell.labels import DISPLAY_NAMES, LABELS
from bloodcell.models.conformal import ConformalSets, describe_set, fit_conformal, set_labels
from bloodcell.models.engines import open_model


def noisy_probs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A classifier right about 85% of the time, with probabilities that say so."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(0, 1, (n, 4))
    logits[np.arange(n), y] += 2.5
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_sets_cover_the_true_class_as_promised(coverage: float) -> None:
    probs, y = noisy_probs(2000, 0)
    sets = fit_conformal(probs, y, coverage)
    test_p, test_y = noisy_probs(4000, 1)
    member = sets.sets(test_p)
    covered = member[np.arange(len(test_y)), test_y].mean()
    assert covered >= coverage - 0.02
    assert member[np.arange(len(test_y)), test_p.argmax(1)].all()  # never empty
    assert 1.0 <= member.sum(1).mean() < 4.0


def test_higher_coverage_gives_larger_sets() -> None:
    probs, y = noisy_probs(1000, 0)
    sets = fit_conformal(probs, y, 0.9)
    test_p, _ = noisy_probs(1000, 1)
    assert sets.sets(test_p, 0.99).sum() > sets.sets(test_p, 0.9).sum()


def test_round_trip_through_config() -> None:
    probs, y = noisy_probs(300, 0)
    sets = fit_conformal(probs, y, 0.95)
    again = ConformalSets.from_config(sets.to_config())
    assert again is not None and again.coverage == 0.95
    test_p, _ = noisy_probs(100, 1)
    assert np.array_equal(again.sets(test_p), sets.sets(test_p))
    assert ConformalSets.from_config(None) is None


def test_bad_coverage_is_refused() -> None:
    probs, y = noisy_probs(50, 0)
    with pytest.raises(BloodcellError, match="coverage"):
        fit_conformal(probs, y, 95)


def test_plain_words() -> None:
    assert describe_set(["pre_b"], DISPLAY_NAMES) is None
    text = describe_set(["benign", "early_pre_b"], DISPLAY_NAMES)
    assert text is not None and text.startswith(f"{DISPLAY_NAMES['benign']} or ")
    assert "flow cytometry" in text
    assert "review by hand" in (describe_set(["pre_b", "pro_b"], DISPLAY_NAMES) or "")
    member = np.array([[True, True, False, False]])
    assert set_labels(member, LABELS) == [["benign", "early_pre_b"]]


def test_saved_model_carries_its_sets() -> None:
    b = open_model(tiny_model_dir())
    assert b.conformal is not None and b.conformal.coverage == 0.95


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.9, 0.95, 0.99, 0.999])
@pytest.mark.parametrize("n", [3, 20, 281, 1000])
def test_stored_quantile_gives_crepes_sets(coverage: float, n: int) -> None:
    """The set from the stored quantile is crepes' set, on every class of every image, also
    where test scores tie calibration scores exactly (probabilities on a coarse grid)."""
    probs, y = noisy_probs(n, n)
    probs = np.round(probs, 2)  # many exact ties between test and calibration scores
    probs /= probs.sum(1, keepdims=True)
    stored = ConformalSets.from_config(fit_conformal(probs, y, coverage).to_config())
    assert stored is not None and stored.quantile is not None
    test_p, _ = noisy_probs(500, n + 1)
    test_p = np.vstack([test_p, probs])  # the calibration images themselves: ties
    reference = stored.crepes_sets(test_p, coverage)
    fast = (1.0 - test_p) <= stored.quantile
    assert np.array_equal(fast, reference)
    legacy = ConformalSets(stored.scores, stored.coverage)  # a model stored before the quantile
    assert np.array_equal(stored.sets(test_p), legacy.sets(test_p))


def test_sets_at_the_stored_coverage_import_no_conformal_library() -> None:
    import subprocess
    import sys

    probs, y = noisy_probs(300, 0)
    config = fit_conformal(probs, y, 0.9).to_config()
    code = (
        "import json, sys, numpy as np\n"
        "from bloodcell.models.conformal import ConformalSets\n"
        f"s = ConformalSets.from_config(json.loads({json_text(config)!r}))\n"
        "member = s.sets(np.array([[0.7, 0.1, 0.1, 0.1], [0.4, 0.4, 0.1, 0.1]]))\n"
        "assert member.shape == (2, 4) and member[:, 0].all()\n"
        "print('crepes' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def json_text(obj: object) -> str:
    import json

    return json.dumps(obj)
