"""A deployment of many providers for the BatchOps page's scale tests: provider configs made from provider_a's,
and a run index of a window of days with a seeded mix of outcomes (no runs executed)."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from batchops import runindex

from conftest import REPO

OUTCOME_MIX = [("COMPLETE", 0.86), ("BLOCKED", 0.04), ("NO DROP", 0.03), ("FAILED", 0.02), ("RUNNING", 0.01),
               (None, 0.04)]  # None: not run that day


def make_providers(home: Path, count: int, end: date, days: int = 30, seed: int = 5) -> list[str]:
    """`count` provider configs in home/include/configs (queues default and q2) and their indexed runs of the
    `days` snapshot dates up to `end`. Returns the provider ids."""
    for folder in ("configs", "pipelines", "sql"):
        target = home / "include" / folder
        if not target.exists():
            shutil.copytree(REPO / "include" / folder, target)
    configs = home / "include" / "configs"
    for extra in ("provider_a.yaml", "provider_b.yaml", "provider_c.yaml"):
        (configs / extra).unlink(missing_ok=True)
    template = (REPO / "include" / "configs" / "provider_a.yaml").read_text()
    rng = random.Random(seed)
    runs = home / "runs"
    ids = []
    for number in range(count):
        provider_id = f"shop_{number:04d}"
        ids.append(provider_id)
        text = template.replace("provider_id: provider_a", f"provider_id: {provider_id}")
        if number % 3 == 0:
            text += "queue: q2\n"
        (configs / f"{provider_id}.yaml").write_text(text)
        for pipeline in ("propensity_model", "propensity_scoring"):
            dag_id = f"{provider_id}__{pipeline}"
            months: dict[str, dict] = {}
            for offset in range(days):
                day = end - timedelta(days=offset)
                outcome = rng.choices([o for o, _ in OUTCOME_MIX], [w for _, w in OUTCOME_MIX])[0]
                if outcome is None or (pipeline == "propensity_model" and day.weekday() != 0):
                    continue  # models train on Mondays
                run_id = f"scheduled__{day.isoformat()}T00:00:00+00:00"
                months.setdefault(f"{day:%Y-%m}", {})[day.isoformat()] = {
                    "run_id": run_id, "outcome": outcome, "at": datetime(day.year, day.month, day.day, 6,
                                                                          tzinfo=UTC).isoformat(),
                    "reason": "" if outcome in ("COMPLETE", "RUNNING") else f"{outcome.lower()} on {day}"}
            folder = runs / dag_id / runindex.INDEX_FOLDER
            folder.mkdir(parents=True, exist_ok=True)
            for month, entries in months.items():
                (folder / f"{month}.json").write_text(json.dumps(dict(sorted(entries.items()))))
    return ids


def make_run_folder(home: Path, dag_id: str, run_id: str, snapshot: date, outcome: str = "COMPLETE") -> Path:
    """A minimal run folder (plan and summary) the run tab can show."""
    from batchops.artifacts import run_dir_for

    folder = run_dir_for(home / "runs", dag_id, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.json").write_text(json.dumps({"run_id": run_id, "snapshot_date": snapshot.isoformat(),
                                                  "stages": []}))
    (folder / "run_summary.md").write_text(f"# Run summary: {outcome}\n\n**made for the scale test**\n")
    return folder
