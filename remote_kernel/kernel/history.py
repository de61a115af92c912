"""The cells a user ran, kept across kernels like IPython's history, for ``history_request``
(a console's up-arrow, ``%history`` in a frontend, JupyterLab's console history).

One SQLite file per image in the Jupyter data directory (``remote_kernel/history/<image>.sqlite``):
kernelspecs are one per image, and a restarted kernel is a new *session* of the same history,
as in IPython.  The remote knows nothing of this: history is the frontend's business, and the
bridge answers it locally.  Failures to read or write never reach a cell: history is a comfort.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

# A cell's input is written this long after it ran, with those of the cells run meanwhile: one
# write per burst of cells, none on a cell's own path (a write per cell cost each cell ~0.2 ms,
# bench/README.md).  A read, or close(), has them written at once.
STORE_DELAY = 0.5

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (session INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT);
CREATE TABLE IF NOT EXISTS history (session INTEGER, line INTEGER, source TEXT, PRIMARY KEY (session, line));
"""


def history_path(data_dir: str, image: str) -> str:
    safe = re.sub(r"[^\w.-]+", "_", image or "default").strip("._") or "default"
    return os.path.join(data_dir, "remote_kernel", "history", f"{safe}.sqlite")


class History:
    """One kernel's view of the history file: it appends to its own session and reads all."""

    def __init__(self, path: str):
        self.path = path
        self.session: int | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # writes (a disk sync each) happen on one thread, in order, off the cell's path;
        # reads go through it too, so they see every write queued before them
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remote-history")
        self._pending: list[tuple[int, str]] = []  # stored, not written yet
        self._pending_lock = threading.Lock()
        self._hurry = threading.Event()  # a read or close() waits: write the pending inputs now
        self._closed = False

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=2.0, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")  # concurrent kernels of one image, cheap appends
                db.executescript(SCHEMA)
                self.session = db.execute("INSERT INTO sessions (started) VALUES (datetime('now'))").lastrowid
                self._db = db
            except (OSError, sqlite3.Error) as exc:
                log.warning("history unavailable (%s): %s", self.path, exc)
                return None
        return self._db

    def store(self, line: int, source: str) -> None:
        """Queue the input of cell ``line`` (returns at once; written within ``STORE_DELAY``)."""
        with self._pending_lock:
            if self._closed:
                return
            self._pending.append((line, source))
            first = len(self._pending) == 1
        if first:  # else a write of the pending inputs is queued already
            self._writer.submit(self._store_pending)

    def _store_pending(self) -> None:
        self._hurry.wait(STORE_DELAY)
        with self._pending_lock:
            rows, self._pending = self._pending, []
        with self._lock:
            db = self._open()
            if db is None or not rows:
                return
            try:
                db.execute("BEGIN")
                try:
                    db.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?)",
                                   [(self.session, line, source) for line, source in rows])
                    db.execute("COMMIT")
                except sqlite3.Error:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                log.warning("history not stored: %s", exc)

    def tail(self, n: int, include_latest: bool = True) -> list[tuple[int, int, str]]:
        """The last ``n`` entries, oldest first (``include_latest``: as ipykernel answers)."""
        rows = self._query("SELECT session, line, source FROM history ORDER BY session DESC, line DESC LIMIT ?",
                           (max(0, n) + (0 if include_latest else 1),))
        if not include_latest:
            rows = rows[1:]
        return list(reversed(rows))

    def range(self, session: int, start: int, stop: int | None) -> list[tuple[int, int, str]]:
        """Lines ``start`` to ``stop`` (exclusive) of a session; ``session`` ≤ 0 counts back from
        this one (0: this session)."""
        if session <= 0:
            self._hurry.set()  # (nor does this wait for the pending inputs' delay)
            self._writer.submit(self._open).result()  # this kernel's session number is known once open
            session = (self.session or 0) + session
        stop = stop if stop is not None and stop > 0 else 2 ** 62
        return self._query("SELECT session, line, source FROM history WHERE session = ? AND line >= ? AND line < ? "
                           "ORDER BY line", (session, start, stop))

    def search(self, pattern: str, n: int | None = None, unique: bool = False) -> list[tuple[int, int, str]]:
        """Entries matching a glob ``pattern`` (``*`` any text), newest ``n`` of them."""
        regex = re.compile(fnmatch.translate(pattern or "*"), re.S)
        found = [row for row in self._query("SELECT session, line, source FROM history ORDER BY session, line", ())
                 if regex.match(row[2])]
        if unique:
            seen: set[str] = set()
            kept = []
            for row in reversed(found):
                if row[2] not in seen:
                    seen.add(row[2])
                    kept.append(row)
            found = list(reversed(kept))
        return found[-n:] if n else found

    def _query(self, sql: str, args: tuple) -> list[tuple[int, int, str]]:
        self._hurry.set()  # the inputs stored before this read are written first, at once
        return self._writer.submit(self._read, sql, args).result()

    def _read(self, sql: str, args: tuple) -> list[tuple[int, int, str]]:
        self._hurry.clear()  # what was pending when it was asked is written by now
        with self._lock:
            db = self._open()
            if db is None:
                return []
            try:
                return [tuple(row) for row in db.execute(sql, args).fetchall()]
            except sqlite3.Error as exc:
                log.warning("history not read: %s", exc)
                return []

    def close(self, wait: bool = True) -> None:
        """Write the pending inputs at once and close the file; ``wait=False`` returns at once
        (the writer ends on its own, and the process's exit waits for it, not for the delay)."""
        self._hurry.set()
        with self._pending_lock:
            if self._closed:
                return
            self._closed = True
        self._writer.submit(self._close_db)
        self._writer.shutdown(wait=wait)

    def _close_db(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
