"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class BloodcellError(Exception):
    """Base class: the message must say what went wrong, where (the path), and what to do."""


class DatasetError(BloodcellError):
    """The dataset folder is missing, in an unknown layout, or unusable."""


class WeightsError(BloodcellError):
    """Pretrained weights were asked for but cannot be had (offline, wrong hash, ...)."""


class ModelError(BloodcellError):
    """A saved model or run directory is missing or malformed."""
