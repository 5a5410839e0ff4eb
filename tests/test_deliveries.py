"""Daily operation: incremental and full-extract deliveries stored once, read point in time by delivery, and
retention that never removes what a run, a resume or a rebuild needs."""

from __future__ import annotations

import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from batchops.config import load_config_set
from batchops.errors import DataQualityError
from batchops.stages.features import build_features
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.plan import write_plan
from batchops.stages.score import score
from batchops.stages.summarize import summarize
from batchops.stages.train import train
from batchops.stages.validate import chance_of_at_least, dq_verdict, missingness_check, validate
from batchops.storage.backup import read_fingerprints
from batchops.storage.retention import apply_prune, plan_prune
from batchops.storage.warehouse import warehouse_path

import generate_data
from conftest import VISIBLE_ON, run_context

START = date(2026, 2, 1)
INCREMENTAL = "provider_i"
FULL = "provider_f"


def add_provider(settings, provider_id: str, delivery: str, extra: str = "") -> None:
    """provider_a's layout under another id, its transactions delivered `delivery`."""
    text = (settings.config_dir / "provider_a.yaml").read_text().replace("provider_id: provider_a",
                                                                           f"provider_id: {provider_id}")
    text = text.replace("    file: transactions.csv\n", f"    file: transactions.csv\n    delivery: {delivery}\n")
    # a day's few dozen purchases: keep channel's share out of these tests' DQ (a small day's share has its own test)
    text = text.replace("allowed_values: [web, store, app]}", "allowed_values: [web, store, app], max_missing: 0.5}")
    (settings.config_dir / f"{provider_id}.yaml").write_text(text + extra)


def provider(settings, provider_id: str):
    config_set = load_config_set(settings.config_dir, settings.pipelines_dir, settings.sql_dir)
    assert not config_set.issues, config_set.issues
    return config_set.providers[provider_id]


def deliver(settings, provider_id: str, first: date, days: int, delivery: str, customers: int = 400,
            corrections: float = 0.0, series_start: date = START) -> None:
    generate_data.generate_series(provider(settings, provider_id), first, days, customers, 11, settings.data_dir,
                                  delivery, series_start, corrections)
    generate_data.landed_earlier(settings.data_dir.rglob("*.csv"))


def run_day(settings, provider_id: str, day: date, pipeline: str = "propensity_scoring", run_id: str | None = None,
            stages=(ingest, validate, load, build_features)):
    ctx = run_context(settings, provider_id, pipeline, day, run_id or f"scheduled__{day}")
    write_plan(ctx, "conf.snapshot_date", {})
    for stage in stages:
        stage(ctx)
        if stage is validate:
            passed, why = dq_verdict(ctx)
            assert passed, why
    return ctx


def visible(settings, provider_id: str, table: str, day: date) -> pd.DataFrame:
    with duckdb.connect(str(warehouse_path(settings, provider_id)), read_only=True) as con:
        frame = con.execute(f"SELECT * EXCLUDE (valid_from, valid_to, load_id) FROM {table} WHERE {VISIBLE_ON}",
                            [day]).df()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def features_of(settings, provider_id: str, day: date) -> pd.DataFrame:
    with duckdb.connect(str(warehouse_path(settings, provider_id)), read_only=True) as con:
        return con.execute("SELECT * FROM features WHERE source_snapshot = ? AND purpose = 'score' "
                           "ORDER BY customer_id", [day]).df()


@pytest.fixture
def incremental(project):
    add_provider(project, INCREMENTAL, "incremental")
    return project


def test_the_same_purchases_delivered_daily_or_as_one_full_extract_give_the_same_features_and_scores(project):
    add_provider(project, INCREMENTAL, "incremental")
    add_provider(project, FULL, "snapshot")
    last = START + timedelta(days=6)
    deliver(project, INCREMENTAL, START, 7, "incremental")
    history = generate_data.make_history(INCREMENTAL, 400, 11, START, last)  # the same purchases, as a full extract
    generate_data.generate(provider(project, FULL), last, 400, 11, project.data_dir, delivery="snapshot",
                           series_start=START, history=history)
    generate_data.landed_earlier(project.data_dir.rglob("*.csv"))
    run_day(project, INCREMENTAL, START, "propensity_model", stages=(ingest, validate, load, build_features, train))
    for day in (START + timedelta(days=k) for k in range(1, 7)):
        run_day(project, INCREMENTAL, day)
    run_day(project, FULL, last, "propensity_model", stages=(ingest, validate, load, build_features, train))
    for table in ("customers", "transactions"):
        pd.testing.assert_frame_equal(visible(project, INCREMENTAL, table, last), visible(project, FULL, table, last))
    daily, extract = features_of(project, INCREMENTAL, last), features_of(project, FULL, last)
    assert len(daily) == len(visible(project, FULL, "customers", last))
    pd.testing.assert_frame_equal(daily, extract)  # row by row, bit for bit
    # the same model scores both: copy the incremental provider's to the full one
    shutil.rmtree(project.model_store(FULL))
    shutil.copytree(project.model_store(INCREMENTAL), project.model_store(FULL))
    with duckdb.connect(str(warehouse_path(project, FULL))) as con:
        con.execute("DELETE FROM model_registry")
        con.execute(f"ATTACH '{warehouse_path(project, INCREMENTAL)}' AS daily (READ_ONLY)")
        con.execute("INSERT INTO model_registry SELECT * FROM daily.model_registry")
    scored = {}
    for provider_id in (INCREMENTAL, FULL):
        ctx = run_context(project, provider_id, "propensity_scoring", last, f"scheduled__{last}")
        score(ctx)
        scored[provider_id] = pd.read_parquet(ctx.run_dir / "predictions" / "predictions.parquet").drop(
            columns=["model_id"])
    pd.testing.assert_frame_equal(scored[INCREMENTAL], scored[FULL])


