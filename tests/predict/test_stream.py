"""stream: mixed good/bad files in batches, several batches scored at once, the threshold
override, TTA invariance."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import synthetic_image
from tests.models import IMAGE_SIZE, onnx_run_dir
from tests.predict import BAD, SCORE_TOLERANCE

from bloodcell.labels import LABELS
from bloodcell.models.engines import open_model
from bloodcell.predict.stream import DECODE_NICE, predict_images, predict_paths, yield_to_model


def test_mixed_good_and_bad_files(backend, mixed: Path) -> None:
    missing = mixed / "missing.png"
    batches = list(predict_paths(backend, [mixed, missing], batch_size=5))
    assert [len(b) for b in batches] == [5, 5, 5, 1]  # 12 good + 3 bad + 1 missing, streamed
    preds = [p for b in batches for p in b]
    errors = {Path(p.path).name: p.error for p in preds if not p.ok}
    assert set(errors) == BAD | {"missing.png"}
    assert "truncated" in errors["corrupt.jpg"] or "corrupt" in errors["corrupt.jpg"]
    assert "empty" in errors["empty.jpg"] and "not an image" in errors["notes.txt"]
    assert "no such file" in errors["missing.png"]
    good = [p for p in preds if p.ok]
    assert len(good) == 12
    for p in good:
        assert p.label in LABELS and p.display_name
        assert set(p.probabilities) == set(LABELS)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert p.confidence == max(p.probabilities.values())
        assert p.uncertain == (p.confidence < backend.uncertain_threshold)
    # the tiny model learned the colours: labels follow the class folders
    assert sum(p.label == Path(p.path).parent.name for p in good) >= 10


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_run_dir(tmp_path_factory.mktemp("stream-onnx"))


def test_single_thread_sessions_take_a_batch_per_core(onnx_run: Path) -> None:
    assert open_model(onnx_run, "onnx").concurrent_batches == 1  # one run over every core
    assert open_model(onnx_run, "onnx", threads=1).concurrent_batches == (os.cpu_count() or 1)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_batches_scored_at_once_give_the_same_rows_in_order(
    onnx_run: Path, mixed: Path, batch_size: int
) -> None:
    """Three batches with the model at once (single-thread runs) against one at a time: the
    same batches, the same files in the same order, the same answers and errors."""
    one = open_model(onnx_run, "onnx")
    many = open_model(onnx_run, "onnx", threads=1)
    many.concurrent_batches = 3
    a = list(predict_paths(one, [mixed], batch_size=batch_size))
    b = list(predict_paths(many, [mixed], batch_size=batch_size))
    assert [[p.path for p in x] for x in a] == [[p.path for p in x] for x in b]
    for p, q in zip((p for x in a for p in x), (q for x in b for q in x), strict=True):
        assert (p.label, p.error, p.reason, p.cells) == (q.label, q.error, q.reason, q.cells)
        for label, prob in (p.probabilities or {}).items():  # none for an unreadable file
            assert q.probabilities[label] == pytest.approx(prob, abs=SCORE_TOLERANCE)
    assert sum(p.ok for x in b for p in x) == 12


def test_stopping_early_with_batches_at_the_model(onnx_run: Path, mixed: Path) -> None:
    many = open_model(onnx_run, "onnx", threads=1)
    many.concurrent_batches = 3
    stream = predict_paths(many, [mixed], batch_size=1)
    first = next(stream)
    stream.close()  # the caller stops: pools and the feeding thread end, nothing hangs
    assert len(first) == 1
    again = [p for b in predict_paths(many, [mixed], batch_size=4) for p in b]
    assert len(again) == 15  # the same backend still answers a new call in full


@pytest.mark.skipif(sys.platform != "linux", reason="thread priorities are set on Linux only")
def test_decoding_threads_run_below_the_model() -> None:
    seen: dict[str, int] = {}

    def decoder() -> None:
        yield_to_model()
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = os.getpriority(os.PRIO_PROCESS, 0)
    thread = threading.Thread(target=decoder)
    thread.start()
    thread.join()
    assert seen["nice"] == min(19, base + DECODE_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # caller unchanged


def test_uncertain_threshold_override(backend, mixed: Path) -> None:
    def flags(t: float) -> list[bool]:
        return [
            p.uncertain
            for b in predict_paths(backend, [mixed], uncertain_threshold=t)
            for p in b
            if p.ok
        ]

    assert all(flags(1.0)) and not any(flags(0.0))


def _circle(size: int = IMAGE_SIZE) -> Image.Image:
    """A centred disc: identical under every flip and 90-degree rotation."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size, 3), 220, np.uint8)
    img[(yy - c) ** 2 + (xx - c) ** 2 <= (size / 4) ** 2] = (60, 60, 200)
    return Image.fromarray(img)


