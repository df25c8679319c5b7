"""The ablation results store: one JSON line per finished cell in ``cells-<rank>.jsonl``.

Each row carries the full configuration it was computed with (``config``) and its hash
(``config_key``), so resume can tell a finished cell from a stale one. A line cut by an
interruption is dropped before the next row is appended (it would otherwise swallow that row),
and a lock file per shard keeps two ablations from computing into the same folder at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from guidance_kit.errors import FolderLockedError, OutputError

try:  # POSIX advisory locks; elsewhere concurrent writers are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SHARDS = "cells-*.jsonl"


def shard_path(folder: Path, rank: int) -> Path:
    return folder / f"cells-{rank}.jsonl"


def config_key(config: Mapping[str, Any]) -> str:
    """A short stable hash of a cell's configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """Every complete row of every shard, each shard read once, in shard then line order.
    Lines that do not parse (cut by an interruption) are skipped: their cells are not done."""
    rows = []
    for shard in sorted(folder.glob(SHARDS)):
        for line in shard.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                rows.append(row)
    return rows


def by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    """Rows indexed by (cell id, config key); a later row for the same pair wins."""
    return {(row["id"], row.get("config_key")): row for row in rows}


@contextmanager
def locked(folder: Path, rank: int) -> Iterator[None]:
    """Hold ``folder``'s lock for shard ``rank``, or raise :class:`FolderLockedError` at once."""
    path = folder / f".cells-{rank}.lock"
    with path.open("a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                raise FolderLockedError(
                    f"another ablation (pid {holder}) is writing into {folder}; wait for it to finish "
                    "or pass another --out"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def drop_torn_tail(path: Path) -> None:
    """Cut an incomplete last line (no newline: the writer was interrupted), so the next row
    starts on a line of its own instead of being glued to the fragment and lost."""
    if not path.exists():
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


@contextmanager
def appender(path: Path) -> Iterator[IO[str]]:
    drop_torn_tail(path)
    try:
        handle = path.open("a")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle


def append(handle: IO[str], row: Mapping[str, Any]) -> None:
    """One row as one line, on disk before the next cell starts."""
    handle.write(json.dumps(row, default=str, allow_nan=True) + "\n")
    handle.flush()
    os.fsync(handle.fileno())