def stored_state(settings, provider_id: str) -> dict:
    """Every table's rows and content, without the column that names the run that loaded them."""
    with duckdb.connect(str(warehouse_path(settings, provider_id)), read_only=True) as con:
        state = {}
        for table in ("customers", "transactions", "features"):
            columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] != "load_id"]
            state[table] = con.execute(f"SELECT count(*), sum(hash({', '.join(columns)})) FROM {table}").fetchone()
    return state


def test_loading_a_day_again_changes_nothing(incremental):
    deliver(incremental, INCREMENTAL, START, 3, "incremental")
    for day in (START + timedelta(days=k) for k in range(3)):
        run_day(incremental, INCREMENTAL, day)
    before = stored_state(incremental, INCREMENTAL)
    run_day(incremental, INCREMENTAL, START + timedelta(days=1), run_id="manual__again")  # a rerun of a middle day
    run_day(incremental, INCREMENTAL, START + timedelta(days=2), run_id="manual__again")  # and of the latest
    assert stored_state(incremental, INCREMENTAL) == before


def test_a_correction_wins_from_its_drop_on_and_earlier_drops_keep_what_they_saw(project):
    add_provider(project, INCREMENTAL, "incremental")
    deliver(project, INCREMENTAL, START, 4, "incremental", corrections=0.05)
    for day in (START + timedelta(days=k) for k in range(4)):
        run_day(project, INCREMENTAL, day, stages=(ingest, validate, load))
    history = generate_data.make_history(INCREMENTAL, 400, 11, START, START + timedelta(days=3), corrections=0.05)
    assert len(history.corrections) > 0
    for day in (START + timedelta(days=k) for k in range(4)):
        expected = generate_data.drop_of(history, day, None)["transactions"]
        stored = visible(project, INCREMENTAL, "transactions", day).set_index("transaction_id")["amount"]
        assert len(stored) == len(expected)
        assert (stored.loc[expected["transaction_id"]].to_numpy() == expected["amount"].to_numpy()).all(), day
    corrected = history.corrections.iloc[0]
    day_before = pd.Timestamp(corrected["corrected_on"]).date()
    before = visible(project, INCREMENTAL, "transactions", day_before).set_index("transaction_id")
    after = visible(project, INCREMENTAL, "transactions", day_before + timedelta(days=1)).set_index("transaction_id")
    assert after.loc[corrected["transaction_id"], "amount"] == corrected["amount"]
    assert before.loc[corrected["transaction_id"], "amount"] != corrected["amount"]


def test_a_backfill_of_an_old_date_sees_no_later_drop(incremental):
    deliver(incremental, INCREMENTAL, START, 5, "incremental")
    middle = START + timedelta(days=2)
    for day in (START + timedelta(days=k) for k in range(3)):
        run_day(incremental, INCREMENTAL, day)
    first_time = features_of(incremental, INCREMENTAL, middle)
    for day in (START + timedelta(days=k) for k in range(3, 5)):
        run_day(incremental, INCREMENTAL, day)
    run_day(incremental, INCREMENTAL, middle, run_id="backfill__again", stages=(build_features,))
    pd.testing.assert_frame_equal(features_of(incremental, INCREMENTAL, middle), first_time)


