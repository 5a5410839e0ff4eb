"""When a provider's drops are due: the snapshot dates its schedule fires on, and the ones a drop skipped."""

from __future__ import annotations

from datetime import date, datetime, time

NO_CALENDAR = (None, "@once", "@continuous")
MAX_LOOKBACK_DROPS = 400  # a gap longer than this is listed by its ends


def previous_due_dates(schedule: str | None, snapshot: date, limit: int = MAX_LOOKBACK_DROPS) -> list[date]:
    """The snapshot dates the schedule fired on before `snapshot`, newest first (one per day); [] without a
    calendar (no schedule, @once, @continuous)."""
    if schedule in NO_CALENDAR:
        return []
    from croniter import croniter  # what Airflow's cron timetables use

    fires = croniter(schedule, datetime.combine(snapshot, time.min))
    dates: list[date] = []
    while len(dates) < limit:
        fired = fires.get_prev(datetime).date()
        if not dates or fired != dates[-1]:
            dates.append(fired)
    return dates


def missing_drops(schedule: str | None, snapshot: date, loaded: list[date]) -> list[date]:
    """The due dates between the latest loaded drop before `snapshot` and `snapshot` that were never loaded,
    oldest first. [] for the first drop, without a calendar, or when the previous due drop is there."""
    earlier = [d for d in loaded if d < snapshot]
    if not earlier:
        return []
    last = max(earlier)
    missing = []
    for due in previous_due_dates(schedule, snapshot):
        if due <= last:
            break
        missing.append(due)
    return sorted(missing)
