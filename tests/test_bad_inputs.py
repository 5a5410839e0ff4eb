"""Bad input, case by case: each gets a clear answer naming the file, field or value and what to do;
nothing stored earlier changes; the other providers are untouched. Every test records its case for
docs/bad_inputs.md (config-file cases live in test_config.py, OCR ones in test_ocr.py; they record too).

The data cases start from one baseline: provider_a's drop of 2026-02-01 loaded, featured and trained,
and provider_b's drop loaded. Each case copies that home, delivers a bad drop for 2026-02-02 and runs
ingest -> validate -> DQ gate -> load as the DAG would.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from batchops.artifacts import run_dir_for
from batchops.cli import main as cli_main
from batchops.errors import InputDataError, ModelIntegrityError, RunParameterError
from batchops.faults import pause_marker
from batchops.models import find_approved_model, load_verified_model
from batchops.runcontext import check_run_conf, parse_snapshot_date, resolve_snapshot_date
from batchops.runlog import read_events
from batchops.settings import Settings
from batchops.stages.features import build_features
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.plan import write_plan
from batchops.stages.score import score
from batchops.stages.train import train
from batchops.stages.validate import dq_verdict, validate
from batchops.storage.backup import (
    MaintenanceError,
    backup,
    list_backups,
    manifest_path,
    read_fingerprints,
)
from batchops.storage.warehouse import open_warehouse, wal_path, warehouse_path

from conftest import REPO, SNAPSHOT, VISIBLE_ON, delivered_earlier, make_drop, run_context

BAD_SNAPSHOT = date(2026, 2, 2)


# ---------------------------------------------------------------- baseline and helpers
@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("baseline")
    for folder in ("configs", "pipelines", "sql"):
        shutil.copytree(REPO / "include" / folder, home / "include" / folder)
    settings = Settings.from_env(default_home=home, env={})
    make_drop(settings, "provider_a")
    ctx = run_context(settings, "provider_a", run_id="manual__baseline")
    ingest(ctx)
    assert validate(ctx)["passed"]
    load(ctx)
    build_features(ctx)
    train(ctx)
    make_drop(settings, "provider_b")
    ctx_b = run_context(settings, "provider_b", run_id="manual__baseline")
    ingest(ctx_b)
    assert validate(ctx_b)["passed"]
    load(ctx_b)
    return home


@pytest.fixture
def home(baseline, tmp_path) -> Settings:
    """A private copy of the baseline (absolute paths inside it are only the model registry's)."""
    copy = tmp_path / "home"
    shutil.copytree(baseline, copy, symlinks=True)
    return Settings.from_env(default_home=copy, env={})


def fingerprint(settings: Settings) -> dict:
    """Every warehouse table (row count + content hash) and every earlier run artifact (sha256)."""
    state: dict = {}
    for provider in ("provider_a", "provider_b"):
        with duckdb.connect(str(warehouse_path(settings, provider)), read_only=True) as con:
            for (table,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
                state[(provider, table)] = con.execute(f'SELECT count(*), sum(hash(t)) FROM "{table}" t').fetchone()
    for path in sorted(settings.runs_dir.rglob("*")):
        if path.is_file() and "manual__bad" not in path.parts and ".calendar" not in path.parts:  # the index shows
            # the latest run of each date: a bad run is the latest of its date
            state[str(path.relative_to(settings.runs_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def landing(settings: Settings, entity: str, provider: str = "provider_a") -> Path:
    """The bad drop's file for entity, started as a copy of the baseline's good one."""
    good = settings.data_dir / provider / SNAPSHOT.isoformat()
    bad = settings.data_dir / provider / BAD_SNAPSHOT.isoformat()
    if not bad.exists():
        shutil.copytree(good, bad)
    return bad / ("customers.csv" if entity == "customers" else "transactions.csv")


def deliver(path: Path, payload: str | bytes) -> Path:
    path.write_bytes(payload.encode() if isinstance(payload, str) else payload)
    return delivered_earlier(path)


def rewrite_lines(path: Path, edit) -> None:
    """Deliver the file again with edit(lines) as its lines (line 0 is the header)."""
    deliver(path, "\n".join(edit(path.read_text().splitlines())) + "\n")


def set_field(path: Path, line_numbers: list[int], column: str, values: list[str]) -> None:
    """Replace one column's value on the given 0-based lines (0 is the header) of a comma file."""
    def edit(lines: list[str]) -> list[str]:
        index = lines[0].split(",").index(column)
        for number, value in zip(line_numbers, values, strict=True):
            fields = lines[number].split(",")
            fields[index] = value
            lines[number] = ",".join(fields)
        return lines

    rewrite_lines(path, edit)


def attempt(settings: Settings, provider: str = "provider_a") -> str:
    """Run the bad drop through ingest, validate, the DQ gate and load; say where it stopped and why."""
    ctx = run_context(settings, provider, snapshot=BAD_SNAPSHOT, run_id="manual__bad")
    try:
        ingest(ctx)
    except InputDataError as exc:
        return f"ingest fails: {exc}"
    validate(ctx)
    passed, reason = dq_verdict(ctx)
    if not passed:
        return f"DQ gate blocks training and load: {reason}"
    rows = load(ctx)["rows"]
    return f"accepted and loaded ({rows})"


def bad_drop_outcome(settings: Settings, provider: str = "provider_a") -> str:
    """attempt(), and assert that nothing stored before changed."""
    before = fingerprint(settings)
    outcome = attempt(settings, provider)
    if not outcome.startswith("accepted"):
        assert fingerprint(settings) == before, "a refused drop changed stored data"
    else:
        after = fingerprint(settings)
        changed = {key for key in before if before[key] != after.get(key)}
        # an accepted drop adds its own snapshot's rows; earlier artifacts stay byte-identical
        assert changed <= {("provider_a", "customers"), ("provider_a", "transactions"), ("provider_a", "load_audit")}
        with duckdb.connect(str(warehouse_path(settings, "provider_a")), read_only=True) as con:
            assert con.execute(f"SELECT count(*) FROM customers WHERE {VISIBLE_ON}", [SNAPSHOT]).fetchone()[0] == 600
    return outcome


# ---------------------------------------------------------------- data
def test_missing_file(home, bad_input):
    landing(home, "transactions").unlink()
    outcome = bad_drop_outcome(home)
    assert "transactions.csv does not exist" in outcome and "deliver it" in outcome
    bad_input.record("data", "missing file", outcome, home=home.home)


def test_empty_file(home, bad_input):
    deliver(landing(home, "transactions"), "")
    outcome = bad_drop_outcome(home)
    assert "transactions.csv: the file is empty; expected a header line" in outcome
    bad_input.record("data", "empty file", outcome, home=home.home)


def test_header_only(home, bad_input):
    path = landing(home, "transactions")
    deliver(path, path.read_text().splitlines()[0] + "\n")
    outcome = bad_drop_outcome(home)
    assert "transactions.* row_count: observed 0" in outcome
    bad_input.record("data", "header only (no rows)", outcome, home=home.home)


def test_wrong_delimiter(home, bad_input):
    path = landing(home, "customers")
    deliver(path, path.read_text().replace(",", ";"))
    outcome = bad_drop_outcome(home)
    assert "header has one column but contains ';'" in outcome and "Fix csv.delimiter" in outcome
    bad_input.record("data", "wrong delimiter", outcome, home=home.home)


def test_missing_required_column(home, bad_input):
    path = landing(home, "transactions")
    amount = path.read_text().splitlines()[0].split(",").index("amount")
    rewrite_lines(path, lambda lines: [",".join(f for i, f in enumerate(line.split(",")) if i != amount)
                                       for line in lines])
    outcome = bad_drop_outcome(home)
    assert "transactions.amount required_column" in outcome and "'amount' is not in the file" in outcome
    bad_input.record("data", "missing required column", outcome, home=home.home)


def test_extra_columns_are_reported_and_ignored(home, bad_input):
    path = landing(home, "customers")
    rewrite_lines(path, lambda lines: [lines[0] + ",loyalty_tier"] + [line + ",gold" for line in lines[1:]])
    outcome = bad_drop_outcome(home)
    assert outcome.startswith("accepted") and "'customers': 600" in outcome
    report = json.loads((run_dir_for(home.runs_dir, "provider_a__propensity_model", "manual__bad")
                         / "ingest_report.json").read_text())
    assert report["entities"]["customers"]["unmapped_source_columns"] == ["loyalty_tier"]
    bad_input.record("data", "extra columns", f"{outcome}; ingest_report.json lists unmapped column "
                     "'loyalty_tier'", kept="earlier snapshot unchanged; the new one loaded")


def test_duplicate_primary_keys(home, bad_input):
    path = landing(home, "customers")
    rewrite_lines(path, lambda lines: lines + lines[1:4])
    outcome = bad_drop_outcome(home)
    assert "customers.customer_id unique_key: observed 3" in outcome and "examples" in outcome
    bad_input.record("data", "duplicate primary keys", outcome, home=home.home)


def test_non_utf8_bytes(home, bad_input):
    path = landing(home, "customers")
    lines = path.read_bytes().split(b"\n")
    lines[7] = lines[7].replace(b"north", b"n\xf6rth").replace(b"south", b"s\xf6uth").replace(
        b"east", b"\xe9ast").replace(b"west", b"w\xe9st")
    deliver(path, b"\n".join(lines))
    outcome = bad_drop_outcome(home)
    assert "customers.* parse_errors" in outcome and "INVALID ENCODING" in outcome and "line 8" in outcome
    bad_input.record("data", "non-UTF-8 bytes", outcome, home=home.home)


def test_broken_quoting(home, bad_input):
    path = landing(home, "customers")
    # an opening quote that never closes
    rewrite_lines(path, lambda lines: lines[:10] + [lines[10].replace(",", ',"', 1)] + lines[11:])
    outcome = bad_drop_outcome(home)
    assert "customers.* parse_errors" in outcome and "line 11" in outcome
    bad_input.record("data", "broken quoting (unclosed quote)", outcome, home=home.home)


def test_mixed_crlf_and_lf_line_endings_load_exactly(home, bad_input):
    path = landing(home, "transactions")
    lines = path.read_text().splitlines()
    deliver(path, "".join(line + ("\r\n" if number % 3 == 0 else "\n") for number, line in enumerate(lines)))
    outcome = bad_drop_outcome(home)
    assert outcome.startswith("accepted") and f"'transactions': {len(lines) - 1}" in outcome
    with duckdb.connect(str(warehouse_path(home, "provider_a")), read_only=True) as con:
        carriage_returns = con.execute("SELECT count(*) FROM transactions WHERE channel LIKE '%' || chr(13) || '%' "
                                       "OR transaction_id LIKE '%' || chr(13) || '%'").fetchone()[0]
    assert carriage_returns == 0
    events = (run_dir_for(home.runs_dir, "provider_a__propensity_model", "manual__bad") / "logs.jsonl").read_text()
    assert "mixed_line_endings" in events
    bad_input.record("data", "mixed CRLF/LF line endings", f"{outcome}; logs.jsonl warns mixed_line_endings, "
                     "no stray carriage returns in values", kept="earlier snapshot unchanged; the new one loaded")


def test_type_change_after_the_first_20480_rows(home, bad_input):
    make_drop(home, "provider_a", BAD_SNAPSHOT, customers=1300, seed=9)  # > 20,480 transaction rows
    path = landing(home, "transactions")
    assert sum(1 for _ in path.open()) > 25_000
    set_field(path, [22_000, 24_000], "amount", ["twelve", "n/a"])
    outcome = bad_drop_outcome(home)
    assert "transactions.* parse_errors" in outcome and "line 22001, column amount" in outcome
    bad_input.record("data", "type change after row 20,480 (explicit types, no sniffing)", outcome, home=home.home)


def test_nan_and_infinite_amounts(home, bad_input):
    set_field(landing(home, "transactions"), [3, 4, 5], "amount", ["NaN", "inf", "-Infinity"])
    outcome = bad_drop_outcome(home)
    assert "transactions.amount valid_values: observed" in outcome and "finite" in outcome
    bad_input.record("data", "NaN / Inf amounts", outcome, home=home.home)


def test_numeric_overflow(home, bad_input):
    set_field(landing(home, "customers"), [3], "age", ["99999999999999999999999"])
    set_field(landing(home, "transactions"), [3], "amount", ["1e400"])
    outcome = bad_drop_outcome(home)
    assert "customers.* parse_errors" in outcome and "column age" in outcome
    assert "transactions.amount valid_values" in outcome  # 1e400 overflows a double to inf: not finite
    bad_input.record("data", "integer overflow (age) and float overflow (amount)", outcome, home=home.home)


def test_unparsable_dates(home, bad_input):
    set_field(landing(home, "transactions"), [4], "txn_date", ["31/31/2025"])
    outcome = bad_drop_outcome(home)
    assert "transactions.* parse_errors" in outcome and "column txn_date" in outcome and "31/31/2025" in outcome
    bad_input.record("data", "unparsable dates", outcome, home=home.home)


def test_values_outside_configured_ranges(home, bad_input):
    set_field(landing(home, "customers"), [3, 4], "age", ["300", "-4"])
    set_field(landing(home, "customers"), [5], "region", ["mars"])
    outcome = bad_drop_outcome(home)
    assert "customers.age valid_values" in outcome and "min 18" in outcome and "customers.region valid_values" in outcome
    bad_input.record("data", "values outside configured ranges / allowed values", outcome, home=home.home)


def test_ten_megabyte_single_line(home, bad_input):
    set_field(landing(home, "customers"), [3], "region", ["x" * (10 << 20)])
    outcome = bad_drop_outcome(home)
    assert "customers.* parse_errors" in outcome and "line 4" in outcome
    bad_input.record("data", "a 10 MB single line", outcome, home=home.home)


def test_file_still_being_written(home, bad_input):
    path = landing(home, "transactions")
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 3])  # the upload has started...
    stop = threading.Event()

    def keep_uploading():
        written = len(full) // 3
        while not stop.is_set() and written < len(full):
            with path.open("ab") as handle:
                handle.write(full[written:written + 4096])
            written += 4096
            time.sleep(0.05)

    uploader = threading.Thread(target=keep_uploading)
    uploader.start()
    try:
        outcome = bad_drop_outcome(home)
    finally:
        stop.set()
        uploader.join()
    assert "is still being written" in outcome and "retries later" in outcome
    bad_input.record("data", "file still being written (partial upload)", outcome, home=home.home)


def test_ready_marker_missing(home, bad_input):
    config = home.config_dir / "provider_a.yaml"
    config.write_text(config.read_text() + "ready_marker: _SUCCESS\n")
    landing(home, "customers")
    outcome = bad_drop_outcome(home)
    assert "_SUCCESS is not there yet" in outcome and "retries later" in outcome
    (landing(home, "customers").parent / "_SUCCESS").touch()
    assert bad_drop_outcome(home).startswith("accepted")
    bad_input.record("data", "upload marker (ready_marker) not written yet", outcome, home=home.home)


def test_symlink_pointing_outside_the_data_folder(home, bad_input, tmp_path):
    secret = tmp_path / "outside.csv"
    secret.write_text(landing(home, "customers").read_text())
    path = landing(home, "customers")
    path.unlink()
    path.symlink_to(secret)
    outcome = bad_drop_outcome(home)
    assert "outside BATCHOPS_DATA_DIR; refusing it" in outcome
    bad_input.record("data", "symlink pointing outside the data folder", outcome, home=home.home)


def test_bad_drop_of_one_provider_leaves_the_other_running(home, bad_input):
    deliver(landing(home, "transactions"), "")
    first = bad_drop_outcome(home)
    make_drop(home, "provider_b", BAD_SNAPSHOT)
    other = attempt(home, "provider_b")
    assert first.startswith("ingest fails") and other.startswith("accepted")
    bad_input.record("data", "provider_a's drop is bad while provider_b's is good", f"provider_a: {first} -- "
                     f"provider_b: {other}", kept="provider_a unchanged; provider_b loaded its snapshot")


# ---------------------------------------------------------------- run conf
@pytest.mark.parametrize(("case", "conf", "message"), [
    ("invalid calendar date", {"snapshot_date": "2026-02-30"}, "is not a calendar date"),
    ("path traversal in snapshot_date", {"snapshot_date": "../../etc/passwd"}, "must be a date written YYYY-MM-DD"),
    ("SQL injection in snapshot_date", {"snapshot_date": "2026-02-01'; DROP TABLE customers; --"},
     "must be a date written YYYY-MM-DD"),
    ("wrong type (number)", {"snapshot_date": 20260201}, "must be a date written YYYY-MM-DD, got 20260201"),
    ("wrong type (list)", {"snapshot_date": ["2026-02-01"]}, "must be a date written YYYY-MM-DD"),
    ("unknown conf key (typo)", {"snapshot_data": "2026-02-01"}, "'snapshot_data' (did you mean 'snapshot_date'?)"),
    ("conf that is not an object", ["2026-02-01"], "must be a JSON object"),
])
def test_bad_run_conf_is_refused_before_anything_runs(case, conf, message, bad_input):
    with pytest.raises(RunParameterError) as refused:
        check_run_conf(conf)
        resolve_snapshot_date(conf["snapshot_date"], "manual", None, None, None)
    assert message in str(refused.value)
    bad_input.record("conf", case, f"plan fails (and the UI/REST trigger form refuses non-dates): {refused.value}",
                     kept="nothing written: plan is the first task")


def test_run_id_with_traversal_stays_inside_runs(tmp_path, bad_input):
    runs = tmp_path / "runs"
    folder = run_dir_for(runs, "provider_a__propensity_model", "manual__../../../etc/cron.d/x")
    assert folder.is_relative_to(runs) and ".." not in folder.parts
    with pytest.raises(RunParameterError) as refused:
        run_dir_for(runs, "../evil", "manual__1")
    with pytest.raises(RunParameterError):
        run_dir_for(runs, "provider_a__propensity_model", "..")
    bad_input.record("security", "path traversal in run id and dag id",
                     f"run id mapped to {folder.relative_to(runs)}; dag id refused: {refused.value}",
                     kept="nothing written outside runs/")


# ---------------------------------------------------------------- security: SQL injection through config
@pytest.mark.parametrize(("case", "field", "value"), [
    ("entity name", "entities", "customers; DROP TABLE customers"),
    ("canonical column name", "column", 'age" VARCHAR); DROP TABLE customers; --'),
])
def test_sql_injection_through_config_identifiers_is_refused(project, case, field, value, bad_input):
    from batchops.config import load_config_set

    text = (project.config_dir / "provider_a.yaml").read_text()
    if field == "entities":
        text = text.replace("  customers:\n", f"  '{value}':\n", 1)
    else:
        text = text.replace("      age:  ", f"      '{value}':  ", 1)
    (project.config_dir / "provider_a.yaml").write_text(text)
    config_set = load_config_set(project.config_dir, project.pipelines_dir, project.sql_dir)
    issues = config_set.broken_files[str(project.config_dir / "provider_a.yaml")]
    assert any("must match" in issue.reason or "String should match" in issue.reason for issue in issues), issues
    assert "provider_a" not in config_set.providers and "provider_b" in config_set.providers
    bad_input.record("security", f"SQL injection through a config {case}", "; ".join(map(str, issues[:1])),
                     kept="the file is refused as a whole; other providers load")


def test_sql_injection_through_source_column_names_stays_data(home, bad_input):
    """A hostile *header* in a delivered file is quoted as an identifier, never executed."""
    path = landing(home, "customers")
    rewrite_lines(path, lambda lines: [lines[0] + ',"x"")); DROP TABLE customers; --"']
                  + [line + ",1" for line in lines[1:]])
    outcome = bad_drop_outcome(home)
    assert outcome.startswith("accepted")
    with duckdb.connect(str(warehouse_path(home, "provider_a")), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM load_audit WHERE entity = 'customers'").fetchone()[0] == 2
    bad_input.record("security", "SQL injection through a CSV header",
                     "the column name is quoted and bound; the table survives: " + outcome,
                     kept="earlier snapshot unchanged; the new one loaded")


# ---------------------------------------------------------------- model
@pytest.fixture
def trained(project):
    make_drop(project, "provider_a", customers=800)
    ctx = run_context(project)
    ingest(ctx)
    assert validate(ctx)["passed"]
    load(ctx)
    build_features(ctx)
    train(ctx)
    return ctx


def test_model_saved_by_another_scikit_learn_version(trained, bad_input, monkeypatch):
    import joblib
    import sklearn.base

    ctx = trained
    model_entry = find_approved_model(ctx.settings, "provider_a", "propensity_model", SNAPSHOT)
    model = joblib.load(model_entry.path)
    monkeypatch.setattr(sklearn.base, "__version__", "1.0.2")  # what an older deployment would stamp
    joblib.dump(model, model_entry.path)
    monkeypatch.undo()
    new_sha = hashlib.sha256(model_entry.path.read_bytes()).hexdigest()
    with open_warehouse(ctx.settings, "provider_a") as warehouse:  # registered as a legitimate older model
        warehouse.execute("UPDATE model_registry SET sha256 = ? WHERE model_id = ?", [new_sha, model_entry.model_id])
    with pytest.raises(ModelIntegrityError) as refused:
        score(ctx)
    assert "InconsistentVersionWarning" in str(refused.value) and "Retrain it" in str(refused.value)
    bad_input.record("model", "model saved by another scikit-learn version", refused.value,
                     kept="no predictions written", home=ctx.settings.home)


def test_features_that_no_longer_match_the_model(trained, bad_input):
    ctx = trained
    with open_warehouse(ctx.settings, "provider_a") as warehouse:
        warehouse.execute("ALTER TABLE features DROP COLUMN txn_trend_90")
    with pytest.raises(ModelIntegrityError) as refused:
        score(ctx)
    assert "needs features ['txn_trend_90']" in str(refused.value) and "retrain" in str(refused.value)
    assert not (ctx.run_dir / "predictions").exists()
    bad_input.record("model", "features no longer match the model", refused.value, kept="no predictions written",
                     home=ctx.settings.home)


def test_model_file_deleted_after_registration(trained, bad_input):
    ctx = trained
    model_entry = find_approved_model(ctx.settings, "provider_a", "propensity_model", SNAPSHOT)
    model_entry.path.unlink()
    with pytest.raises(ModelIntegrityError) as refused:
        load_verified_model(ctx.settings, "provider_a", model_entry)
    assert "is missing; re-run the training DAG (provider_a__propensity_model)" in str(refused.value)
    bad_input.record("model", "model file missing from the store", refused.value, kept="no predictions written",
                     home=ctx.settings.home)


def test_parse_snapshot_date_accepts_the_documented_form():
    """The conf cases above must fail for their reason, not because every date is refused."""
    assert parse_snapshot_date("2026-02-01") == date(2026, 2, 1)
    check_run_conf({"snapshot_date": "2026-02-01"})


def test_corrupt_scanned_statement_fails_ingest_and_names_the_file(home, bad_input):
    files = make_drop(home, "provider_c", BAD_SNAPSHOT, customers=30)
    deliver(files["transactions"], b"%PDF-1.4\n% truncated upload, no pages\n")
    before = fingerprint(home)
    outcome = attempt(home, "provider_c")
    assert fingerprint(home) == before
    assert "OCR of" in outcome and "statement.pdf" in outcome and "not a readable PDF" in outcome
    bad_input.record("OCR", "corrupt scanned PDF delivered by provider_c (through ingest)", outcome, home=home.home)


# ---------------------------------------------------------------- data: layouts that used to give unclear messages
def test_cr_only_line_endings(home, bad_input):
    path = landing(home, "customers")
    deliver(path, path.read_text().replace("\n", "\r"))
    outcome = bad_drop_outcome(home)
    assert "customers.csv: lines end with a carriage return only" in outcome and "LF or CRLF" in outcome
    bad_input.record("data", "CR-only line endings (old Mac export)", outcome, home=home.home)


def test_header_field_longer_than_the_csv_field_limit(home, bad_input):
    path = landing(home, "customers")
    rewrite_lines(path, lambda lines: ['"' + "h" * 200_000 + '",' + lines[0]] + ["x," + line for line in lines[1:]])
    outcome = bad_drop_outcome(home)
    assert "customers.csv: line 1 (the header) cannot be read as column names" in outcome and "Fix the file" in outcome
    bad_input.record("data", "a header field over 128 KB", outcome, home=home.home)


def test_header_names_that_differ_only_in_case(home, bad_input):
    path = landing(home, "customers")
    rewrite_lines(path, lambda lines: [lines[0] + ",AGE"] + [line + ",40" for line in lines[1:]])
    outcome = bad_drop_outcome(home)
    assert "differ only in case: 'age' and 'AGE'" in outcome and "rename or drop one" in outcome
    bad_input.record("data", "header names that differ only in case (age, AGE)", outcome, home=home.home)


def test_trailing_delimiter_on_every_line_is_read(home, bad_input):
    path = landing(home, "transactions")
    rewrite_lines(path, lambda lines: [line + "," for line in lines])
    outcome = bad_drop_outcome(home)
    assert outcome.startswith("accepted")
    report = json.loads((run_dir_for(home.runs_dir, "provider_a__propensity_model", "manual__bad")
                         / "ingest_report.json").read_text())
    assert report["entities"]["transactions"]["unmapped_source_columns"] == ["_unnamed_column_6"]
    assert report["entities"]["transactions"]["rejected_rows"] == 0
    bad_input.record("data", "trailing delimiter on every line (spreadsheet export)",
                     f"{outcome}; the unnamed last column is reported as unmapped (_unnamed_column_6) and ignored",
                     kept="earlier snapshot unchanged; the new one loaded")


def test_nul_byte_inside_a_header_name(home, bad_input):
    path = landing(home, "customers")
    deliver(path, path.read_bytes().replace(b"region", b"reg\x00ion", 1))
    outcome = bad_drop_outcome(home)
    assert "customers.csv: line 1 (the header) has a NUL byte at byte" in outcome and "'customer_id,signup_date,reg'" in outcome
    bad_input.record("data", "NUL byte inside a header name", outcome, home=home.home)


def test_utf16_file(home, bad_input):
    path = landing(home, "customers")
    deliver(path, path.read_text().encode("utf-16"))
    outcome = bad_drop_outcome(home)
    assert "customers.csv: the file is UTF-16 encoded; re-export it as UTF-8" in outcome
    bad_input.record("data", "UTF-16 file", outcome, home=home.home)


@pytest.mark.parametrize("case", ["symlink loop", "dangling symlink"])
def test_landing_symlink_that_leads_nowhere(home, bad_input, case):
    path = landing(home, "customers")
    path.unlink()
    if case == "symlink loop":
        path.symlink_to(path.name)
        expected = "is a symbolic link that loops"
    else:
        path.symlink_to(path.parent / "gone.csv")
        expected = "gone.csv, which does not exist"
    outcome = bad_drop_outcome(home)
    assert f"landing file {path}" in outcome and expected in outcome
    bad_input.record("data", case, outcome, home=home.home)


# ================================================================ recovery commands (backup, restore, rebuild)
# A command either does the right thing or refuses with one clear line; it never reports success after harm.
@pytest.fixture(scope="module")
def maintained_baseline(tmp_path_factory) -> Path:
    """provider_a: a drop planned, loaded, featured, trained and scored (rebuild reads its run folder);
    provider_b: a drop loaded (its warehouse is the foreign one)."""
    home = tmp_path_factory.mktemp("maintained")
    for folder in ("configs", "pipelines", "sql"):
        shutil.copytree(REPO / "include" / folder, home / "include" / folder)
    settings = Settings.from_env(default_home=home, env={})
    make_drop(settings, "provider_a", customers=500)
    first = run_context(settings, run_id="manual__first")
    write_plan(first, "conf.snapshot_date", {})
    for stage in (ingest, validate, load, build_features, train, score):
        stage(first)
    make_drop(settings, "provider_b", customers=300)
    other = run_context(settings, "provider_b", run_id="manual__first")
    write_plan(other, "conf.snapshot_date", {})
    for stage in (ingest, validate, load):
        stage(other)
    return home


@pytest.fixture
def maintained(maintained_baseline, tmp_path) -> Settings:
    copy = tmp_path / "home"
    shutil.copytree(maintained_baseline, copy, symlinks=True)
    return Settings.from_env(default_home=copy, env={})


def command(settings: Settings, capsys, *args: str) -> tuple[int, str, str]:
    """`python -m batchops --home H ARGS` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli_main(["--home", str(settings.home), *args])
    except SystemExit as exited:  # argparse refuses an argument with exit 2
        code = exited.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def command_process(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The same in its own process (for kills and pauses)."""
    return subprocess.run([sys.executable, "-m", "batchops", "--home", str(settings.home), *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


def contents(settings: Settings, provider: str = "provider_a") -> dict:
    return read_fingerprints(warehouse_path(settings, provider))


def make_backup(settings: Settings, capsys, provider: str = "provider_a") -> Path:
    code, out, err = command(settings, capsys, "backup", "--provider", provider)
    assert code == 0, err
    return list_backups(settings, provider)[-1]


@pytest.mark.parametrize("keep", ["-5", "0", "two"])
def test_backup_keep_below_one_is_refused_and_removes_nothing(maintained, capsys, keep, bad_input):
    made = [make_backup(maintained, capsys) for _ in range(2)]
    code, out, err = command(maintained, capsys, "backup", "--provider", "provider_a", "--keep", keep)
    assert code == 2 and "give a whole number of 1 or more" in err and "Traceback" not in err
    assert list_backups(maintained, "provider_a") == made  # nothing made, nothing removed
    with pytest.raises(MaintenanceError, match="keeps at least the backup it makes"):
        backup(maintained, "provider_a", keep=0)
    assert list_backups(maintained, "provider_a") == made
    bad_input.record("faults", f"backup --keep {keep}", f"exit 2: {err.strip().splitlines()[-1]}",
                     kept="every backup kept; none made")


def test_backup_retention_never_removes_the_new_backup(maintained, capsys):
    for _ in range(3):
        make_backup(maintained, capsys)
    newest = make_backup(maintained, capsys)
    code, out, err = command(maintained, capsys, "backup", "--provider", "provider_a", "--keep", "1")
    kept = list_backups(maintained, "provider_a")
    assert code == 0 and len(kept) == 1 and kept[0] != newest and manifest_path(kept[0]).is_file()
    assert not list(maintained.backup_dir("provider_a").glob(f"{newest.name}*"))  # its manifest went with it


@pytest.mark.parametrize("share", [0.3, 0.6, 0.99])
def test_restore_refuses_a_truncated_backup(maintained, capsys, share, bad_input):
    made = make_backup(maintained, capsys)
    os.truncate(made, int(made.stat().st_size * share))
    before = contents(maintained)
    code, out, err = command(maintained, capsys, "restore", "--provider", "provider_a", "--backup", str(made))
    assert code == 1 and "truncated or changed after the backup; nothing was replaced" in err
    assert contents(maintained) == before and not list(maintained.warehouse_dir.glob("*.replaced-*"))
    bad_input.record("faults", f"restore of a backup truncated to {share:.0%} of its size", f"exit 1: {err.strip()}",
                     home=maintained.home, kept="the warehouse untouched")


def test_restore_refuses_a_backup_whose_tables_differ_from_its_manifest(maintained, capsys, bad_input):
    made = make_backup(maintained, capsys)
    manifest = json.loads(manifest_path(made).read_text())
    manifest["tables"]["customers"]["rows"] += 1  # what a copy that lost rows on the way would look like
    manifest_path(made).write_text(json.dumps(manifest))
    code, out, err = command(maintained, capsys, "restore", "--provider", "provider_a", "--backup", str(made))
    assert code == 1 and "tables ['customers'] differ from the manifest" in err
    bad_input.record("faults", "restore of a backup whose rows differ from its manifest", f"exit 1: {err.strip()}",
                     home=maintained.home, kept="the warehouse untouched")


def test_restore_refuses_another_providers_backup(maintained, capsys, bad_input):
    foreign = make_backup(maintained, capsys, "provider_b")
    before = contents(maintained)
    code, out, err = command(maintained, capsys, "restore", "--provider", "provider_a", "--backup", str(foreign))
    assert code == 1 and "is a backup of 'provider_b', not of 'provider_a'" in err
    assert contents(maintained) == before
    with duckdb.connect(str(warehouse_path(maintained, "provider_a")), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM model_registry WHERE model_id NOT LIKE 'provider_a__%'").fetchone()[0] == 0
    bad_input.record("faults", "restore --provider provider_a of provider_b's backup", f"exit 1: {err.strip()}",
                     home=maintained.home, kept="provider_a's warehouse and registry untouched")


@pytest.mark.parametrize("provider", ["../../x", "Provider_A", "provider_q"])
@pytest.mark.parametrize("action", ["backup", "restore", "rebuild"])
def test_maintenance_refuses_a_provider_id_that_no_config_defines(maintained, capsys, tmp_path, provider, action,
                                                                   bad_input):
    before = sorted(p.relative_to(maintained.home) for p in maintained.home.rglob("*"))
    code, out, err = command(maintained, capsys, action, "--provider", provider)
    assert code == 1 and f"--provider {provider!r} is not a provider of" in err and "known: provider_a" in err
    assert sorted(p.relative_to(maintained.home) for p in maintained.home.rglob("*")) == before
    assert not (maintained.home.parent / "x.duckdb").exists()
    if action == "restore":
        bad_input.record("security", f"maintenance command with --provider {provider}", f"exit 1: {err.strip()}",
                         home=maintained.home, kept="no file created or changed anywhere")


def add_marker_table_in_the_wal(settings: Settings) -> None:
    """Commit a table the backup does not have, and leave it in the WAL (the process dies before it checkpoints)."""
    script = (f"import duckdb, os; c = duckdb.connect({str(warehouse_path(settings, 'provider_a'))!r}); "
              "c.execute('CREATE TABLE marker AS SELECT 42 AS answer'); os._exit(0)")
    subprocess.run([sys.executable, "-c", script], check=True)
    assert wal_path(warehouse_path(settings, "provider_a")).exists()


@pytest.mark.parametrize("point", ["restore.copied", "swap.journal_written", "swap.wal_kept", "swap.old_kept",
                                   "swap.renamed"])
def test_a_kill_at_each_step_of_restore_leaves_the_old_or_the_new_warehouse(maintained, capsys, point, bad_input):
    made = make_backup(maintained, capsys)
    restored = read_fingerprints(made)
    add_marker_table_in_the_wal(maintained)
    killed = command_process(maintained, "restore", "--provider", "provider_a", BATCHOPS_CRASH_AT=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    target = warehouse_path(maintained, "provider_a")
    assert target.exists()  # never no warehouse (the overview would say the registry is on another host)
    with open_warehouse(maintained, "provider_a"):  # whoever takes the lock next completes the swap
        pass
    kept = sorted(maintained.warehouse_dir.glob("provider_a.duckdb.replaced-*[0-9]Z"))
    if point == "restore.copied":  # killed before the swap began: the old file, with its WAL, is the warehouse
        assert "marker" in contents(maintained) and not kept
        assert command_process(maintained, "restore", "--provider", "provider_a").returncode == 0
    assert contents(maintained) == restored and len(kept) <= 1
    kept = sorted(maintained.warehouse_dir.glob("provider_a.duckdb.replaced-*[0-9]Z"))
    with duckdb.connect(str(kept[0]), read_only=True) as old:  # the replaced file keeps its own WAL's commits
        assert old.execute("SELECT answer FROM marker").fetchone()[0] == 42
    leftovers = [p.name for p in maintained.warehouse_dir.iterdir() if p.name.startswith(".") or "swap" in p.name]
    assert leftovers == []
    bad_input.record("faults", f"restore killed (SIGKILL) at {point}",
                     "the warehouse name always holds the old or the new file; the next open completes the swap "
                     "(or, killed before it began, the next restore removes the copy and restores)",
                     kept="the replaced file kept as provider_a.duckdb.replaced-<time> with its own WAL")


def scored_second_drop(settings: Settings):
    """provider_a's 2026-02-02 drop through the scoring pipeline up to score (not scored yet)."""
    make_drop(settings, "provider_a", BAD_SNAPSHOT, customers=500, seed=8)
    ctx = run_context(settings, "provider_a", "propensity_scoring", BAD_SNAPSHOT, "manual__second")
    write_plan(ctx, "conf.snapshot_date", {})
    for stage in (ingest, validate, load, build_features):
        stage(ctx)
    return ctx


def wait_for_file(path: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_scoring_run_that_commits_while_a_rebuild_starts_keeps_its_rows(maintained, bad_input):
    ctx = scored_second_drop(maintained)
    markers = maintained.warehouse_dir / "tmp" / "provider_a"
    rebuilding = subprocess.Popen([sys.executable, "-m", "batchops", "--home", str(maintained.home), "rebuild",
                                   "--provider", "provider_a"], env={**os.environ,
                                                                     "BATCHOPS_PAUSE_AT": "rebuild.before_lock"},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    paused = pause_marker("rebuild.before_lock", markers)
    wait_for_file(paused, rebuilding)  # the rebuild has started ...
    scored = score(ctx)  # ... a scoring run commits now ...
    paused.with_name(paused.name + ".resume").touch()  # ... then the rebuild takes the lock
    out, err = rebuilding.communicate(timeout=600)
    assert rebuilding.returncode == 0, err
    with duckdb.connect(str(warehouse_path(maintained, "provider_a")), read_only=True) as con:
        rows = con.execute("SELECT count(*), any_value(run_id) FROM predictions WHERE snapshot_date = ?",
                           [BAD_SNAPSHOT]).fetchone()
        featured = con.execute("SELECT count(*) FROM features WHERE source_snapshot = ?", [BAD_SNAPSHOT]).fetchone()[0]
    assert rows == (scored["rows"], "manual__second") and featured == 500
    bad_input.record("faults", "a scoring run commits while `rebuild` is starting",
                     f"rebuild reads the run history after it holds the provider lock: the new warehouse has the "
                     f"run's {rows[0]} predictions and its features for {BAD_SNAPSHOT}",
                     kept="the scoring run's features and predictions")


def test_rebuild_rebuilds_every_drop_it_can_and_lists_the_rest(maintained, capsys, bad_input):
    ctx = scored_second_drop(maintained)
    score(ctx)
    make_drop(maintained, "provider_a", date(2026, 2, 3), customers=400, seed=5)
    broken = maintained.data_dir / "provider_a" / BAD_SNAPSHOT.isoformat() / "customers.csv"
    lines = broken.read_text().splitlines()
    broken.write_text("\n".join([lines[0] + ",region"] + [line + ",north" for line in lines[1:]]) + "\n")
    code, out, err = command(maintained, capsys, "rebuild", "--provider", "provider_a")
    assert code == 1 and "INCOMPLETE" in err and f"drop {BAD_SNAPSHOT}: InputDataError" in err
    assert "header repeats column(s) ['region']" in err and f"--skip {BAD_SNAPSHOT}" in err
    assert "from 2 of 3 landing drops" in out
    with duckdb.connect(str(warehouse_path(maintained, "provider_a")), read_only=True) as con:
        loaded = {row[0] for row in con.execute("SELECT snapshot_date FROM load_audit WHERE entity = 'customers'"
                                                ).fetchall()}
    assert loaded == {SNAPSHOT, date(2026, 2, 3)}  # the later drop was rebuilt too
    code, out, err = command(maintained, capsys, "rebuild", "--provider", "provider_a", "--skip",
                             BAD_SNAPSHOT.isoformat())
    assert code == 0 and "1 left out by --skip" in out, err
    bad_input.record("faults", "rebuild meets a drop whose ingest fails (repeated header column)",
                     f"exit 1, the other drops rebuilt: {err.strip()}", home=maintained.home,
                     kept="the replaced file kept; --skip DATE leaves the drop out knowingly (exit 0)")


def test_rebuild_names_a_malformed_plan_or_model_sidecar_and_carries_on(maintained, capsys, bad_input):
    run = run_dir_for(maintained.runs_dir, "provider_a__propensity_model", "manual__first")
    other = run.with_name("manual__garbled")
    other.mkdir()
    (other / "plan.json").write_text("{ not json")
    sidecar = next(maintained.model_store("provider_a").glob("*/registry.json"))
    sidecar.write_text("[1, 2")
    code, out, err = command(maintained, capsys, "rebuild", "--provider", "provider_a")
    assert code == 1 and "Traceback" not in err
    assert f"{other / 'plan.json'}: not a readable plan" in err and f"{sidecar}: not valid JSON" in err
    assert "from 1 of 1 landing drops" in out
    bad_input.record("faults", "rebuild with a malformed plan.json and a malformed model registry.json",
                     f"exit 1: {' '.join(err.split())}", home=maintained.home,
                     kept="the drops rebuilt; the files named; the replaced warehouse kept")


# ================================================================ data that must stay exact
def edit_config(settings: Settings, old: str, new: str, provider: str = "provider_a") -> None:
    path = settings.config_dir / f"{provider}.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_integer_ids_with_leading_zeros_fail_dq_and_validate_warns(home, capsys, bad_input):
    config = home.config_dir / "provider_a.yaml"
    config.write_text(re.sub(r"(customer_id:\s+\{source: customer_id, type: )string", r"\1integer", config.read_text()))
    for entity in ("customers", "transactions"):
        path = landing(home, entity)
        deliver(path, path.read_text().replace(",C0", ",00").replace("\nC0", "\n00"))
    code, out, err = command(home, capsys, "validate")
    assert code == 0 and "warning:" in err and "entities.customers.columns.customer_id.type: integer ids lose" in err
    outcome = bad_drop_outcome(home)
    assert "customers.customer_id key_text_preserved" in outcome and "declare customer_id as type: string" in outcome
    assert "'00000001' is read as 1" in outcome
    bad_input.record("data", "ids with leading zeros declared type: integer", f"validate warns; {outcome}",
                     home=home.home)


def test_ids_that_differ_in_case_or_blanks_are_one_rule_everywhere(home, bad_input):
    path = landing(home, "customers")
    lines = path.read_text().splitlines()
    first = lines[1].split(",")[0]
    variants = [first.lower(), f" {first}", f"{first} "]
    lines[2:5] = [",".join([variant, *line.split(",")[1:]]) for variant, line in zip(variants, lines[2:5], strict=True)]
    deliver(path, "\n".join(lines) + "\n")
    outcome = bad_drop_outcome(home)
    assert "customers.customer_id unique_key: observed 1" in outcome  # ' C..' and 'C.. ' are trimmed to C..
    assert "customers.customer_id near_duplicate_keys: observed 1" in outcome
    with duckdb.connect(":memory:") as con:  # the trimmed ids are what ingest staged
        staged = run_dir_for(home.runs_dir, "provider_a__propensity_model", "manual__bad") / "staging/customers.parquet"
        ids = {row[0] for row in con.execute("SELECT customer_id FROM read_parquet(?)", [str(staged)]).fetchall()}
    assert f" {first}" not in ids and f"{first} " not in ids and first.lower() in ids
    bad_input.record("data", "ids C0000001, c0000001, ' C0000001', 'C0000001 '",
                     f"blanks are trimmed at ingest (normalize, default trim); case variants are near-duplicates: "
                     f"{outcome}", home=home.home)


def test_ids_declared_upper_case_become_one_customer(home, bad_input):
    edit_config(home, "customer_id: {source: customer_id, type: string, required: true, max_missing: 0.0}",
                "customer_id: {source: customer_id, type: string, required: true, max_missing: 0.0, "
                "normalize: [trim, upper]}")
    path = landing(home, "customers")
    lines = path.read_text().splitlines()
    lines[1] = lines[1].lower()  # the first customer's id in lower case
    deliver(path, "\n".join(lines) + "\n")
    outcome = bad_drop_outcome(home)
    assert outcome.startswith("accepted")
    with duckdb.connect(str(warehouse_path(home, "provider_a")), read_only=True) as con:
        lower = con.execute("SELECT count(*) FROM customers WHERE customer_id <> upper(customer_id)").fetchone()[0]
    assert lower == 0


def test_orphan_transactions_are_counted_and_said_where_they_go(home, bad_input):
    path = landing(home, "transactions")
    lines = path.read_text().splitlines()
    column = lines[0].split(",").index("customer_id")

    def orphaned(line: str) -> str:
        fields = line.split(",")
        fields[column] = "C9999999"
        return ",".join(fields)

    lines[1:65] = [orphaned(line) for line in lines[1:65]]
    deliver(path, "\n".join(lines) + "\n")
    outcome = bad_drop_outcome(home)
    assert "transactions.customer_id orphan_rows" in outcome and "C9999999" in outcome
    report = json.loads((run_dir_for(home.runs_dir, "provider_a__propensity_model", "manual__bad")
                         / "dq_report.json").read_text())
    detail = next(c["detail"] for c in report["checks"] if c["check"] == "orphan_rows")
    assert detail.startswith("64 of") and "in no customer's features, labels or scores" in detail
    edit_config(home, "dq:\n", "dq:\n  max_orphan_rows: 0.01\n", "_defaults")
    assert bad_drop_outcome(home).startswith("accepted")  # the threshold is the provider's to set
    bad_input.record("data", "64 transactions whose customer is not in the customer file", f"{outcome} ({detail})",
                     home=home.home)


def test_dates_after_the_snapshot_are_a_finding(home, bad_input):
    set_field(landing(home, "transactions"), [3, 4, 5], "txn_date", ["9999-12-31", "2027-01-01", "2026-02-03"])
    outcome = bad_drop_outcome(home)
    assert "transactions.txn_date future_dates" in outcome
    report = json.loads((run_dir_for(home.runs_dir, "provider_a__propensity_model", "manual__bad")
                         / "dq_report.json").read_text())
    detail = next(c["detail"] for c in report["checks"] if c["check"] == "future_dates" and not c["passed"])
    assert detail.startswith(f"3 value(s) after the snapshot date {BAD_SNAPSHOT}, the latest 9999-12-31")
    bad_input.record("data", "transactions dated 9999-12-31 (after the snapshot)", f"{outcome} ({detail})",
                     home=home.home)


@pytest.mark.parametrize("point", ["score.writing_predictions", "score.committed"])
def test_a_killed_score_never_leaves_predictions_the_warehouse_lacks(maintained, point, bad_input):
    from batchops.ui.pages import render_run_page

    ctx = scored_second_drop(maintained)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from datetime import date
        from pathlib import Path
        from batchops.settings import Settings
        from batchops.stages.score import score
        from conftest import run_context
        settings = Settings.from_env(default_home=Path({str(maintained.home)!r}), env={{}})
        score(run_context(settings, "provider_a", "propensity_scoring", date(2026, 2, 2), "manual__second"))
    """)
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "BATCHOPS_CRASH_AT": point},
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (ctx.run_dir / "predictions").exists()  # the run tab and /files/ have nothing to serve
    page = render_run_page(ctx.dag_id, ctx.run_id, ctx.run_dir)
    assert "Predictions (first" not in page
    with duckdb.connect(str(warehouse_path(maintained, "provider_a")), read_only=True) as con:
        stored = con.execute("SELECT count(*) FROM predictions WHERE snapshot_date = ?", [BAD_SNAPSHOT]).fetchone()[0]
    assert stored == (500 if point == "score.committed" else 0)
    from batchops.recovery import begin_attempt

    begin_attempt(ctx.logger("score"), 2)  # what the retry's task edge does first
    events = read_events(ctx.run_dir / "logs.jsonl")
    interrupted = next(e for e in events if e["event"] == "previous_attempt_interrupted")
    assert "only after the warehouse committed them" in interrupted["detail"]
    assert not [p for p in ctx.run_dir.iterdir() if p.name.startswith(".predictions.")]  # the hidden copy is gone
    assert score(ctx)["rows"] == 500
    published = ctx.run_dir / "predictions" / "predictions.csv"
    assert sum(1 for _ in published.open()) == 501
    bad_input.record("output", f"score killed (SIGKILL) at {point}",
                     "predictions/ appears only after the warehouse commit: the run tab shows no predictions, "
                     f"the warehouse has {stored} rows; the retry logs: {interrupted['detail']}",
                     kept="the retry publishes the files and the rows together")


# ================================================================ configs
def test_a_date_format_that_crashes_strptime_is_that_files_error(project, monkeypatch, capsys, bad_input):
    from batchops.config import load_config_set
    from batchops.factory import build_dag_set

    edit_config(project, "    csv: {delimiter: \";\", date_format: \"%d/%m/%Y\"}\n    primary_key: [customer_id]",
                "    csv: {delimiter: \";\", date_format: \"%d/%m/%Y %d\"}\n    primary_key: [customer_id]", "provider_b")
    config_set = load_config_set(project.config_dir, project.pipelines_dir, project.sql_dir)
    issue = config_set.broken_files[str(project.config_dir / "provider_b.yaml")][0]
    assert "entities.customers.csv.date_format" in issue.field and "give each directive once" in issue.reason
    assert {"provider_a", "provider_c"} <= set(config_set.providers)
    dags = build_dag_set(project).dags
    assert "provider_a__propensity_model" in dags and "provider_b__propensity_model" in dags  # the error DAG
    checked = command_process(project, "validate")  # a process of its own: stderr is validate's only
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr
    assert "redefinition of group name" in checked.stderr
    bad_input.record("config", "date_format '%d/%m/%Y %d' (a directive twice)", issue, home=project.home,
                     kept="every other provider's DAGs load; validate names the field")


def test_any_exception_while_reading_one_file_is_that_files_error(project, monkeypatch, bad_input):
    import batchops.config.loading as loading

    real = loading.load_provider_file

    def explode_on_b(path, defaults):
        if path.name == "provider_b.yaml":
            raise RecursionError("maximum recursion depth exceeded")
        return real(path, defaults)

    monkeypatch.setattr(loading, "load_provider_file", explode_on_b)
    config_set = loading.load_config_set(project.config_dir, project.pipelines_dir, project.sql_dir)
    issue = config_set.broken_files[str(project.config_dir / "provider_b.yaml")][0]
    assert issue.reason == "could not be read: RecursionError: maximum recursion depth exceeded"
    assert {"provider_a", "provider_c"} <= set(config_set.providers)
    bad_input.record("config", "an unexpected exception while reading one provider file", issue, home=project.home,
                     kept="the other providers load")


@pytest.mark.parametrize("copy_name", ["a_copy.yaml", "zz_copy.yaml"])
def test_two_files_with_one_provider_id_are_both_refused(project, copy_name, bad_input):
    from batchops.config import load_config_set

    original = project.config_dir / "provider_a.yaml"
    copy = project.config_dir / copy_name
    copy.write_text(original.read_text())
    config_set = load_config_set(project.config_dir, project.pipelines_dir, project.sql_dir)
    assert "provider_a" not in config_set.providers
    for file, other in ((copy, original), (original, copy)):
        reason = config_set.broken_files[str(file)][0].reason
        assert f"also defined in {other}" in reason and "neither file is used" in reason
    bad_input.record("config", f"a second file ({copy_name}) with provider_a's provider_id",
                     config_set.broken_files[str(copy)][0], home=project.home,
                     kept="neither file takes the DAGs; both are named; other providers load")


@pytest.mark.parametrize("case", ["dangling symlink", "folder"])
def test_a_config_entry_that_is_not_a_file_is_reported(project, capsys, case, bad_input):
    entry = project.config_dir / "provider_x.yaml"
    if case == "folder":
        entry.mkdir()
    else:
        entry.symlink_to(project.home / "nowhere.yaml")
    code, out, err = command(project, capsys, "validate")
    assert code == 1 and "all configs are valid" not in out
    expected = "is a folder, not a config file" if case == "folder" else "which does not exist"
    line = next(line for line in err.splitlines() if "provider_x.yaml" in line)
    assert expected in line
    bad_input.record("config", f"a {case} named provider_x.yaml", f"validate exits 1: {line}", home=project.home,
                     kept="the other providers load")


def test_a_config_link_to_a_file_is_followed(project):
    from batchops.config import load_config_set

    target = project.home / "elsewhere.yaml"
    target.write_text((project.config_dir / "provider_a.yaml").read_text())
    (project.config_dir / "provider_a.yaml").unlink()
    (project.config_dir / "provider_a.yaml").symlink_to(target)  # how Kubernetes mounts a config map
    assert "provider_a" in load_config_set(project.config_dir, project.pipelines_dir, project.sql_dir).providers


def test_settings_that_would_do_nothing_are_refused(project, bad_input):
    from batchops.config import load_config_set

    text = (project.config_dir / "provider_a.yaml").read_text()
    (project.config_dir / "provider_a.yaml").write_text(
        text + "pipelines:\n  propensity_model: {}\n  propensity_scoring: {label: {horizon_days: 60}, "
               "model: {C: 2.0}}\n")
    config_set = load_config_set(project.config_dir, project.pipelines_dir, project.sql_dir)
    issues = config_set.broken_files[str(project.config_dir / "provider_a.yaml")]
    assert [issue.field for issue in issues] == ["pipelines.propensity_scoring.label",
                                                 "pipelines.propensity_scoring.model"]
    assert "override label under propensity_model instead" in issues[0].reason
    bad_input.record("config", "a scoring pipeline's label.horizon_days override", issues[0], home=project.home,
                     kept="refused: the scoring pipeline takes its label from propensity_model")


def test_min_rows_zero_accepts_an_empty_file(home, bad_input):
    edit_config(home, "    primary_key: [transaction_id]", "    primary_key: [transaction_id]\n    min_rows: 0")
    path = landing(home, "transactions")
    deliver(path, path.read_text().splitlines()[0] + "\n")
    outcome = bad_drop_outcome(home)
    assert outcome.startswith("accepted") and "'transactions': 0" in outcome
    bad_input.record("config", "dq.min_rows: 0 with an empty transactions file", outcome,
                     kept="the empty drop is accepted, as configured (it was refused with '>= 1')")


def test_label_settings_that_turn_the_backtest_off_are_named_by_validate(project, capsys, bad_input):
    text = (project.config_dir / "provider_a.yaml").read_text()
    (project.config_dir / "provider_a.yaml").write_text(text + "pipelines:\n  propensity_model: {label: "
                                                               "{horizon_days: 90}}\n  propensity_scoring: {}\n")
    code, out, err = command(project, capsys, "validate")
    assert code == 0, err
    line = next(line for line in err.splitlines() if line.startswith("warning:") and "label" in line)
    assert "out-of-time backtest is off" in line and "set snapshot_step_days >= 90" in line
    bad_input.record("config", "label.horizon_days 90 with snapshot_step_days 30", line, home=project.home,
                     kept="valid; validate says the backtest is off and what step keeps it on")


def test_one_bad_override_is_reported_once(project, capsys, bad_input):
    text = (project.config_dir / "provider_a.yaml").read_text()
    (project.config_dir / "provider_a.yaml").write_text(text + "pipelines:\n  propensity_model: {label: "
                                                               "{horizon_days: 0}}\n  propensity_scoring: {}\n")
    code, out, err = command(project, capsys, "validate")
    assert code == 1 and "1 problem(s) in 1 file(s)" in err
    bad_input.record("config", "one bad override (horizon_days: 0) of a pipeline another one scores for",
                     err.strip().splitlines()[0], home=project.home, kept="reported once")


def test_a_model_rejected_on_a_window_too_small_to_judge_says_so(project, bad_input):
    from batchops.airflow_ops import ApprovedModelSensor
    from batchops.errors import ModelRejectedError
    from batchops.stages.summarize import run_outcome

    make_drop(project, "provider_a", customers=120, seed=4)
    ctx = run_context(project)
    for stage in (ingest, validate, load, build_features):
        stage(ctx)
    trained = train(ctx)
    metrics = json.loads((ctx.run_dir / "metrics.json").read_text())
    assert metrics["judgement_warnings"] and "too few to judge a model" in metrics["judgement_warnings"][0]
    assert "WARNING: the out-of-time window has" in trained["reason"]
    with open_warehouse(project, "provider_a") as warehouse:  # whatever the AUC came out as, it is not approved
        warehouse.execute("UPDATE model_registry SET status = 'rejected'")
    sensor = ApprovedModelSensor(task_id="wait_for_model", provider_id="provider_a",
                                 model_pipeline="propensity_model", settings=project,
                                 snapshot_date=SNAPSHOT.isoformat(), trained_in_run=True)
    with pytest.raises(ModelRejectedError) as rejected:
        sensor.poke({})
    assert "this run's model was not approved" in str(rejected.value) and "too few to judge" in str(rejected.value)
    outcome, why = run_outcome({"train": "success", "wait_for_model": "failed"}, None,
                               {"wait_for_model": f"ModelRejectedError: {rejected.value}"})
    assert outcome == "FAILED" and "this run's model was not approved" in why
    bad_input.record("model", "a backtest window too small to judge (120 customers)",
                     f"wait_for_model fails at once (no sensor timeout): {rejected.value}", home=project.home,
                     kept="no predictions; the summary's first line names the rejection")


# ================================================================ pages (security)
HOSTILE_SUMMARY = """# Run summary: FAILED

**ingest: header ['a'] of customers.csv**

- [plain](https://evil.example/a) [titled](https://evil.example/b "title") <https://evil.example/c>
- [reference][ref] [protocol-relative](//evil.example/d) [script](javascript:alert(1))
- ![beacon](https://evil.example/beacon.png "t") ![local](roc_curve.png) <img src="https://evil.example/x.png">
- [the run's metrics](metrics.json) [predictions](predictions/predictions.csv)

[ref]: https://evil.example/e "titled reference"
"""


def test_run_summary_links_and_images_cannot_leave_the_run(bad_input):
    from batchops.ui.pages import summary_html

    html = summary_html("provider_a__propensity_model", "manual__1", HOSTILE_SUMMARY)
    assert 'href="https:' not in html and 'href="//' not in html and "evil.example" not in re.findall(r"<[^>]*>", html)
    assert not re.search(r"(href|src)=\"(?!/batchops/files/provider_a__propensity_model/manual__1/)", html), html
    assert "<img" not in html and "javascript:" not in re.sub(r">[^<]*<", "><", html)
    assert 'href="/batchops/files/provider_a__propensity_model/manual__1/metrics.json"' in html
    assert 'href="/batchops/files/provider_a__propensity_model/manual__1/predictions/predictions.csv"' in html
    bad_input.record("security", "run_summary.md with titled, auto, reference, //host and javascript: links and "
                     "remote images", "only links to the run's own files are made (markdown-it's link validation); "
                     "no image is rendered; the pages send Content-Security-Policy default-src 'none'; img-src 'self'",
                     kept="nothing loaded from elsewhere")


def test_a_last_event_longer_than_the_log_tail_is_named(tmp_path, bad_input):
    from batchops.ui.pages import render_run_page

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps({"run_id": "manual__1", "snapshot_date": "2026-02-01"}))
    (folder / "logs.jsonl").write_text(json.dumps({"stage": "score", "event": "huge", "error": "x" * (300 << 10)})
                                       + "\n")
    page = render_run_page("provider_a__propensity_model", "manual__1", folder)
    assert "logs.jsonl: the last event is longer than the 262,144 bytes the page reads" in page
    assert "download logs.jsonl to read it" in page
    bad_input.record("output", "a last log event over 256 KB", "the run tab says: logs.jsonl: the last event is longer "
                     "than the 262,144 bytes the page reads (...); download logs.jsonl to read it",
                     kept="log untouched")


def test_an_artifact_of_an_unexpected_shape_is_named(tmp_path, bad_input):
    from batchops.ui.pages import render_run_page

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps({"run_id": "manual__1", "snapshot_date": "2026-02-01"}))
    (folder / "metrics.json").write_text(json.dumps({"model_id": "m", "promotion": "approved"}))
    (folder / "dq_report.json").write_text(json.dumps({"checks": "none"}))
    page = render_run_page("provider_a__propensity_model", "manual__1", folder)
    assert "metrics.json has an unexpected shape (AttributeError" in page
    assert "dq_report.json has an unexpected shape" in page
    bad_input.record("output", "metrics.json and dq_report.json of an unexpected shape",
                     "the run tab names each file: 'metrics.json has an unexpected shape (AttributeError: ...); "
                     "not shown'", kept="the rest of the page renders")


@pytest.mark.parametrize("link", ["run folder", "DAG folder"])
def test_a_linked_run_or_dag_folder_is_never_read(tmp_path, link, bad_input):
    from batchops.ui import safe_files
    from batchops.ui.routes import run_folders

    runs = tmp_path / "runs"
    real = runs / "provider_a__propensity_model" / "manual__1"
    real.mkdir(parents=True)
    (real / "plan.json").write_text(json.dumps({"run_id": "manual__1", "snapshot_date": "2026-02-01"}))
    if link == "run folder":
        (runs / "provider_a__propensity_model" / "manual__alias").symlink_to(real, target_is_directory=True)
        path = safe_files.rooted(runs, "provider_a__propensity_model", "manual__alias")
    else:
        (runs / "provider_b__propensity_model").symlink_to(real.parent, target_is_directory=True)
        path = safe_files.rooted(runs, "provider_b__propensity_model", "manual__1")
        assert run_folders(runs / "provider_b__propensity_model") == []  # the overview lists nothing under it
    with pytest.raises(safe_files.UnsafeArtifactError) as refused:
        safe_files.read_json(path, "plan.json")
    assert "is a symbolic link or not a folder" in str(refused.value)
    assert safe_files.read_json(safe_files.rooted(runs, "provider_a__propensity_model", "manual__1"), "plan.json")
    bad_input.record("security", f"a symlinked {link} inside runs/", f"refused: {refused.value} (the run tab and "
                     "/files/ answer 404; the overview skips it)", kept="nothing served under another DAG's name")
