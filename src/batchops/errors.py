"""One exception type per kind of failure; each message tells the user what to change."""

from __future__ import annotations

import errno
from pathlib import Path


class BatchOpsError(Exception):
    """Base class: a failure with a message meant for the person running the pipeline."""


class ConfigError(BatchOpsError):
    """A provider or pipeline YAML file is invalid."""

    def __init__(self, file: str, field: str, reason: str):
        self.file, self.field, self.reason = file, field, reason
        super().__init__(f"{file}: {field}: {reason}")


class InputDataError(BatchOpsError):
    """A landing file is missing, unreadable or not in the layout its provider config declares."""


class LandingNotReadyError(InputDataError):
    """A landing file is still being uploaded (or its ready marker is missing); a later retry may succeed."""


class DataQualityError(BatchOpsError):
    """Data failed a check that must stop the stage (not the DQ verdict itself, which is data)."""


class RunParameterError(BatchOpsError):
    """A run parameter (snapshot_date, run id) is invalid."""


class WarehouseError(BatchOpsError):
    """The provider's DuckDB warehouse could not be opened or written; a later retry may succeed."""


class WarehouseBusyError(WarehouseError):
    """Another process held the provider's warehouse lock for longer than the wait allowed."""


class WarehouseDamagedError(BatchOpsError):
    """The warehouse file is not a readable DuckDB database; retrying cannot help, a restore or rebuild does."""


class ModelIntegrityError(BatchOpsError):
    """A model artifact is missing, tampered with, or does not fit the features."""


class ModelRejectedError(BatchOpsError):
    """The run's model was not approved and no earlier approved model can stand in; waiting cannot help."""


class SanityCheckError(BatchOpsError):
    """Predictions failed a check before publishing; nothing was published."""


class DriftError(BatchOpsError):
    """The scoring snapshot's features drifted from the model's training data beyond the guardrail
    (action: block); nothing was published."""


class ArtifactWriteError(BatchOpsError):
    """An artifact could not be written (disk full, permissions); earlier artifacts are intact."""


def is_duckdb_error(exc: BaseException) -> bool:
    """True for DuckDB's own exceptions (their module is `_duckdb`), without importing duckdb."""
    return type(exc).__module__.lstrip("_").startswith("duckdb")


def explain_os_error(path: Path, exc: OSError) -> ArtifactWriteError:
    """An OSError while writing `path`, as the user-facing error that names the cause and the fix."""
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full; free space and clear the task to re-run it"
    elif exc.errno == errno.EROFS:
        hint = "the file system is mounted read-only; make it writable (or point BATCHOPS_RUNS_DIR elsewhere)"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = "the folder is not writable by this user; fix its permissions (or BATCHOPS_RUNS_DIR)"
    else:
        hint = exc.strerror or str(exc)
    return ArtifactWriteError(f"cannot write {path}: {hint}. Earlier artifacts were left as they were.")
