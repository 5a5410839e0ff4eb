"""Features (point in time), labels, training, promotion, model integrity and scoring, without Airflow."""

from __future__ import annotations

import json
import pickle
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from batchops.config import Guardrails
from batchops.errors import ModelIntegrityError, SanityCheckError
from batchops.models import find_approved_model, load_verified_model
from batchops.stages.features import build_features
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.score import _write_predictions, sanity_check, score
from batchops.stages.train import decide_promotion, train
from batchops.stages.validate import validate
from batchops.storage.warehouse import open_warehouse

from conftest import SNAPSHOT, make_drop, run_context


def prepare(settings, provider_id="provider_a", pipeline_id="propensity_model", snapshot=SNAPSHOT,
            customers=800, run_id="manual__test"):
    make_drop(settings, provider_id, snapshot, customers=customers)
    ctx = run_context(settings, provider_id, pipeline_id, snapshot, run_id)
    ingest(ctx)
    assert validate(ctx)["passed"]
    load(ctx)
    build_features(ctx)
    return ctx


def features_at(ctx, purpose="score"):
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        return warehouse.execute(
            "SELECT * EXCLUDE (source_snapshot) FROM features WHERE source_snapshot = ? AND purpose = ? "
            "ORDER BY snapshot_date, customer_id", [ctx.snapshot_date, purpose]).df()


def test_features_ignore_transactions_on_or_after_the_snapshot(project):
    ctx = prepare(project)
    before = features_at(ctx)
    with open_warehouse(project, "provider_a") as warehouse:
        warehouse.execute("""INSERT INTO transactions BY NAME
            SELECT 'LATE' || customer_id || i AS transaction_id, customer_id, DATE '2026-02-01' + i::INTEGER AS txn_date,
                   999.0 AS amount, 'web' AS channel, DATE '2026-02-01' AS valid_from, 'test' AS load_id
            FROM customers, range(3) t(i) WHERE valid_from <= DATE '2026-02-01' AND valid_to IS NULL""")
    build_features(ctx)
    pd.testing.assert_frame_equal(features_at(ctx), before)


def test_every_customer_gets_features_even_without_transactions(project):
    ctx = prepare(project)
    with open_warehouse(project, "provider_a") as warehouse:
        warehouse.execute("INSERT INTO customers BY NAME SELECT 'NEW1' AS customer_id, DATE '2026-01-20' AS signup_date,"
                          " 'north' AS region, 'smb' AS segment, 30 AS age, DATE '2026-02-01' AS valid_from")
    build_features(ctx)
    row = features_at(ctx).set_index("customer_id").loc["NEW1"]
    assert row["has_history"] == 0 and row["txn_count_365"] == 0 and row["amount_sum_90"] == 0
    assert row["recency_days"] == 12  # no purchase yet: as long ago as the signup
    assert len(features_at(ctx)) == 801


def labels_of(ctx):
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        return warehouse.execute("SELECT * FROM labels WHERE source_snapshot = ? ORDER BY snapshot_date, customer_id",
                                 [ctx.snapshot_date]).df()


def test_features_aggregated_in_customer_ranges_equal_one_pass(project):
    """Large snapshots are aggregated in ranges of customer ids (one GROUP BY per date and range); the rows
    must be the same as from one pass, and a rerun with other ranges leaves no duplicate."""
    import dataclasses

    ctx = prepare(project)
    whole = (features_at(ctx, "score"), features_at(ctx, "train"), labels_of(ctx))
    shared = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, feature_partition_customers=250))
    build_features(shared)  # 800 customers: 4 ranges per date
    for before, after in zip(whole, (features_at(ctx, "score"), features_at(ctx, "train"), labels_of(ctx)),
                             strict=True):
        pd.testing.assert_frame_equal(after.reset_index(drop=True), before.reset_index(drop=True))
    assert len(whole[0]) == 800 and len(whole[1]) == len(whole[2]) > 800


def test_labels_are_activity_in_the_horizon_after_each_training_date(project):
    ctx = prepare(project)
    transactions = pd.read_csv(ctx.landing_dir / "transactions.csv", parse_dates=["txn_date"])
    with open_warehouse(project, "provider_a") as warehouse:
        labels = warehouse.execute("SELECT customer_id, snapshot_date, label FROM labels").df()
    assert sorted(labels["snapshot_date"].astype(str).str[:10].unique()) == ["2025-12-03", "2026-01-02"]
    for as_of, group in labels.groupby("snapshot_date"):
        start = pd.Timestamp(as_of)
        window = transactions[(transactions.txn_date >= start) & (transactions.txn_date < start + timedelta(days=30))]
        expected = group["customer_id"].isin(set(window["customer_id"])).astype(int)
        assert (group["label"].to_numpy() == expected.to_numpy()).all()


