"""Compaction: prune gives the disk back (DuckDB never shrinks its file), with the same rows, and a kill at
any step leaves a warehouse with every row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import duckdb
import pytest

from batchops.storage.backup import read_fingerprints
from batchops.storage.compact import compact
from batchops.storage.warehouse import open_warehouse, warehouse_path

PROVIDER = "provider_a"


def warehouse_with_deleted_rows(settings) -> dict:
    """A warehouse whose predictions lost most of their rows (as retention does); its fingerprints after."""
    path = warehouse_path(settings, PROVIDER)
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE customers (customer_id VARCHAR PRIMARY KEY, region VARCHAR)")
        con.execute("INSERT INTO customers SELECT 'C' || lpad(i::VARCHAR, 7, '0'), 'north' FROM range(50000) r(i)")
        con.execute("CREATE TABLE predictions (customer_id VARCHAR, score DOUBLE, snapshot_date DATE)")
        con.execute("INSERT INTO predictions SELECT 'C' || lpad((i % 50000)::VARCHAR, 7, '0'), random(), "
                    "DATE '2026-01-01' + (i // 50000)::INTEGER FROM range(1500000) r(i)")
        con.execute("CHECKPOINT")
        con.execute("DELETE FROM predictions WHERE snapshot_date < DATE '2026-01-25'")
    return read_fingerprints(path)


def test_compaction_gives_the_free_space_back_with_the_same_rows(project):
    expected = warehouse_with_deleted_rows(project)
    path = warehouse_path(project, PROVIDER)
    skipped = compact(project, PROVIDER, min_free_share=0.99)  # below the share asked for: left as it is
    assert not skipped["compacted"] and path.stat().st_size == skipped["bytes_before"]
    done = compact(project, PROVIDER, min_free_share=0.2)
    assert done["compacted"] and done["free_before"] >= 0.2 * done["bytes_before"]
    assert done["bytes_after"] == path.stat().st_size < 0.5 * done["bytes_before"]
    assert read_fingerprints(path) == expected
    leftovers = [p.name for p in path.parent.iterdir() if p.name != path.name and not p.name.endswith(".lock")
                 and p.name != "tmp"]
    assert leftovers == []
    with open_warehouse(project, PROVIDER) as warehouse:  # a run writes to it as before, constraints included
        warehouse.execute("INSERT INTO predictions VALUES ('C0000001', 0.5, DATE '2026-02-01')")
        with pytest.raises(duckdb.ConstraintException):
            warehouse.duckdb.execute("INSERT INTO customers VALUES ('C0000001', 'south')")


@pytest.mark.parametrize("point", ["compact.copied", "swap.journal_written", "swap.old_kept", "swap.renamed",
                                   "compact.swapped"])
def test_a_kill_at_each_step_of_compaction_leaves_every_row(project, point, bad_input):
    expected = warehouse_with_deleted_rows(project)
    path = warehouse_path(project, PROVIDER)
    script = ("import sys; from batchops.settings import Settings; from batchops.storage.compact import compact; "
              f"compact(Settings.from_env(default_home=sys.argv[1], env={{}}), {PROVIDER!r}, 0.0)")
    killed = subprocess.run([sys.executable, "-c", script, str(project.home)], capture_output=True, text=True,
                            env={**os.environ, "BATCHOPS_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert path.exists()  # the name always holds the old file or the new one
    done = compact(project, PROVIDER, min_free_share=0.0)  # the next one completes the swap and cleans up
    assert done["compacted"] and read_fingerprints(path) == expected
    leftovers = [p.name for p in path.parent.iterdir() if p.name != path.name and not p.name.endswith(".lock")
                 and p.name != "tmp"]
    assert leftovers == []
    bad_input.record("faults", f"prune's compaction killed (SIGKILL) at {point}",
                     "the warehouse name always holds the old file or the verified copy; the next open completes "
                     "the swap, the next compaction removes what the killed one left",
                     kept="every row (row counts and checksums of every table as before)")
