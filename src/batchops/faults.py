"""Fault injection for the reliability tests and for operators rehearsing a recovery.

Two switches, read from the task process's environment, each acting once per DAG run:
  BATCHOPS_FAIL_ONCE=<point>[,<point>...]   raise an error at the point (a clean failure)
  BATCHOPS_CRASH_AT=<point>[,<point>...]    SIGKILL this process at the point (no cleanup runs: what
                                            kill -9, the OOM killer or a lost machine do)
  BATCHOPS_PAUSE_AT=<point>[,<point>...]    stop at the point until `<marker>.resume` exists (a test makes
                                            another process act at that exact moment)
A point is `<stage>` or `<stage>.<where>` (e.g. `load.in_transaction`), optionally prefixed by a
DAG id (`provider_a__propensity_model.load.in_transaction`) to act on one DAG only. A marker file in
the run folder makes each point fire once, so clearing the task re-runs it normally.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

FAIL_SWITCH = "BATCHOPS_FAIL_ONCE"
CRASH_SWITCH = "BATCHOPS_CRASH_AT"
PAUSE_SWITCH = "BATCHOPS_PAUSE_AT"
PAUSE_LIMIT_SECONDS = 600


def _armed(switch: str, point: str, dag_id: str, run_dir: Path) -> bool:
    wanted = {item.strip() for item in os.environ.get(switch, "").split(",") if item.strip()}
    if not wanted & {point, f"{dag_id}.{point}"}:
        return False
    marker = run_dir / f".{switch.lower()}_{point}"
    if marker.exists():
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return True


def fail_once(point: str, dag_id: str, run_dir: Path) -> None:
    if _armed(FAIL_SWITCH, point, dag_id, run_dir):
        raise RuntimeError(f"{FAIL_SWITCH}={point}: failing once on purpose; clear this task to resume")


def crash_point(point: str, dag_id: str, run_dir: Path) -> None:
    if _armed(CRASH_SWITCH, point, dag_id, run_dir):
        os.kill(os.getpid(), signal.SIGKILL)


def pause_marker(point: str, run_dir: Path) -> Path:
    """The file pause_point creates when it stops at `point`; create `<it>.resume` to let it go on."""
    return run_dir / f".{PAUSE_SWITCH.lower()}_{point}"


def pause_point(point: str, dag_id: str, run_dir: Path) -> None:
    if not _armed(PAUSE_SWITCH, point, dag_id, run_dir):
        return
    resume = pause_marker(point, run_dir).with_name(pause_marker(point, run_dir).name + ".resume")
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while not resume.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{PAUSE_SWITCH}={point}: nobody created {resume} within {PAUSE_LIMIT_SECONDS}s")
        time.sleep(0.05)