def test_increments_declared_as_full_extracts_are_a_finding_not_a_lost_history(project, bad_input):
    """A provider that sends each day's new rows while its config says delivery: snapshot (the default): stored
    as a full extract, the day's few rows would replace the history the features read, without a word."""
    add_provider(project, FULL, "snapshot")
    deliver(project, FULL, START, 2, "incremental")
    run_day(project, FULL, START, stages=(ingest, validate, load))
    before = stored_state_of_entities(project, FULL)
    ctx = run_context(project, FULL, "propensity_scoring", START + timedelta(days=1), "scheduled__next")
    ingest(ctx)
    validate(ctx)
    passed, why = dq_verdict(ctx)
    assert not passed and "transactions.* full_extract_share" in why and f"the drop of {START} held" in why
    assert "declare delivery: incremental on transactions" in why and "customers.* full_extract_share" not in why
    assert stored_state_of_entities(project, FULL) == before
    bad_input.record("data", "daily increments delivered to a provider whose transactions are declared full "
                     "extracts (delivery: snapshot)", why, kept="the day's run is blocked by DQ; the history is untouched")
    config = project.config_dir / f"{FULL}.yaml"  # declared as what it is, the same drops load and add up
    config.write_text(config.read_text().replace("delivery: snapshot", "delivery: incremental"))
    assert dq_verdict(run_day(project, FULL, START + timedelta(days=1), run_id="manual__declared"))[0]


def stored_state_of_entities(settings, provider_id: str) -> dict:
    with duckdb.connect(str(warehouse_path(settings, provider_id)), read_only=True) as con:
        return {table: con.execute(f"SELECT count(*), sum(hash(t)) FROM {table} t").fetchone()
                for table in ("customers", "transactions")}


def test_a_missing_day_is_a_finding_and_a_late_drop_is_stored_in_its_place(incremental, bad_input):
    deliver(incremental, INCREMENTAL, START, 4, "incremental")
    gap = START + timedelta(days=2)
    for day in (START, START + timedelta(days=1)):
        run_day(incremental, INCREMENTAL, day)
    late = START + timedelta(days=3)
    ctx = run_context(incremental, INCREMENTAL, "propensity_scoring", late, "scheduled__late")
    ingest(ctx)
    validate(ctx)
    passed, why = dq_verdict(ctx)
    assert not passed and "transactions.* delivery_gaps: observed 1" in why and gap.isoformat() in why
    bad_input.record("data", "an incremental provider's drop missing (a day skipped)", why,
                     kept="the day's run is blocked; the history is untouched")
    config = incremental.config_dir / f"{INCREMENTAL}.yaml"
    config.write_text(config.read_text() + "dq: {delivery_gaps: warn}\n")
    ctx = run_context(incremental, INCREMENTAL, "propensity_scoring", late, "scheduled__late")
    report = validate(ctx)
    assert report["passed"] and report["warnings"] == 1
    load(ctx)
    late_drop = run_day(incremental, INCREMENTAL, gap, run_id="manual__gap", stages=(ingest, validate))
    stored = load(late_drop)
    assert stored["later_drops"] == [late.isoformat()]  # the later drop's run did not see these rows: said so
    events = (late_drop.run_dir / "logs.jsonl").read_text()
    assert "drops_after_this_one" in events and "run them again" in events
    history = generate_data.make_history(INCREMENTAL, 400, 11, START, late)
    expected = generate_data.drop_of(history, late, None)["transactions"]  # once the gap is filled, all is there
    assert len(visible(incremental, INCREMENTAL, "transactions", late)) == len(expected)


def test_a_day_without_new_rows_says_how_to_accept_it_and_then_loads_with_no_gap(incremental, bad_input):
    """A quiet day of an incremental feed (header only, BOM and CRLF as a Windows export writes it) is refused by
    min_rows 1 with what to do; accepted with entities.transactions.min_rows: 0, the next day has no gap."""
    deliver(incremental, INCREMENTAL, START, 3, "incremental")
    run_day(incremental, INCREMENTAL, START)
    quiet = START + timedelta(days=1)
    drop = incremental.data_dir / INCREMENTAL / quiet.isoformat() / "transactions.csv"
    header = drop.read_text().splitlines()[0]
    drop.write_bytes(b"\xef\xbb\xbf" + header.encode() + b"\r\n")
    generate_data.landed_earlier([drop])
    ctx = run_context(incremental, INCREMENTAL, "propensity_scoring", quiet, "scheduled__quiet")
    ingest(ctx)
    validate(ctx)
    passed, why = dq_verdict(ctx)
    assert not passed and "transactions.* row_count: observed 0" in why
    assert "set entities.transactions.min_rows: 0" in why and "delivery gap" in why
    bad_input.record("data", "an incremental provider's day without new rows (header only)", why,
                     kept="the day's run is blocked; the history is untouched")
    config = incremental.config_dir / f"{INCREMENTAL}.yaml"
    config.write_text(config.read_text().replace("    delivery: incremental\n",
                                                 "    delivery: incremental\n    min_rows: 0\n"))
    before = len(visible(incremental, INCREMENTAL, "transactions", START))
    run_day(incremental, INCREMENTAL, quiet, run_id="scheduled__quiet")
    assert len(visible(incremental, INCREMENTAL, "transactions", quiet)) == before
    run_day(incremental, INCREMENTAL, START + timedelta(days=2))  # asserts DQ passed: no delivery gap


