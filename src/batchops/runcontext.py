"""What one DAG run is about: provider, pipeline, snapshot and where its artifacts go."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path

from batchops.artifacts import run_dir_for
from batchops.config import PipelineSpec, ProviderConfig
from batchops.errors import RunParameterError
from batchops.runlog import RunLogger
from batchops.settings import Settings

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_snapshot_date(value: object, source: str = "snapshot_date") -> date:
    """Accept only YYYY-MM-DD (a real calendar date); anything else is refused with a clear message."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise RunParameterError(f"{source} must be a date written YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value)  # any calendar date: historical reprocessing is normal
    except ValueError as exc:
        raise RunParameterError(f"{source} {value!r} is not a calendar date ({exc})") from exc


RUN_CONF_KEYS = ("snapshot_date",)


def check_run_conf(conf: object) -> None:
    """A run's conf may hold only known keys: a typo such as 'snapshot_data' would otherwise silently
    fall back to the default date and process the wrong snapshot."""
    if conf in (None, {}):
        return
    if not isinstance(conf, dict):
        raise RunParameterError(f"the run conf must be a JSON object like {{\"snapshot_date\": \"2026-02-01\"}}, "
                                f"got {type(conf).__name__}")
    unknown = sorted(str(key) for key in conf if key not in RUN_CONF_KEYS)
    if unknown:
        hints = [f"{key!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, RUN_CONF_KEYS, 1))
                 else repr(key) for key in unknown]
        raise RunParameterError(f"unknown key(s) in the run conf: {', '.join(hints)}; allowed: {list(RUN_CONF_KEYS)}. "
                                "Trigger again with only these keys.")


def resolve_snapshot_date(
    conf_value: object,
    run_type: str | None,
    data_interval_end: datetime | None,
    logical_date: datetime | None,
    run_after: datetime | None,
) -> tuple[date, str]:
    """The rule (also in README): conf snapshot_date wins; a scheduled run uses its data interval end
    (else logical date); a manual run without conf uses the date it was triggered for (run_after)."""
    if conf_value not in (None, ""):
        return parse_snapshot_date(conf_value), "conf.snapshot_date"
    if run_type == "scheduled":
        if data_interval_end is not None:
            return data_interval_end.date(), "data_interval_end of the scheduled run"
        if logical_date is not None:
            return logical_date.date(), "logical_date of the scheduled run"
    for moment, label in ((logical_date, "logical_date"), (run_after, "run_after (trigger date)")):
        if moment is not None:
            return moment.date(), f"{label} of the {run_type or 'manual'} run"
    raise RunParameterError("no snapshot_date in conf and the run has no date; trigger with snapshot_date")


@dataclass(frozen=True)
class RunContext:
    dag_id: str
    run_id: str
    provider: ProviderConfig
    pipeline: PipelineSpec
    snapshot_date: date
    settings: Settings

    @cached_property
    def run_dir(self) -> Path:
        return run_dir_for(self.settings.runs_dir, self.dag_id, self.run_id)

    @property
    def staging_dir(self) -> Path:
        return self.run_dir / "staging"

    @property
    def landing_dir(self) -> Path:
        return self.provider.landing_dir(self.settings.data_dir, self.snapshot_date)

    def logger(self, stage: str) -> RunLogger:
        return RunLogger(self.run_dir / "logs.jsonl", stage, self.settings.run_log_max_bytes)