def test_tta_invariance(backend) -> None:
    """Equal within the score tolerance, not bit for bit: the 8 views are run as one batch (a
    flipped view is a different tensor), and float sums depend on the batch."""
    tol = dict(abs=SCORE_TOLERANCE, rel=SCORE_TOLERANCE)
    circle = _circle()
    plain, tta = (predict_images(backend, [circle], tta=t)[0] for t in (False, True))
    for lb in LABELS:
        assert tta.probabilities[lb] == pytest.approx(plain.probabilities[lb], **tol)
    img = synthetic_image("pro_b", seed=7, size=IMAGE_SIZE)  # not symmetric
    turns = (Image.Transpose.ROTATE_90, Image.Transpose.FLIP_LEFT_RIGHT)
    views = [img, *(img.transpose(t) for t in turns)]
    preds = predict_images(backend, views, tta=True)
    for p in preds[1:]:
        for lb in LABELS:
            assert p.probabilities[lb] == pytest.approx(preds[0].probabilities[lb], **tol)
    no_tta = predict_images(backend, views[:2])
    assert no_tta[0].probabilities != no_tta[1].probabilities  # so the test above means something


def test_no_white_cell_is_refused_with_its_reason(backend, tmp_path: Path) -> None:
    """A smear of red cells and background only gets no class, and says why; with the guard
    off it is answered; a field with a white cell is answered and its cells are listed."""
    from tests.conftest import PURPLE_NUCLEUS, smear_field

    from bloodcell.predict.records import NO_CELL_REASON

    empty = smear_field(7, size=IMAGE_SIZE * 2, red_cells=10)
    with_cell = smear_field(8, size=IMAGE_SIZE * 2, cells=((60, 60, 14, PURPLE_NUCLEUS),))
    refused, answered = predict_images(backend, [empty, with_cell], ["empty", "cell"])
    assert refused.out_of_scope is True and refused.reason == NO_CELL_REASON
    assert refused.label is None and refused.confidence is None and refused.cells == 0
    assert "no white cell" in refused.note
    assert answered.cells >= 1 and answered.cell_boxes
    top, left, bottom, right = answered.cell_boxes[0]
    assert top <= 60 < bottom and left <= 60 < right
    assert answered.reason in (None, "unlike the training images")
    unguarded = predict_images(backend, [empty], ["empty"], cell_guard=False)[0]
    assert unguarded.reason != NO_CELL_REASON and unguarded.cells is None
    empty.save(tmp_path / "empty.png")
    rows = [p for b in predict_paths(backend, [tmp_path]) for p in b]
    assert [r.reason for r in rows] == [NO_CELL_REASON]


def test_prepared_images_keep_their_own_guard_in_one_model_call(backend) -> None:
    """The server prepares each upload in its own request thread and scores the batch in one
    call: an image prepared with the guard is refused, one prepared without it is answered,
    as each would be alone."""
    from tests.conftest import smear_field

    from bloodcell.predict.records import NO_CELL_REASON
    from bloodcell.predict.stream import predict_prepared, prepare_image

    empty = smear_field(7, size=IMAGE_SIZE * 2, red_cells=10)
    mixed = [prepare_image(backend, empty, True), prepare_image(backend, empty, False)]
    guarded, unguarded = predict_prepared(backend, mixed, ["on", "off"])
    assert guarded.reason == NO_CELL_REASON
    alone = predict_images(backend, [empty], ["off"], cell_guard=False)[0]
    assert unguarded.reason == alone.reason and unguarded.label == alone.label
    assert predict_prepared(backend, []) == []