@pytest.mark.parametrize("missing, rows, share, expected", [
    (2, 35, 0.05, 0.52797354), (7, 35, 0.05, 0.00152157), (8, 35, 0.05, 0.00027214),  # scipy.stats.binom.sf
    (60, 1000, 0.05, 0.08673218), (0, 10, 0.05, 1.0), (1, 10, 0.0, 0.0), (1, 1, 0.05, 0.05),
    (600_000, 10_000_000, 0.05, 0.0),  # far in the tail of a big drop: every term underflows, answered at once
])
def test_the_chance_of_a_missing_share_is_the_binomial_tail(missing, rows, share, expected):
    started = time.perf_counter()
    assert chance_of_at_least(missing, rows, share) == pytest.approx(expected, abs=1e-8)
    assert time.perf_counter() - started < 1.0


def test_a_small_days_missing_share_warns_unless_unlikely_by_chance(project, bad_input):
    """channel at the default 5%: one purchase without a channel in a day of a few dozen is a warning for an
    incremental entity (no blocked day, no delivery gap after it); most of them missing fails; a full extract with
    the same counts fails as before."""
    add_provider(project, INCREMENTAL, "incremental")
    config = project.config_dir / f"{INCREMENTAL}.yaml"
    config.write_text(config.read_text().replace(", max_missing: 0.5}", "}"))
    deliver(project, INCREMENTAL, START, 3, "incremental")
    run_day(project, INCREMENTAL, START)
    day = START + timedelta(days=1)
    drop = project.data_dir / INCREMENTAL / day.isoformat() / "transactions.csv"
    purchases = pd.read_csv(drop, dtype=str)
    assert 20 <= len(purchases) <= 200, len(purchases)  # a small day: one missing value is over 5%

    def blank_channel(rows: int) -> dict:
        purchases.assign(channel=[None] * rows + list(purchases["channel"][rows:])).to_csv(drop, index=False)
        generate_data.landed_earlier([drop])
        ctx = run_context(project, INCREMENTAL, "propensity_scoring", day, f"scheduled__{rows}")
        ingest(ctx)
        report = validate(ctx)
        return report, next(c for c in report["checks"] if c["column"] == "channel" and c["check"] == "missingness")

    report, check = blank_channel(2)
    assert report["passed"] and check["warning"] and check["observed"] > 0.05, check
    assert f"2 of the drop's {len(purchases)} rows" in check["detail"] and "by chance" in check["detail"]
    report, check = blank_channel(len(purchases) // 2)
    assert not report["passed"] and not check["warning"] and "less likely than 0.1%" in check["detail"]
    bad_input.record("data", "half of an incremental day's channel values missing (threshold 5%)",
                     dq_verdict(run_context(project, INCREMENTAL, "propensity_scoring", day,
                                            f"scheduled__{len(purchases) // 2}"))[1],
                     kept="the day's run is blocked; the history is untouched")
    blank_channel(2)
    run_day(project, INCREMENTAL, day, run_id="scheduled__2")
    run_day(project, INCREMENTAL, START + timedelta(days=2))  # asserts DQ passed: the warned day was loaded
    incremental = provider(project, INCREMENTAL)
    snapshot = incremental.model_copy(update={"entities": {**incremental.entities, "transactions": incremental.entities[
        "transactions"].model_copy(update={"delivery": "snapshot"})}})
    assert not missingness_check(snapshot, "transactions", "channel", 2, len(purchases))["passed"]


def test_daily_full_extracts_store_the_history_once(project):
    add_provider(project, FULL, "snapshot")
    days = 30
    deliver(project, FULL, START, days, "snapshot", customers=600)
    for day in (START + timedelta(days=k) for k in range(days)):
        run_day(project, FULL, day, stages=(ingest, validate, load))
    last = START + timedelta(days=days - 1)
    stored = read_fingerprints(warehouse_path(project, FULL))
    delivered = len(visible(project, FULL, "transactions", last))
    assert stored["transactions"]["rows"] <= 1.05 * delivered  # each transaction once, not once a day
    # the file, against one load of the last extract alone
    single = project.home / "single"
    shutil.copytree(project.config_dir.parent, single / "include")
    from batchops.settings import Settings

    alone = Settings.from_env(default_home=single, env={})
    shutil.copytree(project.data_dir / FULL / last.isoformat(), alone.data_dir / FULL / last.isoformat())
    run_day(alone, FULL, last, stages=(ingest, validate, load))
    ratio = warehouse_path(project, FULL).stat().st_size / warehouse_path(alone, FULL).stat().st_size
    print(f"30 daily full extracts: {stored['transactions']['rows']} transaction rows stored for {delivered} in the "
          f"last extract; file {ratio:.2f}x one load of it")
    assert ratio <= 1.5


def test_a_warehouse_of_full_copies_per_snapshot_moves_to_versions(project):
    add_provider(project, FULL, "snapshot")
    deliver(project, FULL, START, 3, "snapshot")
    for day in (START + timedelta(days=k) for k in range(3)):
        run_day(project, FULL, day, stages=(ingest, validate, load))
    expected = {day: visible(project, FULL, "transactions", day) for day in (START + timedelta(days=k) for k in range(3))}
    with duckdb.connect(str(warehouse_path(project, FULL))) as con:  # the layout of warehouses written before
        for table in ("customers", "transactions"):
            columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] not in
                       ("valid_from", "valid_to", "load_id")]
            con.execute(f"CREATE TABLE old_{table} AS SELECT {', '.join(columns)}, l.snapshot_date, 'old' AS load_id "
                        f"FROM {table} t JOIN load_audit l ON l.entity = '{table}' "
                        f"AND l.snapshot_date BETWEEN t.valid_from AND coalesce(t.valid_to - 1, DATE '9999-12-31')")
            con.execute(f"DROP TABLE {table}")
            con.execute(f"ALTER TABLE old_{table} RENAME TO {table}")
    deliver(project, FULL, START + timedelta(days=3), 1, "snapshot")
    run_day(project, FULL, START + timedelta(days=3), stages=(ingest, validate, load))
    for day, frame in expected.items():
        pd.testing.assert_frame_equal(visible(project, FULL, "transactions", day), frame)


