"""Airflow plugin: BatchOps run artifacts and provider health inside the Airflow UI.

A "BatchOps" tab on every DAG run, a "BatchOps" page in the navigation, and extra links on the
BatchOps tasks that open the run tab. The pages are served by batchops.ui (FastAPI, mounted under
/batchops) and authorized by Airflow's own security dependencies.
"""

from __future__ import annotations

from functools import cached_property
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

URL_PREFIX = "/batchops"


class BatchOpsRunLink(BaseOperatorLink):
    """An extra link on every task of a BatchOps DAG, to the run's BatchOps tab."""

    name = "BatchOps run artifacts"

    def get_link(self, operator, *, ti_key) -> str:
        if "__" not in ti_key.dag_id:
            return ""
        return f"{URL_PREFIX}/runs/{quote(ti_key.dag_id, safe='')}/{quote(ti_key.run_id, safe='')}"


def _fastapi_app():
    from batchops.ui import create_app

    return create_app()


class BatchOpsPlugin(AirflowPlugin):
    name = "batchops"
    external_views = [
        {"name": "BatchOps", "href": f"{URL_PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}", "destination": "dag_run",
         "url_route": "batchops_run"},
        {"name": "BatchOps", "href": f"{URL_PREFIX}/", "destination": "nav", "url_route": "batchops"},
    ]
    global_operator_extra_links = [BatchOpsRunLink()]

    @cached_property
    def fastapi_apps(self) -> list[dict]:
        """Built when first asked for (the api-server mounting it, `airflow plugins`), not when the file is
        imported: the scheduler, DAG processor, triggerer, workers and tasks load the plugins too (for macros
        and links), and building the app there imported Airflow's security and ORM modules (0.7 s) and
        started the config warm-up thread, for pages only the api-server serves."""
        return [{"app": _fastapi_app(), "url_prefix": URL_PREFIX, "name": "BatchOps"}]
