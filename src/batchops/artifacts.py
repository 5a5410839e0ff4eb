"""Run folders and atomic artifact writes (temp file in the same folder, then rename).

Temp names carry `<host>-<pid>` so that recovery.remove_leftovers can delete those of a killed process."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchops.errors import RunParameterError, explain_os_error
from batchops.owner import owner_tag

_UNSAFE_RUN_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")
ARTIFACT_FILE_MODE = 0o644
ARTIFACT_DIR_MODE = 0o755


def safe_run_id(run_id: str) -> str:
    """Map an Airflow run id to a folder name: every character outside [A-Za-z0-9._-] becomes '_'.

    e.g. 'manual__2026-02-01T10:00:00+00:00' -> 'manual__2026-02-01T10_00_00_00_00'.
    """
    if not run_id or len(run_id) > 250:
        raise RunParameterError(f"run id {run_id!r} must be 1 to 250 characters")
    folder = _UNSAFE_RUN_ID_CHARS.sub("_", run_id)
    if folder.strip(".") == "":
        raise RunParameterError(f"run id {run_id!r} does not make a usable folder name")
    return folder


def run_dir_for(runs_root: Path, dag_id: str, run_id: str) -> Path:
    """runs/<dag_id>/<safe run id>/, guaranteed to stay inside runs_root."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", dag_id) or dag_id.strip(".") == "":
        raise RunParameterError(f"dag id {dag_id!r} is not a safe folder name")
    path = (runs_root / dag_id / safe_run_id(run_id)).resolve()
    if not path.is_relative_to(runs_root.resolve()):
        raise RunParameterError(f"run folder for {dag_id}/{run_id} would leave {runs_root}")
    return path


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path next to target; on success it replaces target in one rename."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.{owner_tag()}.", suffix=".part",
                                              dir=target.parent)
        os.close(handle)
    except OSError as exc:
        raise explain_os_error(target, exc) from exc
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, ARTIFACT_FILE_MODE)  # mkstemp makes 0600; artifacts are meant to be read by others
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise explain_os_error(target, exc) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: Path, payload: bytes) -> Path:
    with atomic_path(target) as temp, temp.open("wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    return target


def write_text_atomic(target: Path, text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: Path, document: Any) -> Path:
    return write_text_atomic(target, json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def write_with(target: Path, writer: Callable[[Path], None]) -> Path:
    """Let a library write to a temp path (e.g. DuckDB COPY, joblib.dump), then rename into place."""
    with atomic_path(target) as temp:
        writer(temp)
    return target


def new_staging_dir(target: Path) -> Path:
    """An empty hidden folder beside target (named for this process), to build target's next version in."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.{owner_tag()}.", dir=target.parent))
    except OSError as exc:
        raise explain_os_error(target, exc) from exc


def publish_dir(staging: Path, target: Path) -> Path:
    """Swap a folder built by new_staging_dir in as target, so readers never see half of it. A kill between
    the two renames leaves `.<target>.old`, which recovery.remove_leftovers puts back."""
    try:
        os.chmod(staging, ARTIFACT_DIR_MODE)  # mkdtemp makes 0700
        for child in staging.iterdir():
            os.chmod(child, ARTIFACT_FILE_MODE)
        if target.exists():
            retired = target.with_name(f".{target.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise explain_os_error(target, exc) from exc
    return target


def replace_dir_atomic(target: Path, builder: Callable[[Path], None]) -> Path:
    """Build a whole folder next to target, then swap it in, so readers never see half of it."""
    staging = new_staging_dir(target)
    try:
        builder(staging)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise explain_os_error(target, exc) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return publish_dir(staging, target)


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (inputs can be GBs)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
