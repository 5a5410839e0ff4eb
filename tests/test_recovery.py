"""Recovery after a killed attempt, without Airflow: crash points really SIGKILL the process, the
warehouse keeps only committed work, and the next attempt logs what happened and removes the dead
attempt's temp files (and only those)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import duckdb

from batchops.artifacts import write_json_atomic
from batchops.owner import HOST, owner_tag
from batchops.recovery import begin_attempt, remove_leftovers
from batchops.runlog import RunLogger, read_events
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.validate import validate
from batchops.storage.warehouse import warehouse_path

from conftest import REPO, make_drop, run_context


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def load_killed_at(project, point: str) -> None:
    """Run load in its own process with BATCHOPS_CRASH_AT=point and check that it died of SIGKILL."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from pathlib import Path
        from batchops.settings import Settings
        from batchops.stages.load import load
        from conftest import run_context
        load(run_context(Settings.from_env(default_home=Path({str(project.home)!r}), env={{}})))
    """)
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "BATCHOPS_CRASH_AT": point},
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


def test_only_a_dead_process_s_temp_files_are_removed_and_a_cut_swap_is_undone(tmp_path):
    dead = dead_pid()
    stale_file = tmp_path / f".metrics.json.{HOST}-{dead}.abcd1234.part"
    stale_dir = tmp_path / "sub" / f".predictions.{HOST}-{dead}.zz_99xyz"
    duckdb_temp = tmp_path / f"tmp_.customers.parquet.{HOST}-{dead}.q1w2e3r4.part"
    live_file = tmp_path / f".dq_report.json.{owner_tag()}.abcd1234.part"
    retired = tmp_path / ".model.old"  # a swap cut between its two renames: model/ is gone
    for path in (stale_file, duckdb_temp, live_file):
        path.write_text("partial")
    stale_dir.mkdir(parents=True)
    retired.mkdir()
    (retired / "model.pkl").write_bytes(b"previous model")
    done = remove_leftovers([tmp_path])
    assert not stale_file.exists() and not stale_dir.exists() and not duckdb_temp.exists()
    assert live_file.exists()  # this process is alive: maybe still writing it
    assert (tmp_path / "model" / "model.pkl").read_bytes() == b"previous model" and not retired.exists()
    assert len(done) == 4


def test_next_attempt_logs_the_interrupted_one(tmp_path):
    log = tmp_path / "logs.jsonl"
    killed = RunLogger(log, "load")
    killed.event("stage_started", try_number=1)
    lines = log.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {dead_pid()}')
    log.write_text(lines + '{"torn line')  # what kill -9 in the middle of a write leaves
    begin_attempt(RunLogger(log, "load"), 2)
    events = read_events(log)
    assert events[-1]["event"] == "previous_attempt_interrupted" and events[-1]["earlier_try"] == 1


def test_crash_point_kills_with_sigkill_once_per_run(tmp_path):
    script = textwrap.dedent(f"""
        from pathlib import Path
        from batchops.faults import crash_point
        crash_point("load.in_transaction", "dag_x", Path({str(tmp_path)!r}))
        print("survived")
    """)
    env = {**os.environ, "BATCHOPS_CRASH_AT": "dag_x.load.in_transaction"}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert first.returncode == -signal.SIGKILL and "survived" not in first.stdout
    assert second.returncode == 0 and "survived" in second.stdout


def test_load_killed_inside_its_transaction_leaves_the_warehouse_as_before(project, bad_input):
    make_drop(project)
    ctx = run_context(project)
    ingest(ctx)
    assert validate(ctx)["passed"]
    load_killed_at(project, "load.in_transaction")
    with duckdb.connect(str(warehouse_path(project, "provider_a")), read_only=True) as con:
        # not even the CREATE TABLE of the first load was committed
        assert con.execute("SELECT count(*) FROM information_schema.tables").fetchone()[0] == 0
    write_json_atomic(ctx.run_dir / "unrelated.json", {"ok": True})  # a live writer's files are untouched
    begin_attempt(ctx.logger("load"), 2)
    rows = load(ctx)["rows"]
    with duckdb.connect(str(warehouse_path(project, "provider_a")), read_only=True) as con:
        stored = {table: con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table}").fetchone()
                  for table, key in (("customers", "customer_id"), ("transactions", "transaction_id"))}
    assert stored == {table: (count, count) for table, count in rows.items()}
    load_events = [e["event"] for e in read_events(ctx.run_dir / "logs.jsonl") if e["stage"] == "load"]
    assert load_events[:2] == ["load_started", "previous_attempt_interrupted"], load_events
    bad_input.record("faults", "kill -9 of load inside its transaction (stage level)",
                     f"nothing committed; the next attempt logs previous_attempt_interrupted and loads {rows}",
                     kept="warehouse exactly as a clean load")


def test_every_stage_tolerates_a_duplicate_execution(project, bad_input):
    """At-least-once delivery (a Celery task re-sent after a scheduler crash): the same run's whole
    chain executed twice at the same time leaves exactly the rows and artifacts of one execution."""
    from concurrent.futures import ThreadPoolExecutor

    from batchops.stages.features import build_features
    from batchops.stages.score import score
    from batchops.stages.train import train

    make_drop(project, customers=500)
    ctx = run_context(project)

    def chain(_):
        ingest(ctx)
        validate(ctx)
        load(ctx)
        build_features(ctx)
        model = train(ctx)["model_id"]
        return model, score(ctx)["rows"]

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(chain, range(2)))
    assert outcomes[0] == outcomes[1] and outcomes[0][1] == 500
    with duckdb.connect(str(warehouse_path(project, "provider_a")), read_only=True) as con:
        def one(sql):
            return con.execute(sql).fetchone()

        assert one("SELECT count(*), count(DISTINCT customer_id) FROM customers") == (500, 500)
        assert one("SELECT count(*) = count(DISTINCT transaction_id) FROM transactions") == (True,)
        assert one("SELECT count(*) = count(DISTINCT (customer_id, snapshot_date, purpose)) FROM features") == (True,)
        assert one("SELECT count(*), count(DISTINCT customer_id) FROM predictions") == (500, 500)
        assert one("SELECT count(*) FROM model_registry") == (1,)  # the same run's model, registered once
        assert one("SELECT count(*) FROM load_audit") == (2,)  # one audit row per entity, not per execution
    assert [p.name for p in ctx.run_dir.rglob(".*") if ".part" in p.name or ".predictions." in p.name] == []
    bad_input.record("faults", "the same run's tasks executed twice at once (at-least-once delivery)",
                     f"both executions finish with the same model and {outcomes[0][1]} predictions",
                     kept="one row per key in every table; one registry entry")


def test_load_killed_after_its_commit_keeps_the_rows_in_the_wal(project, bad_input):
    """DuckDB keeps a commit in <file>.wal until a checkpoint; the next open replays it. A process
    killed right after COMMIT must therefore lose nothing (and nothing may ever delete the .wal)."""
    make_drop(project)
    ctx = run_context(project)
    ingest(ctx)
    assert validate(ctx)["passed"]
    load_killed_at(project, "load.committed")
    wal = warehouse_path(project, "provider_a").with_name("provider_a.duckdb.wal")
    assert wal.exists() and wal.stat().st_size > 0  # the commit is only in the WAL
    expected = sum(1 for _ in (project.data_dir / "provider_a" / "2026-02-01" / "transactions.csv").open()) - 1
    with duckdb.connect(str(warehouse_path(project, "provider_a"))) as con:  # replays the WAL
        assert con.execute("SELECT count(*), count(DISTINCT transaction_id) FROM transactions").fetchone() == (
            expected, expected)
        assert con.execute("SELECT count(*) FROM customers").fetchone() == (600,)
    bad_input.record("faults", "kill -9 of load right after COMMIT, before DuckDB's checkpoint",
                     f"the commit is in provider_a.duckdb.wal and is replayed on the next open: {expected} "
                     "transactions and 600 customers", kept="no committed row lost")
