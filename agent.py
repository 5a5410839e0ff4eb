"""The original tool's command line, now driving a BatchOps deployment over Airflow's REST API.

    python agent.py run --provider provider_a --pipeline propensity_model --snapshot-date 2026-02-01
    python agent.py resume --run-id <run id>
"""

from batchops.client import main

if __name__ == "__main__":
    raise SystemExit(main())
