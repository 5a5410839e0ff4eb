"""Every file the BatchOps pages read goes through here: inside the run folder, never through a link,
a regular file with one name (no hard link to a file elsewhere), and never more than a size cap.

Each path component is opened relative to its parent's descriptor with O_NOFOLLOW, so a symlink
anywhere in the path (or swapped in while we read) is refused, not followed; O_NONBLOCK keeps a
FIFO planted under an artifact's name from hanging the request. A run folder made by `rooted` is
walked that way from runs/ itself: a linked DAG or run folder would serve another DAG's artifacts
under the permission of the DAG named in the URL.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

PAGE_READ_LIMIT = 2 << 20  # a JSON/Markdown artifact larger than this is not rendered into a page
DOWNLOAD_LIMIT = 2 << 30  # what /files/ serves at most (predictions of a few million customers fit)
LOG_TAIL_BYTES = 256 << 10  # the run tab shows the last events only, read from the end


class UnsafeArtifactError(Exception):
    """An artifact that the pages refuse to read; the message says which and why."""


class _RootedPath(type(Path())):
    """A run folder that remembers the trusted folder (runs/) its own components are walked from."""

    walk_from: Path | None = None


def rooted(root: Path, *parts: str) -> Path:
    """root/parts..., read by this module only through O_NOFOLLOW opens of every part below root."""
    path = _RootedPath(root, *parts)
    path.walk_from = root
    return path


def has_link_below(root: Path, path: Path) -> bool:
    """True when a component of `path` below `root` is a symbolic link (for listings: folders to skip)."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            return True
    return False


def _refuse(name: str, why: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(f"{name}: {why}; not shown")


@contextmanager
def open_artifact(folder: Path, name: str, max_bytes: int | None = PAGE_READ_LIMIT) -> Iterator[BinaryIO]:
    """Open folder/name for reading under the rules above; FileNotFoundError when it is absent.

    max_bytes None: no size cap (the caller reads a bounded part, e.g. a tail)."""
    parts = Path(name).parts
    if not parts or any(part in ("", ".", "..") for part in parts) or Path(name).is_absolute():
        raise _refuse(name, "not a plain path inside the run folder")
    start = getattr(folder, "walk_from", None)
    if start is not None:  # the run folder's own components are walked too: runs/<dag>/<run>/<name>
        folder_parts = folder.relative_to(start).parts
        if any(part in ("", ".", "..") for part in folder_parts):
            raise _refuse(name, "the run folder is not a plain path inside runs/")
        directory = os.open(start, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        parts = (*folder_parts, *parts)
    else:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
            except FileNotFoundError:
                raise
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(name, f"{part} is a symbolic link or not a folder") from exc
                raise _refuse(name, f"{part} cannot be opened ({exc.strerror})") from exc
            os.close(directory)
            directory = inner
        try:
            descriptor = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                                 dir_fd=directory)
        except FileNotFoundError:
            raise
        except OSError as exc:  # a socket answers ENXIO, an unreadable file EACCES
            if exc.errno == errno.ELOOP:
                raise _refuse(name, "is a symbolic link") from exc
            raise _refuse(name, f"cannot be opened as a file ({exc.strerror})") from exc
    finally:
        os.close(directory)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(name, "is not a regular file")
        if info.st_nlink != 1:
            raise _refuse(name, f"has {info.st_nlink} hard links (BatchOps writes files with one)")
        if max_bytes is not None and info.st_size > max_bytes:
            hint = "; download it instead" if max_bytes < DOWNLOAD_LIMIT else ""
            raise _refuse(name, f"is {info.st_size:,} bytes, over the limit of {max_bytes:,} bytes{hint}")
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as handle:
        yield handle


def read_text(folder: Path, name: str, max_bytes: int = PAGE_READ_LIMIT) -> str | None:
    """The artifact's text, or None when it does not exist."""
    try:
        with open_artifact(folder, name, max_bytes) as handle:
            return handle.read(max_bytes + 1).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def read_json(folder: Path, name: str, max_bytes: int = PAGE_READ_LIMIT) -> Any:
    """The artifact parsed as JSON, or None when it does not exist; unparsable JSON is refused."""
    text = read_text(folder, name, max_bytes)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(name, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def read_head_lines(folder: Path, name: str, lines: int, max_bytes: int = 256 << 10) -> list[str] | None:
    """The first lines of a (possibly large) artifact, reading at most max_bytes."""
    try:
        with open_artifact(folder, name, None) as handle:
            head = handle.read(max_bytes).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    return head.splitlines()[:lines]


def read_tail_lines(folder: Path, name: str, max_bytes: int = LOG_TAIL_BYTES) -> list[str] | None:
    """The whole lines within the last max_bytes of an artifact (seeks from the end; never reads more)."""
    tail = read_tail(folder, name, max_bytes)
    return None if tail is None else tail[0]


def read_tail(folder: Path, name: str, max_bytes: int = LOG_TAIL_BYTES) -> tuple[list[str], str] | None:
    """(the whole lines within the last max_bytes of an artifact, what was cut: '' or why lines are missing);
    None when it does not exist. Seeks from the end; never reads more."""
    try:
        with open_artifact(folder, name, None) as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(size - max_bytes, 0)
            handle.seek(start)
            tail = handle.read(max_bytes)
    except FileNotFoundError:
        return None
    cut = ""
    if start > 0:
        partial, newline, tail = tail.partition(b"\n")  # the first line was cut by the seek
        if not newline or not tail.strip():
            cut = (f"the last event is longer than the {max_bytes:,} bytes the page reads (the file is {size:,} "
                   "bytes)")
            tail = b""
        else:
            cut = ""
    return tail.decode("utf-8", errors="replace").splitlines(), cut


def stream(folder: Path, name: str, max_bytes: int = DOWNLOAD_LIMIT, block: int = 1 << 20) -> Iterator[bytes]:
    """Yield the artifact's bytes in blocks from one descriptor opened under the rules above.

    Opened before the first block is requested, so a refusal surfaces before a response starts."""
    manager = open_artifact(folder, name, max_bytes)
    handle = manager.__enter__()

    def blocks() -> Iterator[bytes]:
        try:
            yield from iter(lambda: handle.read(block), b"")
        finally:
            manager.__exit__(None, None, None)

    return blocks()
