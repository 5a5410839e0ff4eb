"""The provider-day index behind the BatchOps calendar: per DAG and month, the latest run of each snapshot date
and its outcome, so that a page over a thousand providers reads two small files per DAG, not every run folder.

runs/<dag_id>/.calendar/<YYYY-MM>.json maps a snapshot date to {run_id, outcome, reason, at}. plan writes
RUNNING, summarize the outcome; a later run of the same date replaces the entry (the latest run is the
date's state). The folder's leading dot keeps it out of run listings and retention, which skip dot
folders. Updates take an flock on the month file and replace it atomically, so concurrent runs of one DAG
on several workers never lose each other's entries. A DAG folder written before the index existed is
indexed from its run folders the first time it is read (`ensure_index`).
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from batchops.artifacts import write_json_atomic

INDEX_FOLDER = ".calendar"
OUTCOMES = ("COMPLETE", "BLOCKED", "NO DROP", "FAILED", "RUNNING")


def month_file(runs_dir: Path, dag_id: str, day: date) -> Path:
    return runs_dir / dag_id / INDEX_FOLDER / f"{day:%Y-%m}.json"


def run_facts(run_dir: Path) -> dict[str, Any]:
    """What the model history shows of a run, kept in the index so that it outlives the run folder (retention):
    a training run's figures and decision, a scoring run's drift and score distribution."""
    facts: dict[str, Any] = {}
    metrics = _read(run_dir / "metrics.json")
    if metrics.get("model_id"):
        forward = metrics.get("out_of_time") or {}
        promotion = metrics.get("promotion") or {}
        facts["training"] = {
            "model_id": metrics["model_id"], "roc_auc": metrics.get("roc_auc"),
            "out_of_time_roc_auc": forward.get("roc_auc") if forward.get("available") else None,
            "positive_rate": metrics.get("positive_rate_test", metrics.get("positive_rate_train")),
            "n": (metrics.get("n_train") or 0) + (metrics.get("n_test") or 0),
            "decision": promotion.get("status"), "reason": str(promotion.get("reason") or "")[:300],
            "champion_before": (promotion.get("champion") or {}).get("model_id")}
    drift = _read(run_dir / "drift_report.json")
    if drift.get("verdict"):
        facts["scoring"] = {"model_id": drift.get("model_id"), "drift": drift.get("verdict"),
                            "max_psi": drift.get("max_psi"), **score_distribution(run_dir)}
    return facts


def score_distribution(run_dir: Path) -> dict[str, Any]:
    """Rows, mean and deciles 1, 5 and 9 of a scoring run's predictions ({} when it wrote none)."""
    predictions = run_dir / "predictions" / "predictions.parquet"
    if not predictions.is_file():
        return {}
    import duckdb

    with duckdb.connect() as con:
        row = con.execute("SELECT count(*), avg(score), quantile_cont(score, [0.1, 0.5, 0.9]) "
                          "FROM read_parquet(?)", [str(predictions)]).fetchone()
    rows, mean, deciles = row
    return {"rows": rows, "mean_score": mean, "p10": deciles[0] if deciles else None,
            "p50": deciles[1] if deciles else None, "p90": deciles[2] if deciles else None}


def record_run(runs_dir: Path, dag_id: str, run_id: str, snapshot_date: date, outcome: str, reason: str = "",
               at: datetime | None = None, latest: bool | None = None, facts: dict[str, Any] | None = None) -> None:
    """Set the snapshot date's entry to this run's state. A run that starts (RUNNING, from plan) becomes the
    date's entry; a final outcome updates the entry only when it is this run's, so the late summary of a run a
    newer run of the same date superseded changes nothing. `latest` True forces the entry (indexing old runs in
    time order)."""
    target = month_file(runs_dir, dag_id, snapshot_date)
    target.parent.mkdir(parents=True, exist_ok=True)
    stamp = (at or datetime.now(UTC)).isoformat(timespec="seconds")
    with open(target.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _read(target)
        key = snapshot_date.isoformat()
        current = entries.get(key)
        if latest is None:
            latest = outcome == "RUNNING" or not current or current.get("run_id") == run_id
        if not latest:
            return
        entries[key] = {"run_id": run_id, "outcome": outcome, "reason": reason[:300], "at": stamp,
                        **({"facts": facts} if facts else {})}
        write_json_atomic(target, dict(sorted(entries.items())))


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def months_between(start: date, end: date) -> list[date]:
    months, current = [], start.replace(day=1)
    while current <= end:
        months.append(current)
        current = (current + timedelta(days=32)).replace(day=1)
    return months


def read_window(runs_dir: Path, dag_id: str, start: date, end: date,
                reader=None) -> dict[date, dict[str, Any]]:
    """Entries of snapshot dates start..end. `reader(folder_parts, name)` reads a month file (the pages pass
    their link-refusing reader); by default a plain read."""
    found: dict[date, dict[str, Any]] = {}
    for month in months_between(start, end):
        name = f"{month:%Y-%m}.json"
        entries = reader((dag_id, INDEX_FOLDER), name) if reader else _read(runs_dir / dag_id / INDEX_FOLDER / name)
        for key, entry in (entries or {}).items():
            try:
                day = date.fromisoformat(key)
            except (TypeError, ValueError):
                continue
            if start <= day <= end and isinstance(entry, dict):
                found[day] = entry
    return found


def outcome_of_summary(text: str | None) -> tuple[str, str]:
    """(outcome, why) from run_summary.md's first lines; ('RUNNING', '') before summarize wrote it."""
    if text is None:
        return "RUNNING", ""
    first, _, rest = text.partition("\n")
    outcome = first.replace("# Run summary:", "").strip()
    reason = next((line.strip("* ") for line in rest.splitlines() if line.startswith("**")), "")
    return outcome, reason


def ensure_index(runs_dir: Path, dag_id: str) -> bool:
    """Index a DAG folder's runs from their folders when it has run folders but no index yet (runs made before
    the index existed). Returns whether it wrote one."""
    folder = runs_dir / dag_id
    if not folder.is_dir() or folder.is_symlink() or (folder / INDEX_FOLDER).exists():
        return False
    runs = []
    for entry in os.scandir(folder):
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        run_folder = Path(entry.path)
        try:
            plan = json.loads((run_folder / "plan.json").read_text())
            day = date.fromisoformat(plan["snapshot_date"])
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            continue
        try:
            summary = (run_folder / "run_summary.md").read_text(errors="replace")
        except OSError:
            summary = None
        outcome, reason = outcome_of_summary(summary)
        at = datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC)
        runs.append((at, str(plan.get("run_id", entry.name)), day, outcome, reason, run_folder))
    (folder / INDEX_FOLDER).mkdir(exist_ok=True)
    for at, run_id, day, outcome, reason, run_folder in sorted(runs, key=lambda r: r[:5]):
        record_run(runs_dir, dag_id, run_id, day, outcome, reason, at, latest=True, facts=run_facts(run_folder))
    return True


def all_entries(runs_dir: Path, dag_id: str, reader=None) -> dict[date, dict[str, Any]]:
    """Every indexed snapshot date of a DAG (the model history): all month files."""
    folder = runs_dir / dag_id / INDEX_FOLDER
    try:
        months = sorted(name[:-5] for name in os.listdir(folder) if name.endswith(".json"))
    except OSError:
        return {}
    if not months:
        return {}
    first, last = date.fromisoformat(months[0] + "-01"), date.fromisoformat(months[-1] + "-01")
    return read_window(runs_dir, dag_id, first, (last + timedelta(days=32)).replace(day=1) - timedelta(days=1), reader)
