"""What Lightning shows on the console while a model trains.

By default a user sees bloodcell's own lines and one progress bar per epoch, without the
metrics of every step; Lightning's own lines (devices found, tips, why `fit` stopped) and its
model-summary table only with `verbose` (`bloodcell train --verbose`). The metrics are in
`log.csv` and `curves.png` either way.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar

#: Lightning's loggers; `lightning.pytorch` sets its own level to INFO when it is imported.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class _CurrentStderr:
    """A stream that is whatever `sys.stderr` is when it is written to: Lightning's handlers
    otherwise keep the stderr of the moment Lightning was imported, which a caller that
    redirects stderr later (a test's capture, a log file) never sees."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


CURRENT_STDERR = _CurrentStderr()


class EpochBar(TQDMProgressBar):
    """Lightning's bar, one per epoch, without the step's metrics beside it and without a
    second bar for each validation."""

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        return {}

    def init_validation_tqdm(self) -> Any:
        from tqdm import tqdm

        return tqdm(disable=True)


def lightning_console(progress: bool, verbose: bool) -> list[Any]:
    """Set Lightning's loggers to INFO with `verbose`, else WARNING (its warnings still show),
    and return the progress-bar callback the Trainer takes (none with `verbose`: Lightning's own
    bar, metrics included; none without `progress`: no bar at all)."""
    level = logging.INFO if verbose else logging.WARNING
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in ("lightning", *LIGHTNING_LOGGERS):  # and the parent their lines may reach
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:  # bound to the stderr of import time
                handler.setStream(CURRENT_STDERR)
    return [EpochBar()] if progress and not verbose else []
