"""score: predictions for every customer of the snapshot with the verified approved model.

Sanity checks run before anything is published; predictions/ appears whole or not at all, and the
warehouse rows of (snapshot, model) are replaced in one transaction.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from batchops.artifacts import new_staging_dir, publish_dir, read_json, write_json_atomic
from batchops.duck import fetch_frame, scratch_connection, widen_floats
from batchops.errors import DriftError, ModelIntegrityError, SanityCheckError
from batchops.faults import crash_point, fail_once, pause_point
from batchops.models import (
    TRAINING_PROFILE,
    RegisteredModel,
    check_features_match,
    latest_approved,
    latest_rejection,
    load_verified_model,
)
from batchops.modeltrust import drift_report
from batchops.plots import plot_drift, plot_score_histogram
from batchops.runcontext import RunContext
from batchops.sqlfiles import run_sql_file
from batchops.sqlsafe import quote_identifier, string_literal
from batchops.storage.versions import VISIBLE_AT
from batchops.storage.warehouse import open_warehouse, transaction

CHUNK_ROWS = 250_000
# OWASP CSV injection: a cell a spreadsheet would run as a formula starts with = + - @ (or their
# full-width / minus-sign forms), possibly after white space a spreadsheet skips, or with tab/CR/LF.
_SPACES = "\t\n\r\f\v \u00a0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
FORMULA_START = "^(?:[\t\r\n]|[" + _SPACES + "]*[=+\\-@\uff1d\uff0b\uff0d\uff20\u2212\ufe62\ufe63\ufe66])"


def sanity_check(customer_ids, scores, expected_customers: int) -> None:
    """Refuse to publish predictions that cannot be right."""
    import pandas as pd

    ids = customer_ids if isinstance(customer_ids, pd.Series) else pd.Series(customer_ids, dtype=object)
    problems = []
    if len(scores) != expected_customers:
        problems.append(f"{len(scores)} predictions for {expected_customers} customers in the snapshot")
    present = ids.dropna()
    duplicates = int(present.duplicated().sum())  # hashed in pandas: a Python set of millions of ids cost seconds
    if duplicates:
        problems.append(f"{duplicates} duplicate customer ids")
    if len(present) != len(ids):
        problems.append("null customer ids")
    nulls = int(np.isnan(scores).sum())
    if nulls:
        problems.append(f"{nulls} null/NaN scores")
    outside = int(((scores < 0) | (scores > 1)).sum())
    if outside:
        problems.append(f"{outside} scores outside [0, 1]")
    if len(scores) > 1 and nulls == 0 and float(np.nanmax(scores) - np.nanmin(scores)) == 0.0:
        problems.append(f"all {len(scores)} scores are equal ({scores[0]:.6f}); the model or features are broken")
    if problems:
        raise SanityCheckError("predictions failed sanity checks, nothing was published: " + "; ".join(problems))


def _predict(model, features_frame, feature_columns: list[str]):
    scores = np.empty(len(features_frame), dtype="float64")
    for start in range(0, len(features_frame), CHUNK_ROWS):
        chunk = widen_floats(features_frame.iloc[start:start + CHUNK_ROWS][feature_columns])
        scores[start:start + CHUNK_ROWS] = model.predict_proba(chunk)[:, 1]
    return scores


def _write_predictions(connection, frame, folder: Path, between_files=lambda: None) -> None:
    """Parquet and CSV; ids that start like a formula (FORMULA_START) get a leading ' in the CSV only."""
    connection.register("scored", frame)
    # snapshot_date as DATE whatever the frame holds (a datetime64 column: converting a million Python date
    # objects cost 0.55 s of the two copies)
    connection.execute("COPY (SELECT customer_id, score, CAST(snapshot_date AS DATE) AS snapshot_date, model_id "
                       f"FROM scored) TO {string_literal(str(folder / 'predictions.parquet'))} (FORMAT parquet)")
    between_files()
    connection.execute(
        "COPY (SELECT CASE WHEN regexp_matches(customer_id, $formula_start) THEN '''' || customer_id "
        "ELSE customer_id END AS customer_id, score, CAST(snapshot_date AS DATE) AS snapshot_date, model_id FROM scored) "
        f"TO {string_literal(str(folder / 'predictions.csv'))} (HEADER, DELIMITER ',')", {"formula_start": FORMULA_START})
    connection.unregister("scored")


def resolve_model(ctx: RunContext) -> RegisteredModel:
    with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
        model = latest_approved(warehouse, ctx.settings, ctx.pipeline.model_pipeline, ctx.snapshot_date)
        rejection = None if model else latest_rejection(warehouse, ctx.settings, ctx.pipeline.model_pipeline,
                                                        ctx.snapshot_date)
    if model is None:
        dag = f"{ctx.provider.provider_id}__{ctx.pipeline.model_pipeline}"
        raise ModelIntegrityError(
            f"no approved model for {ctx.provider.provider_id}/{ctx.pipeline.model_pipeline} trained on or before "
            f"{ctx.snapshot_date}; " + (f"{rejection}. Fix what the guardrail names (or the provider's guardrails) "
                                        f"and run {dag} again" if rejection else f"run {dag} first"))
    return model


