"""The out-of-scope detector: multi-layer Mahalanobis scores, saved, reloaded and exported."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import synthetic_image
from tests.models import IMAGE_SIZE, tiny_model_dir

from bloodcell.errors import BloodcellError
from bloodcell.labels import LABELS
from bloodcell.models.engines import open_model
from bloodcell.models.saved import load_model
from bloodcell.models.scope_detector import (
    BLANK_SCORE,
    SCOPE_DETECTOR_FILE,
    ScopeDetector,
    fit_detector,
    input_spread,
    tap_blocks,
    threshold_for,
)
from bloodcell.models.torch_backend import TorchBackend


def features(n: int, seed: int, dims: tuple[int, ...] = (3, 8)) -> tuple[list, np.ndarray]:
    """Two 'layers' of in-scope features: four classes, each a tight cluster."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    taps = []
    for d in dims:
        centres = np.eye(4, d) * 5
        taps.append((centres[y] + rng.normal(0, 0.5, (n, d))).astype(np.float32))
    return taps, y


def fitted(acceptance: float = 0.99) -> ScopeDetector:
    taps, y = features(800, 0)
    val, _ = features(400, 1)
    return fit_detector([1, 2], taps, y, val, np.ones(400), acceptance)


def test_threshold_keeps_the_asked_share_of_validation_images() -> None:
    det = fitted(0.95)
    val, _ = features(400, 1)
    scores = det.score(val, np.ones(400))
    assert (scores <= det.threshold).mean() == pytest.approx(0.95, abs=0.01)
    assert det.threshold == threshold_for(scores, 0.95)
    new, _ = features(400, 2)
    assert det.flags(det.score(new, np.ones(400))).mean() < 0.1


def test_far_features_in_any_one_layer_are_out_of_scope() -> None:
    det = fitted()
    new, _ = features(50, 3)
    shifted = [new[0], new[1] + 4.0]  # normal at the shallow layer, far at the deep one
    assert det.flags(det.score(shifted, np.ones(50))).all()
    shifted = [new[0] - 4.0, new[1]]  # and the other way round
    assert det.flags(det.score(shifted, np.ones(50))).all()


def test_layer_scores_are_pytorch_ood_mahalanobis_on_the_common_scale() -> None:
    det = fitted()
    new, _ = features(20, 4)
    raw = det.layer_scores(new) * det.scales[:, None] + det.centers[:, None]
    for i, z in enumerate(new):
        mu, precision = det.means[i].numpy(), det.precisions[i].numpy()
        d = z[:, None, :] - mu[None]
        expected = (0.5 * np.einsum("ncd,de,nce->nc", d, precision, d)).min(1)
        np.testing.assert_allclose(raw[i].numpy(), expected, rtol=1e-3, atol=1e-3)


def test_a_flat_image_is_out_of_scope_whatever_its_features() -> None:
    det = fitted()
    new, _ = features(3, 5)
    scores = det.score(new, np.array([1.0, 0.0, 1.0]))
    assert scores[1] == BLANK_SCORE and det.flags(scores).tolist() == [False, True, False]
    flat = torch.stack([torch.full((8, 8), v) for v in (2.2, 2.4, 2.6)])[None]  # white, normalised
    assert input_spread(flat).item() < 1e-6


def test_bad_acceptance_is_refused() -> None:
    with pytest.raises(BloodcellError, match="acceptance"):
        fitted(1.5)


def test_tap_blocks_spread_over_the_backbone() -> None:
    assert tap_blocks(19) == [6, 10, 18]  # MobileNetV2
    assert tap_blocks(37)[-1] == 36 and len(tap_blocks(37)) == 3  # VGG19


def test_detector_survives_save_and_reload(tmp_path: Path) -> None:
    d = shutil.copytree(tiny_model_dir(), tmp_path / "m")
    b = open_model(d)
    assert isinstance(b, TorchBackend) and b.scope_detector is not None
    assert (d / SCOPE_DETECTOR_FILE).is_file()
    config = load_model(d).config["ood"]
    assert config["threshold"] == pytest.approx(b.ood_threshold)
    assert b.scope_detector.with_acceptance(0.9).threshold <= b.scope_detector.threshold
    again = ScopeDetector.load(d, config)
    assert again is not None and again.threshold == b.scope_detector.threshold
    for a, c in zip(again.precisions, b.scope_detector.precisions, strict=True):
        assert torch.equal(a, c)


def test_far_images_are_out_of_scope_and_smears_are_not() -> None:
    b = open_model(tiny_model_dir())
    tf = b.preprocess.transform()
    smears = [synthetic_image(lab, 50_000 + i, IMAGE_SIZE) for i, lab in enumerate(LABELS * 3)]
    rng = np.random.default_rng(0)
    far = [
        Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)),
        Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (0, 0, 0)),
        Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255)),
        Image.fromarray(np.tile(np.linspace(0, 255, IMAGE_SIZE, dtype=np.uint8), (IMAGE_SIZE, 1))),
    ]
    in_scope = b.score(torch.stack([tf(im) for im in smears]))
    out = b.score(torch.stack([tf(im.convert("RGB")) for im in far]))
    assert b.out_of_scope(in_scope.ood_score).sum() <= 1
    assert b.out_of_scope(out.ood_score).all()


def test_blank_validation_images_do_not_lift_the_threshold() -> None:
    from bloodcell.models.scope_detector import BLANK_SCORE, threshold_for

    scores = np.concatenate([np.linspace(0.0, 1.0, 97), [BLANK_SCORE] * 3])
    assert threshold_for(scores, 0.99) <= 1.0
    assert threshold_for(np.full(4, BLANK_SCORE), 0.99) == BLANK_SCORE
