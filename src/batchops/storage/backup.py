"""Backups of a provider's warehouse, and restoring one, verified end to end.

`backup` checkpoints the warehouse under its lock, copies the file and writes a manifest beside the copy:
whose warehouse it is, the BatchOps and DuckDB versions, the file's size and sha256, and every table's row
count and content checksum, read from the copy (so a copy that went wrong on the way is never called a
backup). `restore` refuses a backup of another provider, without a manifest, or whose bytes, tables, counts
or checksums differ from the manifest, before anything is replaced; then it swaps the copy in (crash-safe,
storage.warehouse.swap_in) and keeps the replaced file beside the warehouse, never deleting it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchops import __version__
from batchops.artifacts import atomic_path, sha256_of_file, write_json_atomic
from batchops.errors import BatchOpsError
from batchops.faults import crash_point
from batchops.owner import owner_tag
from batchops.recovery import remove_dead_temp_files
from batchops.settings import Settings
from batchops.storage.warehouse import open_warehouse, swap_in, warehouse_lock, warehouse_path

BACKUP_NAME = re.compile(r"^(?P<provider>[a-z][a-z0-9_]*)-(?P<stamp>\d{8}T\d{6}\d*Z)\.duckdb$")
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1


class MaintenanceError(BatchOpsError):
    """A backup, restore, rebuild or prune could not be done; nothing was replaced or removed."""


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def manifest_path(backup_file: Path) -> Path:
    return backup_file.with_name(backup_file.name + MANIFEST_SUFFIX)


def incoming_path(target: Path) -> Path:
    """A temp name beside the warehouse for the file about to replace it (removed if its process dies)."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.{owner_tag()}.", suffix=".part", dir=target.parent)
    os.close(handle)
    return Path(name)


def fault_point_for(settings: Settings, provider_id: str):
    """Fault injection (batchops.faults) for the maintenance commands: markers under warehouse/tmp/<provider>."""
    markers = settings.warehouse_dir / "tmp" / provider_id
    return lambda point: crash_point(point, provider_id, markers)


def table_fingerprints(connection) -> dict[str, dict[str, Any]]:
    """Every table's row count and a checksum of its content (the sum of its rows' hashes)."""
    tables = [row[0] for row in connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
    found = {}
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        rows, checksum = connection.execute(f"SELECT count(*), sum(hash(t)) FROM {quoted} AS t").fetchone()
        found[table] = {"rows": int(rows), "checksum": str(checksum or 0)}
    return found


def read_fingerprints(path: Path) -> dict[str, dict[str, Any]]:
    """table_fingerprints of a DuckDB file opened read-only; refuses a file that is not a readable database."""
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            return table_fingerprints(connection)
    except Exception as exc:  # noqa: BLE001 - any failure means: not usable
        raise MaintenanceError(f"{path} is not a readable DuckDB database ({str(exc).splitlines()[0]})") from exc


def verify_copy(copy: Path, expected: dict[str, dict[str, Any]], what: str, consequence: str) -> dict[str, Any]:
    """fsync a copy of a warehouse and read every table of it back; MaintenanceError naming the tables whose
    rows or checksum differ from `expected` (the warehouse's table_fingerprints)."""
    with copy.open("rb+") as handle:
        os.fsync(handle.fileno())
    copied = read_fingerprints(copy)
    if copied != expected:
        differ = sorted(t for t in set(expected) | set(copied) if expected.get(t) != copied.get(t))
        raise MaintenanceError(f"{what} does not read back as the warehouse (tables {differ} differ); {consequence}")
    return copied


def verify_database(path: Path) -> list[str]:
    """The tables of a DuckDB file, every one read in full (a damaged block fails here, not after a swap)."""
    return list(read_fingerprints(path))


# ---------------------------------------------------------------- backup
def list_backups(settings: Settings, provider_id: str) -> list[Path]:
    """The provider's backup files, oldest first (with or without a manifest)."""
    folder = settings.backup_dir(provider_id)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (m := BACKUP_NAME.match(p.name)) and m["provider"] == provider_id)