def check_drift(ctx: RunContext, registered: RegisteredModel, features_frame) -> dict[str, Any]:
    """The drift guardrail, before anything is published: drift_report.json and drift.png in the run folder;
    DriftError when the verdict is block, a warning event when it is warn."""
    guard = ctx.pipeline.guardrails.drift
    profile_path = registered.path.parent / TRAINING_PROFILE
    if not profile_path.is_file():
        report = {"verdict": "unchecked", "model_id": registered.model_id,
                  "summary": f"model {registered.model_id} has no {TRAINING_PROFILE} (trained before the drift "
                             "guardrail existed); retrain it to have drift checked"}
        write_json_atomic(ctx.run_dir / "drift_report.json", report)
        return report
    report = drift_report(read_json(profile_path), features_frame, guard.max_psi, guard.max_null_change, guard.action)
    report["model_id"] = registered.model_id
    write_json_atomic(ctx.run_dir / "drift_report.json", report)
    plot_drift(report, ctx.run_dir / "drift.png")
    log = ctx.logger("score")
    if report["verdict"] == "block":
        raise DriftError(f"drift guardrail blocked scoring of {ctx.snapshot_date}, nothing was published: "
                         f"{report['summary']}. See drift_report.json; if the change is real (a new market, a "
                         "new product), retrain the model on data that includes it, or set guardrails.drift.action "
                         "to warn for this pipeline")
    if report["verdict"] == "warn":
        log.event("drift_warning", level="WARNING", summary=report["summary"])
    return report


def score(ctx: RunContext) -> dict[str, Any]:
    import pandas as pd

    log = ctx.logger("score")
    fail_once("score", ctx.dag_id, ctx.run_dir)
    registered = resolve_model(ctx)
    model = load_verified_model(ctx.settings, ctx.provider.provider_id, registered)
    check_features_match(model, registered.model_id, registered.features)
    snapshot = ctx.snapshot_date.isoformat()
    with log.timed("score", model_id=registered.model_id) as logged:
        with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
            types = {row[0]: row[1] for row in warehouse.execute("DESCRIBE features").fetchall()}
            missing = [c for c in registered.features if c not in types]
            if missing:
                raise ModelIntegrityError(f"model {registered.model_id} needs features {missing}, which the features "
                                          "table does not have; retrain the model")
            # only the model's columns, numbers as float32 (the model widens each chunk it scores): at 3M
            # customers the float64 frame took the task over 2 GiB
            columns = ", ".join(f"CAST({quote_identifier(name)} AS FLOAT) AS {quote_identifier(name)}"
                                if types[name] in ("DOUBLE", "FLOAT", "INTEGER", "BIGINT", "SMALLINT")
                                else quote_identifier(name) for name in registered.features)
            features_frame = fetch_frame(warehouse.execute(
                f"SELECT customer_id, {columns} FROM features WHERE source_snapshot = CAST($d AS DATE) "
                "AND purpose = 'score' ORDER BY customer_id", {"d": snapshot}),
                categorical=[name for name in registered.features if types[name] == "VARCHAR"])
            expected = warehouse.execute(f"SELECT count(DISTINCT customer_id) FROM customers WHERE {VISIBLE_AT}",
                                         {"snapshot_date": snapshot}).fetchone()[0]
        drift = check_drift(ctx, registered, features_frame)
        logged.update(drift_verdict=drift["verdict"])
        scores = _predict(model, features_frame, registered.features)
        sanity_check(features_frame["customer_id"], scores, expected)
        predictions = pd.DataFrame({"customer_id": features_frame["customer_id"], "score": scores,
                                    "snapshot_date": np.full(len(scores), np.datetime64(snapshot, "s")),
                                    "model_id": registered.model_id})
        # The files are written under a hidden name, read by the warehouse's transaction, and renamed into
        # place only after it commits: a run never shows predictions the warehouse does not have.
        staging = new_staging_dir(ctx.run_dir / "predictions")
        try:
            scratch = scratch_connection(ctx.settings)
            try:
                _write_predictions(scratch, predictions, staging,
                                   lambda: crash_point("score.writing_predictions", ctx.dag_id, ctx.run_dir))
            finally:
                scratch.close()
            with open_warehouse(ctx.settings, ctx.provider.provider_id) as warehouse:
                pause_point("score.before_commit", ctx.dag_id, ctx.run_dir)
                with transaction(warehouse):
                    run_sql_file(warehouse, ctx.settings.sql_dir, "predictions.sql", {
                        "snapshot_date": snapshot, "model_id": registered.model_id, "run_id": ctx.run_id,
                        "predictions_path": str(staging / "predictions.parquet")})
                    stored = warehouse.execute("SELECT count(*) FROM predictions WHERE snapshot_date = "
                                               "CAST($d AS DATE)", {"d": snapshot}).fetchone()[0]
                    if stored != len(predictions):
                        raise SanityCheckError(f"{stored} rows in the predictions table, {len(predictions)} scored")
                crash_point("score.committed", ctx.dag_id, ctx.run_dir)
                publish_dir(staging, ctx.run_dir / "predictions")
                # logged while the lock is held: a rebuild that takes the lock next sees this run
                log.event("predictions_published", snapshot_date=snapshot, rows=len(predictions),
                          model_id=registered.model_id, path=str(ctx.run_dir / "predictions" / "predictions.parquet"))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        plot_score_histogram(scores, ctx.run_dir / "score_histogram.png", title=f"scores {snapshot}")
        stats = {"rows": len(predictions), "model_id": registered.model_id, "mean_score": float(scores.mean()),
                 "min_score": float(scores.min()), "max_score": float(scores.max()),
                 "features": registered.features, "drift": drift["verdict"], "drift_summary": drift["summary"]}
        logged.update(stats)
    return stats
