"""A model users can trust: the out-of-time backtest tells a real signal from none, the lift table adds
up, calibration is measured (and applied when asked), and the drift guardrail stops scoring on data
unlike the model's training data."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from batchops.config import FeatureSet, ModelSettings
from batchops.errors import DriftError
from batchops.modeltrust import drift_report, lift_table, psi, reliability_curve, training_profile
from batchops.stages.features import build_features
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.score import score
from batchops.stages.train import out_of_time_backtest, split_customers, stratified_sample, train
from batchops.stages.validate import validate
from batchops.storage.warehouse import open_warehouse

from conftest import SNAPSHOT, make_drop, run_context

WINDOWS = [date(2025, 11, 3), date(2025, 12, 3), date(2026, 1, 2)]  # 30 days apart, horizon 30


def windows_frame(seed: int, signal: float, customers: int = 1500) -> pd.DataFrame:
    """Three labelled windows of the same customers; the label depends on `spend` with strength `signal`."""
    rng = np.random.default_rng(seed)
    frames = []
    for window in WINDOWS:
        spend = rng.normal(0, 1, customers)
        noise = rng.normal(0, 1, customers)
        chance = 1 / (1 + np.exp(-(signal * spend - 0.5)))
        frames.append(pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(customers)], "snapshot_date": window,
                                    "spend": spend, "noise": noise, "label": (rng.random(customers) < chance).astype(int)}))
    frame = pd.concat(frames, ignore_index=True)
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"])
    return frame


CHOSEN = FeatureSet(numeric=["spend", "noise"], categorical=[], absent={})


def test_the_backtest_finds_a_planted_signal_and_not_a_shuffled_one():
    planted = windows_frame(seed=1, signal=2.5)
    report, window, scores = out_of_time_backtest(planted, CHOSEN, ModelSettings(), horizon_days=30)
    assert report["available"] and report["scored_window"] == "2026-01-02"
    assert report["fitted_on_windows"] == ["2025-11-03", "2025-12-03"]  # never the window it is judged on
    assert report["roc_auc"] > 0.8, report["roc_auc"]
    shuffled = planted.copy()
    shuffled["label"] = np.random.default_rng(7).permutation(shuffled["label"].to_numpy())
    report, _, _ = out_of_time_backtest(shuffled, CHOSEN, ModelSettings(), horizon_days=30)
    assert abs(report["roc_auc"] - 0.5) < 0.05, report["roc_auc"]


def test_the_backtest_says_why_when_there_is_no_earlier_window():
    one = windows_frame(seed=2, signal=2.0)
    one = one[one["snapshot_date"] == one["snapshot_date"].max()]
    report, _, _ = out_of_time_backtest(one, CHOSEN, ModelSettings(), horizon_days=30)
    assert not report["available"] and "training_snapshots >= 2" in report["reason"]
    overlapping = windows_frame(seed=2, signal=2.0)  # windows 30 days apart, labels 45 days long: they overlap
    report, _, _ = out_of_time_backtest(overlapping, CHOSEN, ModelSettings(), horizon_days=45)
    assert report["fitted_on_windows"] == ["2025-11-03"]


def test_the_lift_table_adds_up_to_the_population():
    rng = np.random.default_rng(3)
    labels = (rng.random(1003) < 0.2).astype(int)
    scores = rng.random(1003) * 0.5 + labels * 0.3
    table = lift_table(labels, scores)
    assert len(table) == 10 and sum(row["customers"] for row in table) == 1003
    assert sum(row["positives"] for row in table) == labels.sum()
    assert table[-1]["cumulative_capture"] == 1.0
    assert table[0]["lift"] > 1.5 > table[-1]["lift"]  # the top decile holds more positives than the bottom
    assert [row["min_score"] for row in table] == sorted((row["min_score"] for row in table), reverse=True)


def test_the_reliability_curve_is_on_the_diagonal_for_calibrated_scores():
    rng = np.random.default_rng(4)
    scores = rng.random(20000)
    labels = (rng.random(20000) < scores).astype(int)  # calibrated by construction
    for point in reliability_curve(labels, scores):
        assert abs(point["mean_predicted"] - point["observed_rate"]) < 0.04, point


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_is_applied_when_asked(method):
    frame = windows_frame(seed=5, signal=2.0)
    report, _, _ = out_of_time_backtest(frame, CHOSEN, ModelSettings(calibration=method), horizon_days=30)
    assert report["available"] and report["brier"] < 0.25 and report["roc_auc"] > 0.75


def test_stratified_sample_keeps_each_class_share_without_repeats():
    rng = np.random.default_rng(8)
    labels = (rng.random(100_000) < 0.13).astype(np.int8)
    positions = np.flatnonzero(rng.random(100_000) < 0.7)
    drawn = stratified_sample(positions, labels, 5_000, seed=1)
    assert len(drawn) == 5_000 and len(np.unique(drawn)) == 5_000 and np.isin(drawn, positions).all()
    assert abs(labels[drawn].mean() - labels[positions].mean()) < 0.5 / 5_000 + 1e-9  # the share to one row
    assert np.array_equal(drawn, stratified_sample(positions, labels, 5_000, seed=1))  # reproducible
    assert not np.array_equal(drawn, stratified_sample(positions, labels, 5_000, seed=2))
    assert np.array_equal(stratified_sample(positions, labels, len(positions), seed=1), positions)


def test_customer_split_holds_out_whole_customers_in_the_test_share():
    frame = windows_frame(seed=9, signal=1.0).rename(columns={"customer_id": "customer_key"})
    train_positions, test_positions = split_customers(frame, 0.25, seed=3)
    assert len(train_positions) + len(test_positions) == len(frame)
    keys = frame["customer_key"].to_numpy()
    assert not set(keys[train_positions]) & set(keys[test_positions])
    customers = len(np.unique(keys))
    assert len(np.unique(keys[test_positions])) == int(np.ceil(0.25 * customers))


@pytest.mark.parametrize("solver", ["newton-cholesky", "lbfgs"])
def test_both_solvers_learn_the_same_model(solver):
    frame = windows_frame(seed=10, signal=1.5)
    report, _, _ = out_of_time_backtest(frame, CHOSEN, ModelSettings(solver=solver), horizon_days=30)
    reference, _, _ = out_of_time_backtest(frame, CHOSEN, ModelSettings(solver="lbfgs"), horizon_days=30)
    assert report["available"] and abs(report["roc_auc"] - reference["roc_auc"]) < 1e-3


def test_an_unknown_solver_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="newton-cholesky"):
        ModelSettings(solver="sag")


def test_psi_is_zero_for_the_same_shares_and_large_for_a_shift():
    assert psi([0.1] * 10, [0.1] * 10) == 0
    rng = np.random.default_rng(6)
    training = pd.DataFrame({"amount": rng.lognormal(3, 1, 5000), "region": rng.choice(["n", "s"], 5000)})
    profile = training_profile(training, ["amount"], ["region"])
    same = pd.DataFrame({"amount": rng.lognormal(3, 1, 5000), "region": rng.choice(["n", "s"], 5000)})
    shifted = same.assign(amount=same["amount"] * 5)
    assert drift_report(profile, same, 0.25, 0.1, "block")["verdict"] == "ok"
    report = drift_report(profile, shifted, 0.25, 0.1, "block")
    assert report["verdict"] == "block" and report["features"][0]["feature"] == "amount"
    assert report["features"][0]["psi"] > 1 and "amount (PSI" in report["summary"]
    emptied = same.assign(region=None)
    assert "null share" in drift_report(profile, emptied, 0.25, 0.1, "warn")["summary"]


def test_category_shares_are_the_same_however_the_column_is_typed():
    """Scoring reads categories as pandas categories, a caller may pass text, Arrow strings or numbers: the
    report counts the values as the training profile's text keys in every case (unused categories, nulls and
    values the training never saw included)."""
    profile = training_profile(pd.DataFrame({"region": ["n", "s", "n", None, "7"]}), [], ["region"])
    values = ["n", "n", "s", None, "w", "7", "7"]
    typed = {"object": pd.Series(values, dtype=object),
             "category": pd.Series(pd.Categorical(values, categories=["n", "s", "w", "7", "unused"])),
             "arrow": pd.Series(values, dtype="string[pyarrow]")}
    reports = {kind: drift_report(profile, pd.DataFrame({"region": column}), 0.25, 0.1, "warn")
               for kind, column in typed.items()}
    numbers = drift_report(profile, pd.DataFrame({"region": [7, 7, None, 7.0]}), 0.25, 0.1, "warn")
    assert reports["object"] == reports["category"] == reports["arrow"]
    [feature] = reports["object"]["features"]
    # now: n 2/6, s 1/6, 7 2/6 and 'w' (unknown) 1/6 against training n 2/4, s 1/4, 7 1/4, other 0
    expected = psi([0.5, 0.25, 0.25, 0.0], [2 / 6, 1 / 6, 2 / 6, 1 / 6])
    assert feature["psi"] == pytest.approx(expected, abs=1e-5) and feature["null_share_now"] == round(1 / 7, 6)
    assert numbers["features"][0]["psi"] != feature["psi"]  # 7.0 is the text '7.0', not the category '7'

# ---------------------------------------------------------------- through the stages


def _scoring_run(settings, snapshot: date, run_id: str, amount_factor: float = 1.0, action: str | None = None):
    files = make_drop(settings, "provider_a", snapshot, customers=800)
    if amount_factor != 1.0:
        transactions = pd.read_csv(files["transactions"])
        transactions["amount"] = (transactions["amount"] * amount_factor).round(2)
        transactions.to_csv(files["transactions"], index=False)
    ctx = run_context(settings, "provider_a", "propensity_scoring", snapshot, run_id)
    if action:
        guardrails = ctx.pipeline.guardrails.model_copy(update={"drift": ctx.pipeline.guardrails.drift.model_copy(
            update={"action": action})})
        ctx = type(ctx)(ctx.dag_id, ctx.run_id, ctx.provider, ctx.pipeline.model_copy(update={"guardrails": guardrails}),
                        ctx.snapshot_date, settings)
    ingest(ctx)
    assert validate(ctx)["passed"]
    load(ctx)
    build_features(ctx)
    return ctx


@pytest.fixture
def trained(project):
    make_drop(project, "provider_a", SNAPSHOT, customers=800)
    ctx = run_context(project, "provider_a", "propensity_model", SNAPSHOT, "manual__train")
    ingest(ctx)
    assert validate(ctx)["passed"]
    load(ctx)
    build_features(ctx)
    result = train(ctx)
    assert result["status"] == "approved"
    return project, ctx


def test_training_reports_forward_and_holdout_figures(trained):
    _, ctx = trained
    metrics = json.loads((ctx.run_dir / "metrics.json").read_text())
    forward = metrics["out_of_time"]
    assert forward["available"] and forward["scored_window"] == "2026-01-02"
    assert metrics["promotion"]["window"] == "out_of_time" and metrics["promotion"]["roc_auc"] == forward["roc_auc"]
    assert sum(row["customers"] for row in forward["lift"]) == forward["n"]
    assert (ctx.run_dir / "reliability.png").exists() and metrics["coefficients"]
    assert (ctx.run_dir / "model" / "training_profile.json").exists()


def test_a_champion_that_saw_the_window_is_compared_on_the_holdout(trained):
    """Retraining the same snapshot: the champion's training covered the out-of-time window, so the two
    production models meet on the customer holdout instead (found by the duplicate-execution test). The same data
    gives the same bytes, so the registry keeps the champion in force rather than approving a duplicate."""
    project, ctx = trained
    again = type(ctx)(ctx.dag_id, "manual__again", ctx.provider, ctx.pipeline, ctx.snapshot_date, project)
    assert train(again)["status"] == "identical"
    champion = json.loads((again.run_dir / "metrics.json").read_text())["promotion"]["champion"]
    assert champion["window"] == "holdout" and "has seen its outcomes" in champion["note"]
    assert champion["roc_auc_on_window"] == pytest.approx(champion["challenger_roc_auc"])


def test_a_drifted_scoring_snapshot_is_blocked_and_publishes_nothing(trained, bad_input):
    project, _ = trained
    ctx = _scoring_run(project, SNAPSHOT + timedelta(days=7), "manual__drifted", amount_factor=6.0, action="block")
    with pytest.raises(DriftError, match="amount_sum_") as blocked:
        score(ctx)
    report = json.loads((ctx.run_dir / "drift_report.json").read_text())
    assert report["verdict"] == "block" and (ctx.run_dir / "drift.png").exists()
    assert not (ctx.run_dir / "predictions").exists()
    with open_warehouse(project, "provider_a") as warehouse:
        tables = {row[0] for row in warehouse.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert "predictions" not in tables or warehouse.execute(
            "SELECT count(*) FROM predictions WHERE snapshot_date = ?", [ctx.snapshot_date]).fetchone() == (0,)
    bad_input.record("model", "scoring snapshot whose amounts are 6x the training data's", blocked.value,
                     home=project.home, kept="no predictions published for the snapshot")


def test_a_snapshot_like_the_training_data_passes_and_warn_publishes(trained):
    project, _ = trained
    ctx = _scoring_run(project, SNAPSHOT + timedelta(days=7), "manual__same", action="block")
    assert score(ctx)["drift"] == "ok"
    warned = _scoring_run(project, SNAPSHOT + timedelta(days=14), "manual__warned", amount_factor=6.0)  # default
    result = score(warned)
    assert result["drift"] == "warn" and result["rows"] == 800
    assert (warned.run_dir / "predictions" / "predictions.parquet").exists()