def backup(settings: Settings, provider_id: str, keep: int | None = None) -> dict[str, Any]:
    """Copy the provider's warehouse, checkpointed and under its lock, to backups/<provider>/ with its manifest;
    then keep the newest `keep` backups (BATCHOPS_BACKUP_RETENTION), the new one always among them."""
    keep = settings.backup_retention if keep is None else keep
    if keep < 1:
        raise MaintenanceError(f"--keep {keep}: a backup run keeps at least the backup it makes; give 1 or more "
                               "(the number of newest backups to keep)")
    source = warehouse_path(settings, provider_id)
    if not source.exists():
        raise MaintenanceError(f"{source} does not exist: provider {provider_id} has no warehouse to back up")
    target = settings.backup_dir(provider_id) / f"{provider_id}-{stamp()}.duckdb"
    with open_warehouse(settings, provider_id) as warehouse:
        remove_dead_temp_files(target.parent, (f".{target.name.rsplit('-', 1)[0]}-",))  # killed earlier backups
        warehouse.execute("CHECKPOINT")  # the file alone now holds every committed change
        live = table_fingerprints(warehouse.duckdb)
        with atomic_path(target) as temp:
            shutil.copyfile(source, temp)
            copied = verify_copy(temp, live, f"the copy of {source}",
                                 "no backup was made. Check the disk of the backup folder")
            manifest = {"format": MANIFEST_FORMAT, "provider_id": provider_id, "batchops_version": __version__,
                        "duckdb_version": _duckdb_version(), "created_at": datetime.now(UTC).isoformat(),
                        "source": str(source), "file": target.name, "bytes": temp.stat().st_size,
                        "sha256": sha256_of_file(temp), "tables": copied}
            write_json_atomic(manifest_path(target), manifest)
    removed = []
    others = [b for b in list_backups(settings, provider_id) if b != target]
    for old in others[:max(len(others) - (keep - 1), 0)]:
        old.unlink(missing_ok=True)
        manifest_path(old).unlink(missing_ok=True)
        removed.append(old.name)
    return {"backup": str(target), "bytes": manifest["bytes"], "tables": list(copied), "removed": removed,
            "manifest": str(manifest_path(target))}


def _duckdb_version() -> str:
    import duckdb

    return duckdb.__version__


# ---------------------------------------------------------------- restore
def verify_backup(backup_file: Path, provider_id: str) -> dict[str, Any]:
    """The backup's manifest, after checking that the backup is this provider's and exactly what was backed
    up: size, sha256, tables, row counts and checksums. MaintenanceError (naming the difference) otherwise."""
    if not backup_file.is_file():
        raise MaintenanceError(f"{backup_file} is not a file; list the backups with "
                               f"python -m batchops restore --provider {provider_id} --list")
    manifest_file = manifest_path(backup_file)
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MaintenanceError(f"{backup_file} has no manifest ({manifest_file.name}): it was cut short or made by "
                               "an older BatchOps, and cannot be verified; restore another backup or rebuild from "
                               f"the landing drops (python -m batchops rebuild --provider {provider_id})") from None
    except ValueError as exc:
        raise MaintenanceError(f"{manifest_file} is not valid JSON ({exc}); the backup cannot be verified") from exc
    owner = manifest.get("provider_id") if isinstance(manifest, dict) else None
    if owner != provider_id:
        raise MaintenanceError(f"{backup_file} is a backup of {owner!r}, not of {provider_id!r}; restore one of "
                               f"{provider_id}'s own backups (--list shows them)")
    size = backup_file.stat().st_size
    if size != manifest.get("bytes"):
        raise MaintenanceError(f"{backup_file} is {size:,} bytes, its manifest says {manifest.get('bytes'):,}: the "
                               "file was truncated or changed after the backup; nothing was replaced")
    if sha256_of_file(backup_file) != manifest.get("sha256"):
        raise MaintenanceError(f"{backup_file}'s sha256 differs from its manifest: the file changed after the "
                               "backup; nothing was replaced")
    found = read_fingerprints(backup_file)
    expected = manifest.get("tables") or {}
    if found != expected:
        differ = sorted(t for t in set(found) | set(expected) if found.get(t) != expected.get(t))
        raise MaintenanceError(f"{backup_file}: tables {differ} differ from the manifest (rows or checksum); "
                               "nothing was replaced")
    return manifest


def restore(settings: Settings, provider_id: str, backup_file: Path | None = None) -> dict[str, Any]:
    """Swap a verified backup (default: the newest) in as the provider's warehouse, under its lock."""
    if backup_file is None:
        found = [b for b in list_backups(settings, provider_id) if manifest_path(b).is_file()]
        if not found:
            raise MaintenanceError(f"no verified backup of {provider_id} in {settings.backup_dir(provider_id)}; "
                                   f"rebuild it from the landing drops: python -m batchops rebuild --provider "
                                   f"{provider_id}")
        backup_file = found[-1]
    manifest = verify_backup(backup_file, provider_id)
    target = warehouse_path(settings, provider_id)
    fault = fault_point_for(settings, provider_id)
    with warehouse_lock(settings, provider_id):
        remove_dead_temp_files(target.parent, (f".{target.name}.",))
        incoming = incoming_path(target)
        try:
            shutil.copyfile(backup_file, incoming)
            with incoming.open("rb+") as handle:
                os.fsync(handle.fileno())
            if sha256_of_file(incoming) != manifest["sha256"]:
                raise MaintenanceError(f"the copy of {backup_file} next to the warehouse differs from the backup "
                                       f"(check the disk of {target.parent}); nothing was replaced")
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        fault("restore.copied")
        kept = swap_in(target, incoming, target.with_name(f"{target.name}.replaced-{stamp()}"), fault)
    return {"restored_from": str(backup_file), "warehouse": str(target), "tables": list(manifest["tables"]),
            "backup_made_at": manifest.get("created_at"), "previous_file": str(kept) if kept else None}