def test_training_learns_the_planted_signal_and_writes_artifacts(project):
    ctx = prepare(project)
    result = train(ctx)
    metrics = pd.read_json(ctx.run_dir / "metrics.json", typ="series")
    assert result["status"] == "approved"
    assert metrics["roc_auc"] > 0.7, metrics["roc_auc"]
    for key in ("accuracy", "pr_auc", "log_loss", "brier", "positive_rate_train", "n_train", "n_test",
                "feature_dates", "features", "library_versions"):
        assert key in metrics
    assert (ctx.run_dir / "model" / "model.pkl").exists() and (ctx.run_dir / "roc_curve.png").exists()
    assert find_approved_model(project, "provider_a", "propensity_model", SNAPSHOT).model_id == result["model_id"]


def test_promotion_rejects_a_model_worse_than_the_champion():
    guardrails = Guardrails(min_roc_auc=0.6, min_train_rows=10, max_auc_drop=0.02)
    metrics = {"roc_auc": 0.75, "n_train": 1000}
    status, reason = decide_promotion(metrics, guardrails, {"model_id": "champ", "roc_auc_on_window": 0.80})
    assert status == "rejected" and "below champion champ" in reason
    assert decide_promotion(metrics, guardrails, {"model_id": "champ", "roc_auc_on_window": 0.76})[0] == "approved"
    assert decide_promotion({"roc_auc": 0.55, "n_train": 5}, guardrails, None)[1].count("below") == 2


def test_rejected_model_is_registered_but_never_scores(project):
    ctx = prepare(project)
    champion = train(ctx)["model_id"]
    strict = ctx.pipeline.model_copy(update={"guardrails": Guardrails(min_roc_auc=0.999)})
    strict_ctx = type(ctx)(ctx.dag_id, "manual__strict", ctx.provider, strict, ctx.snapshot_date, project)
    rejected = train(strict_ctx)
    assert rejected["status"] == "rejected" and "min_roc_auc 0.999" in rejected["reason"]
    assert score(ctx)["model_id"] == champion


def test_scoring_when_the_only_model_was_rejected_says_why(project):
    ctx = prepare(project)
    strict = ctx.pipeline.model_copy(update={"guardrails": Guardrails(min_roc_auc=0.999)})
    train(type(ctx)(ctx.dag_id, "manual__strict", ctx.provider, strict, ctx.snapshot_date, project))
    with pytest.raises(ModelIntegrityError, match=r"was rejected: out_of_time roc_auc .* is below min_roc_auc 0.999") as refused:
        score(ctx)
    assert "run provider_a__propensity_model again" in str(refused.value)


def test_scoring_without_an_approved_model_says_which_dag_to_run(project):
    ctx = prepare(project, pipeline_id="propensity_scoring")
    with pytest.raises(ModelIntegrityError, match="run provider_a__propensity_model first"):
        score(ctx)


def test_tampered_model_is_refused_and_a_planted_pickle_never_runs(project, tmp_path, bad_input):
    ctx = prepare(project)
    train(ctx)
    model = find_approved_model(project, "provider_a", "propensity_model", SNAPSHOT)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    model.path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_verified_model(project, "provider_a", model)
    with pytest.raises(ModelIntegrityError, match="sha256") as refused:
        score(ctx)
    assert not marker.exists()
    bad_input.record("model", "tampered model.pkl (a planted malicious pickle)", refused.value, home=project.home,
                     kept="the pickle is never unpickled; no predictions written")


def test_model_outside_the_store_is_refused(project, bad_input):
    ctx = prepare(project)
    train(ctx)
    model = find_approved_model(project, "provider_a", "propensity_model", SNAPSHOT)
    outside = type(model)(**{**model.__dict__, "path": ctx.run_dir / "model" / "model.pkl"})
    with pytest.raises(ModelIntegrityError, match="outside the model store") as refused:
        load_verified_model(project, "provider_a", outside)
    bad_input.record("security", "registry entry pointing outside the model store", refused.value,
                     home=project.home, kept="never loaded")


def test_scoring_twice_keeps_one_row_per_customer(project):
    ctx = prepare(project)
    train(ctx)
    first = score(ctx)
    second = score(ctx)
    assert first["rows"] == second["rows"] == 800
    with open_warehouse(project, "provider_a") as warehouse:
        assert warehouse.execute("SELECT count(*), count(DISTINCT customer_id) FROM predictions").fetchone() == (800, 800)
    predictions = pd.read_parquet(ctx.run_dir / "predictions" / "predictions.parquet")
    assert list(predictions.columns) == ["customer_id", "score", "snapshot_date", "model_id"]


