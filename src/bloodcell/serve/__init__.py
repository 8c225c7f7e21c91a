"""Serve a saved model over HTTP: a REST API for lab systems and a one-page UI for people.

`create_app` is imported lazily by the CLI so that `bloodcell --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app"]

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(*args: Any, **kwargs: Any) -> FastAPI:
    """Build the FastAPI app (see `bloodcell.serve.app.create_app`)."""
    from bloodcell.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)
