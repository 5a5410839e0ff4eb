"""Run by test_disk_faults.py inside a private mount namespace (`unshare --user --map-root-user --mount`):
runs/ becomes a small tmpfs that is first filled up, then made read-only, while stages write to it.

Prints one JSON object: what each stage raised and whether the earlier artifacts survived.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batchops.errors import BatchOpsError  # noqa: E402
from batchops.settings import Settings  # noqa: E402
from batchops.stages.ingest import ingest  # noqa: E402
from batchops.stages.load import load  # noqa: E402
from batchops.stages.validate import validate  # noqa: E402
from batchops.storage.warehouse import open_warehouse  # noqa: E402

from conftest import make_drop, run_context  # noqa: E402


def artifacts(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def attempt(stage, ctx) -> str:
    try:
        stage(ctx)
    except BatchOpsError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system of folder to the last block; returns the filler file to delete later."""
    filler = folder / "filler"
    try:
        with filler.open("wb", buffering=0) as handle:
            while True:
                handle.write(b"\0" * 4096)
    except OSError:
        pass
    return filler


def warehouse_tables(settings: Settings) -> dict[str, list]:
    with open_warehouse(settings, "provider_a") as warehouse:
        tables = [row[0] for row in warehouse.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {table: list(warehouse.execute(f'SELECT count(*), sum(hash(t)) FROM "{table}" t').fetchone())
                for table in sorted(tables)}


def main_warehouse(home: Path) -> None:
    """warehouse/ on a small tmpfs: one snapshot loads, then the disk fills and the next load fails."""
    from datetime import date

    settings = Settings.from_env(default_home=home, env={})
    mount_tmpfs(settings.warehouse_dir, "24m")
    make_drop(settings, "provider_a", customers=300)
    first = run_context(settings)
    ingest(first)
    load(first)
    before = warehouse_tables(settings)
    make_drop(settings, "provider_a", date(2026, 2, 2), customers=3000, seed=5)
    second = run_context(settings, snapshot=date(2026, 2, 2), run_id="manual__second")
    ingest(second)
    filler = fill(settings.warehouse_dir)
    full = attempt(load, second)
    filler.unlink()
    after = warehouse_tables(settings)
    print(json.dumps({"full": full, "before": before, "after": after}))


def main(home: Path) -> None:
    settings = Settings.from_env(default_home=home, env={})
    mount_tmpfs(settings.runs_dir, "4m")
    make_drop(settings, "provider_a", customers=300)
    ctx = run_context(settings)
    ingest(ctx)
    validate(ctx)
    before = artifacts(ctx.run_dir)

    filler = fill(settings.runs_dir)
    full = {"ingest": attempt(ingest, ctx), "validate": attempt(validate, ctx)}
    after_full = artifacts(ctx.run_dir)
    filler.unlink()

    subprocess.run(["mount", "-o", "remount,ro", str(settings.runs_dir)], check=True)
    read_only = {"validate": attempt(validate, ctx)}
    after_read_only = artifacts(ctx.run_dir)
    print(json.dumps({"before": before, "full": full, "after_full": after_full, "read_only": read_only,
                      "after_read_only": after_read_only}))


if __name__ == "__main__":
    (main_warehouse if sys.argv[2:] == ["warehouse"] else main)(Path(sys.argv[1]))
