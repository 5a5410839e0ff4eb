"""ingest, validate and load on small generated drops, without Airflow."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from batchops.errors import InputDataError
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.validate import dq_verdict, validate
from batchops.storage.warehouse import warehouse_path

from conftest import VISIBLE_ON, make_drop, run_context


def ingest_and_validate(ctx):
    ingest(ctx)
    return validate(ctx)


def warehouse_counts(settings, provider_id="provider_a"):
    """Per entity: the rows a run of each loaded drop reads, and every row version stored."""
    with duckdb.connect(str(warehouse_path(settings, provider_id)), read_only=True) as con:
        loaded = [row[0] for row in con.execute("SELECT DISTINCT snapshot_date FROM load_audit ORDER BY 1").fetchall()]
        counts = {table: {str(day): con.execute(f"SELECT count(*) FROM {table} WHERE {VISIBLE_ON}", [day]).fetchone()[0]
                          for day in loaded} for table in ("customers", "transactions")}
        counts["stored"] = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                            for table in ("customers", "transactions")}
    return counts


def test_ingest_maps_provider_b_layout_to_canonical_columns(project):
    make_drop(project, "provider_b")
    ctx = run_context(project, "provider_b")
    report = ingest(ctx)
    with duckdb.connect() as con:
        columns = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)",
                                             [str(ctx.staging_dir / "transactions.parquet")]).fetchall()]
        first_date = con.execute("SELECT min(txn_date) FROM read_parquet(?)",
                                 [str(ctx.staging_dir / "transactions.parquet")]).fetchone()[0]
    assert columns == ["transaction_id", "customer_id", "txn_date", "amount", "channel"]
    assert isinstance(first_date, date)  # "16/03/2025" parsed with the provider's date format
    assert report["entities"]["customers"]["rows"] == 600
    assert len(report["entities"]["transactions"]["sha256"]) == 64
    assert report["entities"]["transactions"]["rejected_rows"] == 0


def test_clean_drop_passes_every_check(project):
    make_drop(project)
    report = ingest_and_validate(run_context(project))
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert (run_context(project).run_dir / "dq_report.md").read_text().startswith("# Data quality: PASSED")


@pytest.mark.parametrize(("defect", "failing_check"), [
    ("duplicate_keys", ("transactions", "transaction_id", "unique_key")),
    ("missing_column", ("transactions", "amount", "required_column")),
    ("null_heavy", ("customers", "age", "missingness")),
])
def test_planted_defect_fails_its_check(project, defect, failing_check):
    make_drop(project, defect=defect)
    ctx = run_context(project)
    report = ingest_and_validate(ctx)
    failed = {(c["entity"], c["column"], c["check"]) for c in report["checks"] if not c["passed"]}
    assert failing_check in failed
    passed, reason = dq_verdict(ctx)
    assert not passed and failing_check[2] in reason


def test_unparsable_values_are_counted_not_dropped_silently(project):
    paths = make_drop(project)
    lines = paths["transactions"].read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[3], "12,5x")  # broken amount (and column count)
    lines[6] = ",".join(lines[6].split(",")[:2] + ["2026-13-45"] + lines[6].split(",")[3:])
    paths["transactions"].write_text("\n".join(lines) + "\n")
    ctx = run_context(project)
    report = ingest_and_validate(ctx)
    ingest_report = (ctx.run_dir / "ingest_report.json").read_text()
    assert "2026-13-45" in ingest_report
    parse_check = next(c for c in report["checks"] if c["entity"] == "transactions" and c["check"] == "parse_errors")
    assert not parse_check["passed"] and parse_check["observed"] > 0


def test_missing_landing_file_names_the_file(project):
    ctx = run_context(project)
    with pytest.raises(InputDataError, match=r"customers.csv does not exist"):
        ingest(ctx)


def test_wrong_delimiter_is_explained(project):
    paths = make_drop(project, "provider_b")
    paths["customers"].write_text(paths["customers"].read_text().replace(";", ","))
    with pytest.raises(InputDataError, match=r"delimiter ';'"):
        ingest(run_context(project, "provider_b"))


def test_load_three_times_keeps_the_same_rows(project):
    make_drop(project)
    ctx = run_context(project)
    ingest_and_validate(ctx)
    first = load(ctx)
    stored = warehouse_counts(project)
    for _ in range(2):
        assert load(ctx)["rows"] == first["rows"]
        assert warehouse_counts(project) == stored
    counts = warehouse_counts(project)
    assert counts["customers"] == {"2026-02-01": 600}
    assert counts["transactions"] == {"2026-02-01": first["rows"]["transactions"]}


def test_loading_another_snapshot_leaves_the_first_untouched(project):
    for snapshot, run_id in ((date(2026, 2, 1), "run_1"), (date(2026, 2, 2), "run_2")):
        make_drop(project, snapshot=snapshot, seed=snapshot.day)
        ctx = run_context(project, snapshot=snapshot, run_id=run_id)
        ingest_and_validate(ctx)
        load(ctx)
    before = warehouse_counts(project)
    ctx = run_context(project, snapshot=date(2026, 2, 2), run_id="run_2")
    load(ctx)
    assert warehouse_counts(project) == before
    assert set(before["customers"]) == {"2026-02-01", "2026-02-02"}


def test_failed_load_changes_nothing(project, monkeypatch):
    make_drop(project)
    ctx = run_context(project)
    ingest_and_validate(ctx)
    load(ctx)
    before = warehouse_counts(project)
    (ctx.staging_dir / "transactions.parquet").write_bytes(b"not parquet")  # customers loads, transactions fails
    with pytest.raises(Exception, match="transactions"):
        load(ctx)
    assert warehouse_counts(project) == before


@pytest.mark.parametrize("keys", [
    ["A1", "a1", "B2", "B2", "C3", " c3", "C3", "D4", None, None],  # both kinds, and one group with both
    ["K1", "K2", "K3"],  # neither
    ["X", "X", "X", "y", "Y", "Y"],
])
def test_one_pass_over_a_key_finds_what_the_two_checks_found(tmp_path, keys):
    """key_groups (one GROUP BY over the folded spelling) against the two queries it replaces."""
    from batchops.stages.validate import key_groups, near_duplicate_keys

    staging = tmp_path / "keys.parquet"
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t AS SELECT unnest($keys::VARCHAR[]) AS k", {"keys": keys})
        con.execute(f"COPY t TO '{staging}' (FORMAT parquet)")
        exact = con.execute(
            "SELECT count(*), coalesce(sum(n), 0), list(k ORDER BY k)[1:5] FROM (SELECT k, count(*) AS n FROM "
            "read_parquet($staging) WHERE k IS NOT NULL GROUP BY k HAVING count(*) > 1)",
            {"staging": str(staging)}).fetchone()
        near, duplicates = key_groups(con, staging, "k")
        assert near == near_duplicate_keys(con, staging, "k")
        assert duplicates == (exact[0], exact[1], exact[2] or [])
