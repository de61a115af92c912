"""What a kernel tells the process that replaces it when the frontend restarts it.

A restart ends this process and starts a new one with the same kernel id.  Before it ends, the
old process restarts the remote kernel in place where the server can (PATCH: variables go,
files stay) and leaves a note in the Jupyter runtime directory naming the session; the new
process reads it once, binds to that session instead of making a new one, and its first output
says which way it went.  The note holds no secret (a session name, an endpoint, a flag).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

MAX_AGE = 300.0  # seconds: an older note is from another life of the kernel id


def handoff_key(connection_file: str) -> str:
    """What a restarted process shares with the one it replaces: its connection file (Jupyter
    restarts a kernel with the same one, named by kernel id or not)."""
    return hashlib.sha256(os.path.abspath(connection_file).encode()).hexdigest()[:24]


def handoff_path(runtime_dir: str, kernel_id: str) -> str:
    return os.path.join(runtime_dir, f"remote_kernel-restart-{kernel_id}.json")


def write_handoff(runtime_dir: str, kernel_id: str, *, session: str, endpoint: str, in_place: bool) -> None:
    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    path = handoff_path(runtime_dir, kernel_id)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"session": session, "endpoint": endpoint, "in_place": in_place, "at": time.time()}, handle)


def take_handoff(runtime_dir: str, kernel_id: str, now: float | None = None) -> dict | None:
    """The note the previous process of ``kernel_id`` left, once (it is removed), if fresh."""
    path = handoff_path(runtime_dir, kernel_id)
    try:
        with open(path, encoding="utf-8") as handle:
            note = json.load(handle)
    except (OSError, ValueError):
        return None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    now = time.time() if now is None else now
    if not isinstance(note, dict) or not isinstance(note.get("session"), str) or now - float(note.get("at", 0)) > MAX_AGE:
        return None
    return note
