"""The original tool's command line, now driving a BatchOps deployment over Airflow's REST API.

    python agent.py run --provider provider_a --pipeline propensity_model --snapshot-date 2026-02-01
    python agent.py resume --run-id <run id>
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
from venv_bootstrap import ensure_project_python  # noqa: E402

ensure_project_python(__file__)
from batchops.client import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
