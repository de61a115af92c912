"""Session file access confined to the session's working directory, and the wire packing of
downloads (one tar archive per file in a ``multipart/mixed`` body, docs/PROTOCOL.md#sessions).

Absolute paths, ``..``, NUL bytes and symlinks that resolve outside the directory are rejected
with ``invalid-api-params`` in every call.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import uuid

from remote_kernel.server.errors import bad_params


def confine(root: str, relpath: object, must_exist: bool = False) -> str:
    """The real path of ``relpath`` inside ``root``; APIProblem when it is not a safe relative
    path or resolves (through symlinks) outside ``root``."""
    if not isinstance(relpath, str) or not relpath:
        raise bad_params("a file path must be a non-empty string")
    if "\x00" in relpath:
        raise bad_params("file paths must not contain NUL bytes")
    if relpath.startswith(("/", "\\")) or os.path.isabs(relpath):
        raise bad_params(f"absolute paths are not allowed: {relpath!r}")
    parts = relpath.replace("\\", "/").split("/")
    if ".." in parts:
        raise bad_params(f"'..' is not allowed in file paths: {relpath!r}")
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, relpath))
    if target != real_root and not target.startswith(real_root + os.sep):
        raise bad_params(f"{relpath!r} resolves outside the session's directory")
    if must_exist and not os.path.lexists(target):
        raise bad_params(f"no such file: {relpath!r}", title="No such file.")
    return target


def save_upload(root: str, relpath: str, data: bytes) -> None:
    target = confine(root, relpath)
    if target == os.path.realpath(root) or relpath.endswith("/"):
        raise bad_params(f"upload destination {relpath!r} is a directory")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # the parent may have been raced into a symlink; re-check before writing
    confine(root, relpath)
    if os.path.isdir(target):
        raise bad_params(f"upload destination {relpath!r} is a directory")
    with open(target, "wb") as handle:
        handle.write(data)


def tar_of(root: str, relpath: str, max_bytes: int) -> bytes:
    """A tar archive holding ``relpath`` (a file or a whole directory, symlinks kept as links)."""
    target = confine(root, relpath, must_exist=True)
    total = 0
    if os.path.isdir(target):
        for folder, _dirs, names in os.walk(target):
            for name in names:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
    else:
        total = os.path.getsize(target)
    if total > max_bytes:
        raise bad_params(f"{relpath!r} is larger than the download limit of {max_bytes} bytes")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(target, arcname=os.path.basename(target.rstrip(os.sep)) or ".", recursive=True)
    return buffer.getvalue()


def read_single(root: str, relpath: str, max_bytes: int) -> bytes:
    target = confine(root, relpath, must_exist=True)
    if not os.path.isfile(target):
        raise bad_params(f"{relpath!r} is not a regular file")
    if os.path.getsize(target) > max_bytes:
        raise bad_params(f"{relpath!r} is larger than the download limit of {max_bytes} bytes")
    with open(target, "rb") as handle:
        return handle.read()


def multipart_mixed(parts: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """(content type, body) of a ``multipart/mixed`` answer, one tar part per (name, data)."""
    boundary = uuid.uuid4().hex
    chunks = []
    for name, data in parts:
        safe = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/x-tar\r\n"
            f'Content-Disposition: attachment; filename="{safe}.tar"\r\n'
            f"Content-Length: {len(data)}\r\n\r\n".encode("utf-8", "replace")
        )
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/mixed; boundary={boundary}", b"".join(chunks)


def list_dir(root: str, relpath: str) -> dict:
    """The ``files`` answer: ``files`` is a JSON *string* of entries, as real servers send."""
    target = confine(root, relpath or ".", must_exist=True) if relpath not in ("", ".") else os.path.realpath(root)
    if not os.path.isdir(target):
        raise bad_params(f"{relpath!r} is not a directory")
    entries = []
    with os.scandir(target) as it:
        for entry in sorted(it, key=lambda e: e.name):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            entries.append({"mode": stat.filemode(st.st_mode), "size": st.st_size,
                            "ctime": st.st_ctime, "mtime": st.st_mtime, "atime": st.st_atime,
                            "filename": entry.name})
    # abspath: real servers send the folder's path in the container, which the official CLI
    # prints; ours is relative to the session's folder, never the server's own layout
    shown = os.path.relpath(target, os.path.realpath(root)).replace(os.sep, "/")
    return {"files": json.dumps(entries), "errors": "", "abspath": shown}