# ---------------------------------------------------------------- retention
def run_complete(settings, provider_id: str, day: date, pipeline: str, run_id: str | None = None):
    stages = (ingest, validate, load, build_features) + ((train,) if pipeline == "propensity_model" else ()) + (score,)
    ctx = run_day(settings, provider_id, day, pipeline, run_id, stages=stages)
    summarize(ctx, {t: "success" for t in ctx.pipeline.stages if t != "summarize"})
    return ctx


def model_trained_in(settings, provider_id: str, run_id: str) -> str:
    with duckdb.connect(str(warehouse_path(settings, provider_id)), read_only=True) as con:
        return con.execute("SELECT model_id FROM model_registry WHERE trained_in_run = ?", [run_id]).fetchone()[0]


def test_prune_keeps_the_champion_resumable_runs_and_what_rebuild_needs(incremental, capsys, bad_input):
    config = incremental.config_dir / f"{INCREMENTAL}.yaml"
    config.write_text(config.read_text() + "retention: {run_days: 2, failed_run_days: 4, feature_days: 3, "
                                           "prediction_days: 3, models_kept: 1, champions_kept: 1, "
                                           "airflow_metadata_days: 1, compact_free_share: 0}\n")
    deliver(incremental, INCREMENTAL, START - timedelta(days=1), 10, "incremental",
            series_start=START - timedelta(days=1))
    # a champion, then not (trained a day earlier: a retrain of the same data would be its identical twin)
    run_complete(incremental, INCREMENTAL, START - timedelta(days=1), "propensity_model", "manual__early")
    run_complete(incremental, INCREMENTAL, START, "propensity_model")  # the current champion
    for day in (START + timedelta(days=k) for k in range(1, 8)):
        run_complete(incremental, INCREMENTAL, day, "propensity_scoring")
    failed = run_day(incremental, INCREMENTAL, START + timedelta(days=8), run_id="scheduled__failed",
                     stages=(ingest, validate))  # died before summarize: resumable
    run_day(incremental, INCREMENTAL, START + timedelta(days=2), "propensity_model", "manual__retrain",
            stages=(build_features, train))
    with duckdb.connect(str(warehouse_path(incremental, INCREMENTAL))) as con:  # a worse retrain, not approved
        con.execute("UPDATE model_registry SET status = 'rejected' WHERE trained_in_run = 'manual__retrain'")
    champion = model_trained_in(incremental, INCREMENTAL, f"scheduled__{START}")
    early = model_trained_in(incremental, INCREMENTAL, "manual__early")
    newest = model_trained_in(incremental, INCREMENTAL, "manual__retrain")
    today = START + timedelta(days=8)
    plan = plan_prune(incremental, load_config_set(incremental.config_dir, incremental.pipelines_dir,
                                                   incremental.sql_dir), INCREMENTAL, today)
    lines = [r.line() for r in plan.removals]
    champion_run = f"{INCREMENTAL}__propensity_model/scheduled__{START}"
    assert any(line.startswith(f"keep   run folder: {champion_run}") and "current champion" in line for line in lines)
    assert any(line.startswith(f"keep   model: {champion}: the current champion") for line in lines)
    removed = {r.target for r in plan.removals if not r.kept and r.kind == "run folder"}
    assert removed == {f"{INCREMENTAL}__propensity_scoring/scheduled__{START + timedelta(days=k)}" for k in (1, 2, 3, 4)} \
        | {f"{INCREMENTAL}__propensity_model/manual__early", f"{INCREMENTAL}__propensity_model/manual__retrain"}
    assert not any("scheduled__failed" in line for line in lines)  # young and unfinished: may be resumed
    done = apply_prune(incremental, plan, airflow_records=False)
    assert done["compacted"]["compacted"]  # compact_free_share 0: the file is rewritten at every prune
    assert (run_context(incremental, INCREMENTAL, "propensity_model", START, f"scheduled__{START}").run_dir /
            "metrics.json").exists()
    assert failed.run_dir.exists() and (failed.run_dir / "staging").exists()  # what clearing its tasks needs
    assert sorted(p.name for p in incremental.model_store(INCREMENTAL).iterdir()) == sorted([champion, newest])
    with duckdb.connect(str(warehouse_path(incremental, INCREMENTAL)), read_only=True) as con:
        kept = [r[0] for r in con.execute("SELECT DISTINCT snapshot_date FROM predictions ORDER BY 1").fetchall()]
        feature_days = {r[0] for r in con.execute("SELECT DISTINCT source_snapshot FROM features").fetchall()}
        pruned = con.execute("SELECT model_id FROM model_registry WHERE pruned_at IS NOT NULL").fetchall()
    assert kept == [START + timedelta(days=k) for k in (5, 6, 7)] and pruned == [(early,)]
    assert min(feature_days) >= today - timedelta(days=3)
    # a rebuild finds what it needs for the rows kept
    from batchops.cli import main

    assert main(["--home", str(incremental.home), "rebuild", "--provider", INCREMENTAL]) == 0
    with duckdb.connect(str(warehouse_path(incremental, INCREMENTAL)), read_only=True) as con:
        assert [r[0] for r in con.execute("SELECT DISTINCT snapshot_date FROM predictions ORDER BY 1").fetchall()] == kept
    assert "2 model(s) re-registered" in capsys.readouterr().out
    bad_input.record("faults", "prune with windows of days (run_days 2, prediction_days 3, models_kept 1, "
                     "champions_kept 1)", "; ".join(line for line in lines if line.startswith("keep")),
                     kept="the champion and its run, a run that may be resumed, and the run folders a rebuild "
                          "needs for the rows kept; rebuild afterwards gives back the kept predictions")


