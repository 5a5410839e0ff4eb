"""A full disk and a read-only runs/ folder: the stage fails with a clear message and every artifact
written before is left exactly as it was (logs.jsonl only grows). runs/ is a small tmpfs mounted in a
private mount namespace (unshare), so the test needs no privileges and touches nothing else."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SCENARIO = Path(__file__).with_name("disk_fault_scenario.py")


def run_scenario(home: Path, *mode: str) -> dict:
    for folder in ("configs", "pipelines", "sql"):
        shutil.copytree(REPO / "include" / folder, home / "include" / folder)
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(SCENARIO),
                           str(home), *mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def unchanged(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Artifacts whose bytes changed (logs.jsonl is append-only: a failed attempt adds to it)."""
    return [name for name, digest in before.items() if name != "logs.jsonl" and after.get(name) != digest]


def test_full_disk_and_read_only_runs_folder_fail_clearly_and_keep_earlier_artifacts(tmp_path, bad_input):
    result = run_scenario(tmp_path / "home")
    assert "dq_report.json" in result["before"] and "staging/customers.parquet" in result["before"]
    for stage, message in result["full"].items():
        assert message.startswith("ArtifactWriteError"), (stage, message)
        assert "disk is full" in message or "No space left" in message, (stage, message)
    assert "mounted read-only" in result["read_only"]["validate"], result["read_only"]
    assert unchanged(result["before"], result["after_full"]) == []
    assert unchanged(result["before"], result["after_read_only"]) == []
    leftovers = [name for name in result["after_full"] if Path(name).name.startswith(".")]
    assert leftovers == [], leftovers
    bad_input.record("faults", "disk full while writing runs/", f"ingest: {result['full']['ingest']} -- "
                     f"validate: {result['full']['validate']}", kept="every earlier artifact byte-identical")
    bad_input.record("faults", "runs/ not writable (read-only)", result["read_only"]["validate"],
                           kept="every earlier artifact byte-identical")


def test_full_warehouse_disk_names_the_folder_to_free_and_keeps_stored_rows(tmp_path, bad_input):
    result = run_scenario(tmp_path / "home", "warehouse")
    assert result["full"].startswith("WarehouseError: the disk holding the warehouse"), result["full"]
    assert "free space in" in result["full"] and "stored data is unchanged" in result["full"]
    assert result["after"] == result["before"]
    bad_input.record("faults", "warehouse disk full during load", result["full"].replace(str(tmp_path), "$TMP"),
                     kept="every warehouse table unchanged (count and content hash)")
