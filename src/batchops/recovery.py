"""Before a task works: notice an earlier attempt that died mid-way and remove what it left behind.

Artifacts are written to hidden temp names (`.<name>.<host>-<pid>.<random>[.part]`) and renamed into
place, so a killed process (kill -9, the OOM killer, a lost worker) never leaves a half-written
artifact under its real name, only such temp entries. They are removed here once their process is
gone, and logs.jsonl records what happened, since the killed process could not.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from batchops.owner import HOST, process_alive
from batchops.runlog import RunLogger, read_events

# (DuckDB's COPY writes its own `tmp_` file next to the path it is given.)
_LEFTOVER = re.compile(r"^(tmp_)?\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]{8}(\.part)?$")
_RETIRED = re.compile(r"^\.(?P<name>.+)\.old$")
FOREIGN_LEFTOVER_AGE_SECONDS = 24 * 3600  # another host's temp entries: its process cannot be asked


def _is_leftover(entry: Path, this_host: str) -> bool:
    match = _LEFTOVER.match(entry.name)
    if not match:
        return False
    if match["host"] == this_host:
        return not process_alive(int(match["pid"]))
    return time.time() - entry.lstat().st_mtime > FOREIGN_LEFTOVER_AGE_SECONDS


def remove_leftovers(roots: list[Path]) -> list[str]:
    """Delete temp files/folders of dead processes under roots; put back a folder whose swap was cut
    between its two renames (`.<name>.old` without `<name>`). Returns what was done, for the log."""
    this_host = HOST
    done: list[str] = []
    for root in roots:
        if not root.is_dir():
            continue
        for folder, subfolders, files in os.walk(root):
            base = Path(folder)
            for name in [*subfolders, *files]:
                entry = base / name
                if _is_leftover(entry, this_host):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                    done.append(f"removed {entry}")
                elif (retired := _RETIRED.match(name)) and entry.is_dir():
                    target = base / retired["name"]
                    if target.exists():
                        shutil.rmtree(entry, ignore_errors=True)
                        done.append(f"removed {entry}")
                    else:
                        os.replace(entry, target)
                        done.append(f"restored {target} from {entry}")
            subfolders[:] = [d for d in subfolders if (base / d).is_dir()]
    return done


def remove_dead_temp_files(folder: Path, prefixes: tuple[str, ...]) -> list[str]:
    """Delete, in `folder` only (not below it), the temp files and folders of dead processes whose names start
    with one of `prefixes` (e.g. a restore's copy of a backup, killed before it was swapped in)."""
    done = []
    if not folder.is_dir():
        return done
    for entry in folder.iterdir():
        if entry.name.startswith(prefixes) and _is_leftover(entry, HOST):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            done.append(f"removed {entry}")
    return done


def begin_attempt(logger: RunLogger, try_number: int, extra_roots: tuple[Path, ...] = ()) -> None:
    """Log an earlier attempt of this task that never finished, then clean up after it.

    Every attempt ends with a `*_finished` or `*_failed` event (the timed blocks log them, also on
    errors); one whose last event is anything else was killed, or is still running elsewhere."""
    own = [e for e in read_events(logger.path) if e.get("stage") == logger.stage
           and e.get("event") not in ("previous_attempt_interrupted", "duplicate_execution", "leftovers_cleaned")]
    if own and not own[-1]["event"].endswith(("_finished", "_failed")):
        last = own[-1]
        started = next((e for e in reversed(own) if e["event"] == "stage_started"), own[0])
        pid, host = last.get("pid"), last.get("host")
        if host == HOST and isinstance(pid, int) and pid != os.getpid() and process_alive(pid):
            logger.event("duplicate_execution", level="WARNING", earlier_try=started.get("try_number"),
                         earlier_pid=pid, detail="another attempt of this task is still running; the warehouse lock "
                                                 "and atomic writes keep the two from mixing their results")
        else:
            logger.event("previous_attempt_interrupted", level="WARNING", earlier_try=started.get("try_number"),
                         earlier_pid=pid, earlier_host=host, last_event=last["event"], at=last.get("ts"),
                         detail="that attempt never finished: its process was killed (kill -9, out of memory, "
                                "lost worker). Files appear under their names only when whole, and predictions and "
                                "models only after the warehouse committed them; the temporary files it left are "
                                "removed, and this attempt redoes the stage.")
    cleaned = remove_leftovers([logger.path.parent, *extra_roots])
    if cleaned:
        logger.event("leftovers_cleaned", level="WARNING", try_number=try_number, actions=cleaned)