def training_rows(settings, provider_id: str, day: date) -> tuple[int, int]:
    with duckdb.connect(str(warehouse_path(settings, provider_id)), read_only=True) as con:
        features = con.execute("SELECT count(*) FROM features WHERE purpose = 'train' AND source_snapshot = ?",
                               [day]).fetchone()[0]
        labels = con.execute("SELECT count(*) FROM labels WHERE source_snapshot = ?", [day]).fetchone()[0]
    return features, labels


def test_prune_removes_training_rows_once_their_model_is_registered_and_train_says_how_to_rebuild(incremental):
    deliver(incremental, INCREMENTAL, START, 2, "incremental")
    def configs():
        return load_config_set(incremental.config_dir, incremental.pipelines_dir, incremental.sql_dir)

    # built but not yet trained on: kept, whatever the day
    ctx = run_day(incremental, INCREMENTAL, START, "propensity_model")
    built = training_rows(incremental, INCREMENTAL, START)
    assert built[0] > 0 and built[1] == built[0]
    apply_prune(incremental, plan_prune(incremental, configs(), INCREMENTAL, START), airflow_records=False)
    assert training_rows(incremental, INCREMENTAL, START) == built
    train(ctx)
    score(ctx)
    plan = plan_prune(incremental, configs(), INCREMENTAL, START)
    assert any(r.line().startswith(f"remove rows: {built[0]:,} training rows of features: a model of every training "
                                   f"pipeline was registered from their drop ({START}") for r in plan.removals)
    apply_prune(incremental, plan, airflow_records=False)
    assert training_rows(incremental, INCREMENTAL, START) == (0, 0)
    with duckdb.connect(str(warehouse_path(incremental, INCREMENTAL)), read_only=True) as con:  # scoring rows stay
        assert con.execute("SELECT count(*) FROM features WHERE purpose = 'score'").fetchone()[0] > 0
    with pytest.raises(DataQualityError, match="prune removed them after .* Clear build_features and train"):
        train(ctx)  # cleared alone
    build_features(ctx)  # cleared together: the same rows again
    assert training_rows(incremental, INCREMENTAL, START) == built
    train(ctx)
    # keep_training_rows: true keeps them for feature_days
    config = incremental.config_dir / f"{INCREMENTAL}.yaml"
    config.write_text(config.read_text() + "retention: {keep_training_rows: true}\n")
    apply_prune(incremental, plan_prune(incremental, configs(), INCREMENTAL, START), airflow_records=False)
    assert training_rows(incremental, INCREMENTAL, START) == built


def four_loaded_days(settings, retention: str) -> tuple[list[date], Path]:
    """Four daily drops of the incremental provider, loaded, and its retention set to `retention` (YAML flow)."""
    deliver(settings, INCREMENTAL, START, 4, "incremental")
    days = [START + timedelta(days=k) for k in range(4)]
    for day in days:
        run_day(settings, INCREMENTAL, day, stages=(ingest, validate, load))
    config = settings.config_dir / f"{INCREMENTAL}.yaml"
    config.write_text(config.read_text() + f"retention: {retention}\n")
    return days, config


