"""The BatchOps pages inside the Airflow UI (routes, page building, templates, safe file reads)."""

from __future__ import annotations


def create_app():
    """The FastAPI app that plugins/batchops_plugin.py mounts under /batchops."""
    from batchops.ui.routes import create_app as build

    return build()
