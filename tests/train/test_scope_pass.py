"""A run ends with an out-of-scope detector unless `ood_acceptance` is None."""

from __future__ import annotations

import json
from pathlib import Path

from tests.train import tiny_run

from bloodcell.models.engines import open_model


def test_training_ends_with_an_out_of_scope_detector(tmp_path: Path) -> None:
    from bloodcell.models.scope_detector import SCOPE_DETECTOR_FILE

    run = tiny_run(tmp_path, epochs=1)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["ood"]["acceptance"] == 0.99 and (run / "model" / SCOPE_DETECTOR_FILE).is_file()
    backend = open_model(run)
    assert (
        backend.scope_detector is not None and backend.ood_threshold == config["ood"]["threshold"]
    )
    none = tiny_run(tmp_path / "no-detector", epochs=1, ood_acceptance=None)
    assert (
        not (none / "model" / SCOPE_DETECTOR_FILE).is_file()
        and open_model(none).scope_detector is None
    )