def test_landing_drops_go_only_once_the_newest_verified_backup_holds_their_load(incremental, capsys):
    import subprocess

    from batchops.cli import main
    from batchops.owner import HOST
    from batchops.storage import backup as backups
    from batchops.storage.rebuild import landing_snapshots

    days, config = four_loaded_days(incremental, "{landing_days: 1}")

    def prune_landing() -> list[str]:
        configs = load_config_set(incremental.config_dir, incremental.pipelines_dir, incremental.sql_dir)
        plan = plan_prune(incremental, configs, INCREMENTAL, days[-1])
        apply_prune(incremental, plan, airflow_records=False)
        return [r.line() for r in plan.removals if r.kind == "landing drop"]

    def landed() -> list[date]:
        configs = load_config_set(incremental.config_dir, incremental.pipelines_dir, incremental.sql_dir)
        return landing_snapshots(configs.providers[INCREMENTAL], incremental.data_dir)

    # days 1 and 2 are older than landing_days, but no backup holds them yet
    lines = prune_landing()
    assert landed() == days and len(lines) == 1, lines
    assert lines[0].startswith(f"keep   landing drop: 2 drop(s) older than landing_days 1 ({days[0]}, {days[1]})")
    assert f"no verified backup of the warehouse: python -m batchops backup --provider {INCREMENTAL}" in lines[0]
    good = Path(backups.backup(incremental, INCREMENTAL)["backup"])
    run_day(incremental, INCREMENTAL, days[1], run_id="manual__again", stages=(ingest, validate, load))  # reloaded
    # what a prune killed between renaming a drop away and deleting it leaves: the next removal there cleans it
    ended = subprocess.Popen(["true"])
    ended.wait()
    leftover = incremental.data_dir / INCREMENTAL / f".2026-01-01.{HOST}-{ended.pid}.deadbeef"
    leftover.mkdir()
    (leftover / "transactions.csv").write_text("id\n1\n")
    lines = prune_landing()
    assert landed() == days[1:] and not leftover.exists()
    assert any(line.startswith(f"remove landing drop: {INCREMENTAL}/{days[0]}") and good.name in line for line in lines)
    assert any(f"({days[1]})" in line and "loaded again after the newest verified backup" in line for line in lines)
    # a newer backup that no longer matches its manifest is not trusted: the older verified one still decides
    damaged = Path(backups.backup(incremental, INCREMENTAL)["backup"])
    with damaged.open("ab") as handle:
        handle.write(b"\0")
    lines = prune_landing()
    assert landed() == days[1:] and any(good.name in line for line in lines), lines
    # a provider whose landing_path reaches the same folders: none of them is removed
    twin = incremental.config_dir / "provider_t.yaml"
    twin.write_text(config.read_text().replace(f"provider_id: {INCREMENTAL}", "provider_id: provider_t") +
                    f"landing_path: \"{INCREMENTAL}/{{snapshot_date}}\"\n")
    backups.backup(incremental, INCREMENTAL)  # holds the reload of day 2: only the shared folder keeps it
    lines = prune_landing()
    assert landed() == days[1:] and any("also provider_t's landing folder" in line for line in lines), lines
    twin.unlink()
    # without the drop, rebuild refuses (restore brings its rows back), nothing is lost silently
    assert main(["--home", str(incremental.home), "rebuild", "--provider", INCREMENTAL]) == 1
    assert f"no longer under {incremental.data_dir}" in capsys.readouterr().err


def test_backup_before_prune_lets_old_landing_drops_go_the_same_day_and_a_dry_run_takes_none(incremental, capsys):
    from batchops.cli import main
    from batchops.storage import backup as backups
    from batchops.storage.rebuild import landing_snapshots

    days, _ = four_loaded_days(incremental, "{landing_days: 1, backup_before_prune: true}")
    prune = ["--home", str(incremental.home), "prune", "--provider", INCREMENTAL, "--today", days[-1].isoformat(),
             "--keep-airflow-records"]
    assert main([*prune, "--dry-run"]) == 0
    assert backups.list_backups(incremental, INCREMENTAL) == [] and "backed up" not in capsys.readouterr().out
    assert main(prune) == 0
    out = capsys.readouterr().out
    made = backups.list_backups(incremental, INCREMENTAL)
    assert len(made) == 1 and f"backed up to {made[0].name}" in out
    configs = load_config_set(incremental.config_dir, incremental.pipelines_dir, incremental.sql_dir)
    assert landing_snapshots(configs.providers[INCREMENTAL], incremental.data_dir) == days[2:]


