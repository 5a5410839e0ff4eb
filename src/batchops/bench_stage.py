"""Run one pipeline stage alone, in its own process, for the benchmark harness (scripts/bench.py).

    python -m batchops.bench_stage STAGE PROVIDER PIPELINE SNAPSHOT_DATE RUN_ID

Settings come from the BATCHOPS_* environment; the stage's result is printed as JSON.
"""

from __future__ import annotations

import json
import sys
from datetime import date

from batchops.config import load_config_set
from batchops.runcontext import RunContext
from batchops.settings import Settings


def main(argv: list[str]) -> int:
    stage, provider_id, pipeline_id, snapshot, run_id = argv
    settings = Settings.from_env()
    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    if config_set.issues:
        print("\n".join(str(i) for i in config_set.issues), file=sys.stderr)
        return 2
    ctx = RunContext(f"{provider_id}__{pipeline_id}", run_id, config_set.providers[provider_id],
                     config_set.pipeline_for(provider_id, pipeline_id), date.fromisoformat(snapshot), settings)
    if stage == "plan":
        from batchops.stages.plan import write_plan

        result = write_plan(ctx, "benchmark", {})
    elif stage == "ingest":
        from batchops.stages.ingest import ingest

        result = {e: r["rows"] for e, r in ingest(ctx)["entities"].items()}
    elif stage == "validate":
        from batchops.stages.validate import validate

        result = {"passed": validate(ctx)["passed"]}
    elif stage == "load":
        from batchops.stages.load import load

        result = load(ctx)
    elif stage == "build_features":
        from batchops.stages.features import build_features

        result = build_features(ctx)
    elif stage == "train":
        from batchops.stages.train import train

        result = train(ctx)
    elif stage == "score":
        from batchops.stages.score import score

        result = score(ctx)
    else:
        print(f"unknown stage {stage!r}", file=sys.stderr)
        return 2
    print(json.dumps(result, default=str)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