@pytest.mark.parametrize(("ids", "scores", "expected", "message"), [
    (["a", "b"], [0.1, 0.2], 3, "2 predictions for 3 customers"),
    (["a", "a"], [0.1, 0.2], 2, "1 duplicate customer ids"),
    (["a", None], [0.1, 0.2], 2, "null customer ids"),
    (["a", "b"], [0.1, np.nan], 2, "NaN scores"),
    (["a", "b"], [0.1, 1.2], 2, "outside [0, 1]"),
    (["a", "b", "c"], [0.3, 0.3, 0.3], 3, "all 3 scores are equal"),
])
def test_sanity_checks_refuse_bad_predictions(ids, scores, expected, message):
    with pytest.raises(SanityCheckError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sanity_check(ids, np.array(scores, dtype=float), expected)


# OWASP CSV injection: = + - @ (and full-width forms), after leading blanks, or a leading tab/CR/LF.
FORMULA_IDS = ["=cmd|'/c calc'!A1", "+1", "-2", "@x", " =2+2", "\u00a0=3+3", "\uff1d3+3", "\uff0b4", "\uff0d5",
               "\uff20SUM(A1)", "\t=6", "\r=7", "\n=8", "\u3000=9", "\u2212 10", "\tplain", "\rplain"]
PLAIN_IDS = ["C000123", "000042", "a=b", "x+1", "mail@example", "  C77", "C-1"]


def test_formula_like_ids_do_not_become_spreadsheet_formulas(tmp_path, bad_input):
    import csv

    ids = FORMULA_IDS + PLAIN_IDS
    frame = pd.DataFrame({"customer_id": ids, "score": 0.1, "snapshot_date": date(2026, 2, 1), "model_id": "m"})
    with duckdb.connect() as con:
        _write_predictions(con, frame, tmp_path)
    with (tmp_path / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        csv_ids = [row["customer_id"] for row in csv.DictReader(handle)]
    assert csv_ids[:len(FORMULA_IDS)] == ["'" + value for value in FORMULA_IDS]
    assert csv_ids[len(FORMULA_IDS):] == PLAIN_IDS
    assert pd.read_parquet(tmp_path / "predictions.parquet")["customer_id"].tolist() == ids
    bad_input.record("output", "customer ids that start like a formula (= + - @, after blanks, full-width, tab/CR/LF)",
                     f"predictions.csv prefixes all {len(FORMULA_IDS)} forms with ' (OWASP rule set), e.g. "
                     f"{[csv_ids[4], csv_ids[6]]}; ids such as 'a=b', 'C-1' stay as they are; the Parquet and "
                     "warehouse keep the raw id", kept="ids unchanged in the warehouse and Parquet")


def test_a_warehouse_moved_to_another_folder_still_trains_and_scores(project, tmp_path, bad_input):
    """Registry paths are relative to the model store: a warehouse copied elsewhere (compose's /opt/airflow,
    a restore to another disk) keeps its champion comparison and scoring."""
    import dataclasses
    import shutil

    ctx = prepare(project)
    first = train(ctx)["model_id"]
    moved = tmp_path / "other_disk" / "warehouse"
    shutil.copytree(project.warehouse_dir, moved)
    shutil.rmtree(project.warehouse_dir)  # the old place is gone
    settings = dataclasses.replace(project, warehouse_dir=moved)
    moved_ctx = type(ctx)(ctx.dag_id, "manual__moved", ctx.provider, ctx.pipeline, ctx.snapshot_date, settings)
    retrained = train(moved_ctx)  # loads the champion from its new place to compare on the holdout
    metrics = json.loads((moved_ctx.run_dir / "metrics.json").read_text())
    assert metrics["promotion"]["champion"]["model_id"] == first
    assert "roc_auc_on_window" in metrics["promotion"]["champion"]
    assert score(moved_ctx)["model_id"] in (first, retrained["model_id"])
    bad_input.record("model", "warehouse moved to another folder (BATCHOPS_WAREHOUSE_DIR changed)",
                     f"train compared with champion {first[:40]}... at its new place and scoring used "
                     f"{score(moved_ctx)['model_id'][:40]}...", kept="registry and models intact")


def test_registries_with_absolute_paths_are_migrated_on_open(project):
    ctx = prepare(project)
    model_id = train(ctx)["model_id"]
    with open_warehouse(project, "provider_a") as warehouse:  # as written before paths were relative
        warehouse.execute("UPDATE model_registry SET path = ? WHERE model_id = ?",
                          [f"/old/home/warehouse/models/provider_a/{model_id}/model.pkl", model_id])
    model = find_approved_model(project, "provider_a", "propensity_model", SNAPSHOT)
    assert model.path == project.model_store("provider_a") / model_id / "model.pkl"
    assert load_verified_model(project, "provider_a", model) is not None
    with open_warehouse(project, "provider_a") as warehouse:
        stored = warehouse.execute("SELECT path FROM model_registry WHERE model_id = ?", [model_id]).fetchone()[0]
    assert stored == f"{model_id}/model.pkl"


def test_a_registry_path_that_climbs_out_of_the_store_is_refused(project):
    ctx = prepare(project)
    model_id = train(ctx)["model_id"]
    with open_warehouse(project, "provider_a") as warehouse:
        warehouse.execute("UPDATE model_registry SET path = '../../../run/model.pkl' WHERE model_id = ?", [model_id])
    model = find_approved_model(project, "provider_a", "propensity_model", SNAPSHOT)
    with pytest.raises(ModelIntegrityError, match="outside the model store"):
        load_verified_model(project, "provider_a", model)
