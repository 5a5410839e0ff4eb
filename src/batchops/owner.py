"""Who wrote a file: the host and process embedded in temp names and log events, and whether it still runs."""

from __future__ import annotations

import os
import re
import socket

# The short host name, as in temp-file names and log events: tells a killed attempt from a running one.
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def owner_tag() -> str:
    """`<host>-<pid>` of this process, embedded in temp names so leftovers can be traced to a process."""
    return f"{HOST}-{os.getpid()}"


def process_alive(pid: int) -> bool:
    """True when a process with this pid runs on this host (or exists and is not ours to signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