def test_predictions_of_every_kept_run_come_back_in_one_file_after_the_warehouse_pruned_them(incremental, capsys,
                                                                                              tmp_path):
    from batchops.cli import main

    deliver(incremental, INCREMENTAL, START, 4, "incremental")
    run_complete(incremental, INCREMENTAL, START, "propensity_model")
    days = [START + timedelta(days=k) for k in (1, 2, 3)]
    for day in days:
        run_complete(incremental, INCREMENTAL, day, "propensity_scoring")
    rerun = run_complete(incremental, INCREMENTAL, days[0], "propensity_scoring", "manual__rescore")
    home = ["--home", str(incremental.home)]
    assert main([*home, "prune", "--provider", INCREMENTAL, "--today", days[-1].isoformat(),
                 "--keep-airflow-records"]) == 0  # prediction_days 1: the warehouse keeps the last two dates
    with duckdb.connect(str(warehouse_path(incremental, INCREMENTAL)), read_only=True) as con:
        assert [r[0] for r in con.execute("SELECT DISTINCT snapshot_date FROM predictions ORDER BY 1").fetchall()] \
            == days[1:]
    out = tmp_path / "history.parquet"
    assert main([*home, "predictions", "--provider", INCREMENTAL, "--from", days[0].isoformat(), "--out", str(out)]) == 0
    assert "of 3 snapshot(s)" in capsys.readouterr().out
    written = pd.read_parquet(out)
    assert sorted(set(pd.to_datetime(written["snapshot_date"]).dt.date)) == days
    expected = pd.concat([pd.read_parquet(run_context(incremental, INCREMENTAL, "propensity_scoring", day,
                                                      "manual__rescore" if day == days[0] else f"scheduled__{day}")
                                          .run_dir / "predictions" / "predictions.parquet") for day in days])
    assert rerun.run_dir.name == "manual__rescore" and len(written) == len(expected)  # the re-run, not both
    assert written["score"].sum() == pytest.approx(expected["score"].sum())
    csv = tmp_path / "history.csv"
    assert main([*home, "predictions", "--provider", INCREMENTAL, "--to", days[0].isoformat(), "--out", str(csv)]) == 0
    first_two = [run_context(incremental, INCREMENTAL, "propensity_model", START, f"scheduled__{START}"), rerun]
    assert len(pd.read_csv(csv, dtype={"customer_id": str})) == sum(  # the model's run scores its date too
        len(pd.read_parquet(ctx.run_dir / "predictions" / "predictions.parquet")) for ctx in first_two)
    run_file = (rerun.run_dir / "predictions" / "predictions.parquet").read_bytes()
    folder = tmp_path / "named.parquet"
    folder.mkdir()
    for bad, said in ((["--out", str(tmp_path / "history.xlsx")], "name a .parquet or .csv file"),
                      (["--out", str(tmp_path / "no" / "h.csv")], "does not exist"),
                      (["--from", "2030-01-01", "--out", str(csv)], "no predictions of provider_i between 2030-01-01"),
                      (["--from", "2030-01-02", "--to", "2030-01-01", "--out", str(csv)], "is after --to 2030-01-01"),
                      (["--out", str(tmp_path)], "name a .parquet or .csv file"),
                      (["--out", str(rerun.run_dir / "predictions")], "name a .parquet or .csv file"),
                      (["--out", str(rerun.run_dir.parent)], "name a .parquet or .csv file"),
                      (["--out", str(folder)], "is a folder"),
                      (["--out", str(rerun.run_dir / "predictions" / "predictions.parquet")], "which BatchOps writes")):
        assert main([*home, "predictions", "--provider", INCREMENTAL, *bad]) == 1
        assert said in capsys.readouterr().err
    assert (rerun.run_dir / "predictions" / "predictions.parquet").read_bytes() == run_file


def test_prune_dry_run_says_what_and_why_and_removes_nothing(incremental, capsys):
    from batchops.cli import main

    deliver(incremental, INCREMENTAL, START, 2, "incremental")
    run_complete(incremental, INCREMENTAL, START, "propensity_model")
    run_complete(incremental, INCREMENTAL, START + timedelta(days=1), "propensity_scoring")
    before = sorted(p for p in incremental.home.rglob("*") if "airflow" not in str(p))
    code = main(["--home", str(incremental.home), "prune", "--provider", INCREMENTAL, "--dry-run", "--today",
                 (START + timedelta(days=200)).isoformat(), "--keep-airflow-records"])
    out = capsys.readouterr().out
    assert code == 0 and "dry run, nothing removed" in out
    assert "remove run folder: provider_i__propensity_scoring/scheduled__2026-02-02" in out
    assert "keep   run folder: provider_i__propensity_model/scheduled__2026-02-01" in out and "current champion" in out
    assert "remove rows:" in out and "prediction_days 1" in out
    assert "remove free space: warehouse file provider_i.duckdb: rewritten" in out and "at least 20%" in out
    assert sorted(p for p in incremental.home.rglob("*") if "airflow" not in str(p)) == before
