"""Model history: retraining a snapshot on the same data adds no second champion, a run's card shows the registry
as that run left it, and the provider's history (from the run index) lists every training and scoring run."""

from __future__ import annotations

from datetime import UTC, date, datetime

from batchops import runindex
from batchops.models import latest_approved, model_history
from batchops.stages.features import build_features
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.plan import write_plan
from batchops.stages.summarize import summarize
from batchops.stages.train import train
from batchops.stages.validate import validate
from batchops.storage.warehouse import open_warehouse
from batchops.ui.routes import champion_history
from batchops.ui.routes import model_history as provider_history

from conftest import make_drop, run_context

SNAPSHOT = date(2026, 2, 1)


def train_run(settings, run_id: str) -> dict:
    ctx = run_context(settings, run_id=run_id)
    write_plan(ctx, "conf.snapshot_date", {})
    for stage in (ingest, validate, load, build_features):
        stage(ctx)
    result = train(ctx)
    summarize(ctx, {t: "success" for t in ctx.pipeline.stages if t != "summarize"})
    return result


def test_retraining_a_snapshot_adds_no_second_champion_and_cards_show_their_time(project):
    make_drop(project, "provider_a", SNAPSHOT, customers=500)
    first = train_run(project, "manual__first")
    between = datetime.now(UTC)
    second = train_run(project, "manual__again")
    assert first["status"] == "approved"
    assert second["status"] == "identical" and first["model_id"] in second["reason"]
    decisions = model_history(project, "provider_a", "propensity_model")
    assert [d["status"] for d in decisions] == ["identical", "approved"]
    with open_warehouse(project, "provider_a") as warehouse:
        assert latest_approved(warehouse, project, "propensity_model", SNAPSHOT).model_id == first["model_id"]
    # the first run's card: the registry as that run left it, without the later retrain
    as_first_left_it = champion_history(project, first["model_id"], as_of=between)
    assert [d["model_id"] for d in as_first_left_it] == [first["model_id"]]
    history = provider_history(project, "provider_a")
    assert [t["decision"] for t in history["training"]] == ["identical"]  # the date's latest run
    assert history["training"][0]["roc_auc"] > 0.5 and history["training"][0]["n"] > 0
    entry = runindex.read_window(project.runs_dir, "provider_a__propensity_model", SNAPSHOT, SNAPSHOT)[SNAPSHOT]
    assert entry["run_id"] == "manual__again" and entry["outcome"] == "COMPLETE"
