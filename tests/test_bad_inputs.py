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
import shutil
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from batchops.artifacts import run_dir_for
from batchops.errors import InputDataError, ModelIntegrityError, RunParameterError
from batchops.models import find_approved_model, load_verified_model
from batchops.runcontext import check_run_conf, parse_snapshot_date, resolve_snapshot_date
from batchops.settings import Settings
from batchops.stages.features import build_features
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.score import score
from batchops.stages.train import train
from batchops.stages.validate import dq_verdict, validate
from batchops.storage.warehouse import open_warehouse, warehouse_path

from conftest import REPO, SNAPSHOT, delivered_earlier, make_drop, run_context

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
        if path.is_file() and "manual__bad" not in path.parts:
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
            assert con.execute("SELECT count(*) FROM customers WHERE snapshot_date = ?", [SNAPSHOT]).fetchone()[0] == 600
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
        assert con.execute("SELECT count(DISTINCT snapshot_date) FROM customers").fetchone()[0] == 2
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
