"""A damaged warehouse is never the end: backup/restore, and a rebuild from the landing drops that gives
back the same tables (load_id/loaded_at excepted: they name the rebuild)."""

from __future__ import annotations

import os
from datetime import date

import duckdb
import pytest

from batchops.cli import main
from batchops.errors import WarehouseDamagedError
from batchops.stages.features import build_features
from batchops.stages.ingest import ingest
from batchops.stages.load import load
from batchops.stages.plan import write_plan
from batchops.stages.score import score
from batchops.stages.train import train
from batchops.stages.validate import validate
from batchops.storage.backup import list_backups
from batchops.storage.warehouse import open_warehouse, warehouse_path

from conftest import make_drop, run_context

LOAD_METADATA = {"load_id", "loaded_at"}


def tables(settings, provider="provider_a") -> dict[str, tuple]:
    """Every table's row count and content hash, without the columns that name the loading run."""
    with duckdb.connect(str(warehouse_path(settings, provider)), read_only=True) as con:
        names = [row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        state = {}
        for name in sorted(names):
            columns = [row[0] for row in con.execute(f'DESCRIBE "{name}"').fetchall() if row[0] not in LOAD_METADATA]
            listed = ", ".join(f'"{c}"' for c in columns)
            state[name] = con.execute(f'SELECT count(*), sum(hash(t)) FROM (SELECT {listed} FROM "{name}") t').fetchone()
    return state


def plan(ctx) -> None:
    write_plan(ctx, "conf.snapshot_date", {})


@pytest.fixture
def history(project):
    """provider_a: a trained and scored drop, a scoring-only drop, and a drop the DQ gate refused."""
    make_drop(project, "provider_a", date(2026, 2, 1), customers=500)
    first = run_context(project, snapshot=date(2026, 2, 1), run_id="manual__first")
    for stage in (plan, ingest, validate, load, build_features, train, score):
        stage(first)
    make_drop(project, "provider_a", date(2026, 2, 2), customers=500, seed=8)
    second = run_context(project, "provider_a", "propensity_scoring", date(2026, 2, 2), "manual__second")
    for stage in (plan, ingest, validate, load, build_features, score):
        stage(second)
    make_drop(project, "provider_a", date(2026, 2, 3), customers=300, defect="duplicate_keys")
    blocked = run_context(project, snapshot=date(2026, 2, 3), run_id="manual__blocked")
    plan(blocked)
    ingest(blocked)
    assert not validate(blocked)["passed"]
    return project


def truncate(path):
    os.truncate(path, path.stat().st_size // 3)


def test_truncated_warehouse_says_restore_or_rebuild(history, bad_input):
    truncate(warehouse_path(history, "provider_a"))
    with pytest.raises(WarehouseDamagedError) as damaged, open_warehouse(history, "provider_a") as warehouse:
        warehouse.execute("SELECT * FROM customers")  # the lost blocks are found when read
    message = str(damaged.value)
    assert "provider_a.duckdb is damaged" in message
    assert "python -m batchops restore --provider provider_a" in message
    assert "python -m batchops rebuild --provider provider_a" in message
    bad_input.record("faults", "truncated warehouse file", message, home=history.home,
                     kept="landing drops, run folders and models untouched; rebuild/restore give the tables back")


def test_rebuild_from_the_landing_drops_gives_back_the_same_tables(history, capsys, bad_input):
    original = tables(history)
    assert {"customers", "transactions", "features", "labels", "model_registry", "predictions", "load_audit"} <= set(original)
    truncate(warehouse_path(history, "provider_a"))
    assert main(["--home", str(history.home), "rebuild", "--provider", "provider_a"]) == 0
    printed = capsys.readouterr().out
    assert "from 2 of 3 landing drops" in printed and "1 model(s) re-registered" in printed
    assert "2026-02-03: not loaded, data quality fails" in printed
    assert tables(history) == original
    kept = list(history.warehouse_dir.glob("provider_a.duckdb.replaced-*"))
    assert len(kept) == 1  # the damaged file is kept aside, never deleted
    rescored = run_context(history, "provider_a", "propensity_scoring", date(2026, 2, 2), "manual__after")
    assert score(rescored)["rows"] == 500  # the re-registered model loads and scores
    bad_input.record("faults", "truncated warehouse, then `python -m batchops rebuild`",
                     "every table equal to the original (count and content hash; load_id/loaded_at name the "
                     f"rebuild): {printed.splitlines()[-1]}".replace(str(history.home), "$BATCHOPS_HOME"),
                     kept="the damaged file kept as provider_a.duckdb.replaced-<time>")


def test_rebuild_refuses_when_drops_it_loaded_are_gone_from_landing(history, capsys, bad_input):
    """An operator archives old drops to free the disk; a later rebuild from what is left would silently lose
    their rows, so it is refused (nothing built, nothing replaced) unless asked for knowingly."""
    import shutil

    original = tables(history)
    shutil.rmtree(history.data_dir / "provider_a" / "2026-02-02")
    assert main(["--home", str(history.home), "rebuild", "--provider", "provider_a"]) == 1
    error = capsys.readouterr().err
    assert "1 drop(s) of provider_a that the warehouse loaded are no longer under" in error and "2026-02-02" in error
    assert "python -m batchops restore --provider provider_a" in error and "--allow-missing-drops" in error
    assert tables(history) == original
    assert not list(history.warehouse_dir.glob("provider_a.duckdb.replaced-*"))
    bad_input.record("data", "`rebuild` after a loaded landing drop was archived or deleted", error,
                     home=history.home, kept="warehouse unchanged, nothing built or replaced")
    # asked for knowingly: rebuilt from the drops left, the gone drop's rows are not there and it says so
    assert main(["--home", str(history.home), "rebuild", "--provider", "provider_a", "--allow-missing-drops"]) == 0
    printed = capsys.readouterr().out
    assert "2026-02-02: loaded before, landing drop gone: left out" in printed
    assert "1 loaded before and gone from the landing folder" in printed
    with duckdb.connect(str(warehouse_path(history, "provider_a")), read_only=True) as con:
        assert con.execute("SELECT list(DISTINCT snapshot_date ORDER BY snapshot_date) FROM load_audit").fetchone()[0] \
            == [date(2026, 2, 1)]


def test_a_damaged_file_cannot_hide_an_archived_drop_from_rebuild(history, capsys):
    """The load record of an empty (or unreadable) file says nothing; the run folders still say which drops
    features were built from, so the archived one stops the rebuild all the same."""
    (history.data_dir / "provider_a" / "2026-02-02").rename(history.data_dir / "provider_a" / "2026-02-02.archived")
    warehouse_path(history, "provider_a").write_bytes(b"")
    assert main(["--home", str(history.home), "rebuild", "--provider", "provider_a"]) == 1
    captured = capsys.readouterr()
    assert "load record cannot be read" in captured.out
    assert "1 drop(s) of provider_a that the warehouse loaded are no longer under" in captured.err
    assert "2026-02-02" in captured.err
    assert warehouse_path(history, "provider_a").stat().st_size == 0  # nothing swapped in
    assert not list(history.warehouse_dir.glob("provider_a.duckdb.replaced-*"))


def test_backup_then_restore_after_damage(history, capsys):
    original = tables(history)
    assert main(["--home", str(history.home), "backup", "--provider", "provider_a", "--keep", "2"]) == 0
    for _ in range(2):
        assert main(["--home", str(history.home), "backup", "--provider", "provider_a", "--keep", "2"]) == 0
    assert len(list_backups(history, "provider_a")) == 2  # retention
    with warehouse_path(history, "provider_a").open("r+b") as damaged:  # overwrite the header
        damaged.write(os.urandom(8192))
    assert main(["--home", str(history.home), "restore", "--provider", "provider_a"]) == 0
    assert tables(history) == original
    with duckdb.connect(str(warehouse_path(history, "provider_a")), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT load_id) FROM customers").fetchone()[0] == 2  # exact copy


def test_restore_refuses_a_damaged_backup_and_keeps_the_warehouse(history, capsys, tmp_path):
    before = tables(history)
    broken = tmp_path / "provider_a-20260101T000000Z.duckdb"
    broken.write_bytes(os.urandom(100_000))
    assert main(["--home", str(history.home), "restore", "--provider", "provider_a", "--backup", str(broken)]) == 1
    assert "has no manifest" in capsys.readouterr().err  # nothing vouches for it
    assert tables(history) == before


def test_rebuild_without_drops_says_where_it_looked(project, capsys):
    assert main(["--home", str(project.home), "rebuild", "--provider", "provider_b"]) == 1
    error = capsys.readouterr().err
    assert "no landing drops of provider_b under" in error and "{provider_id}/{snapshot_date}" in error
