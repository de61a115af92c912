"""Session file access confined to the session's working directory, and the wire packing of
downloads (one tar archive per file in a ``multipart/mixed`` body, docs/PROTOCOL.md#sessions).

A path is checked as text first (``confine``: absolute paths, ``..``, NUL bytes and symlinks
that resolve outside the directory are rejected), then used one component at a time from the
session's directory without following a symlink (``O_NOFOLLOW``): a name the session's code
swaps for a symlink between the check and the use is refused, never followed.  Files are
opened with ``O_NONBLOCK`` and used only when the descriptor is a regular file (``fstat``): a
FIFO made where a file was never blocks a thread.  A regular file with more than one link is
not served: it may be a hard link the session's code made to a file outside.  An upload is
written to a new file renamed into place, never through what the name was.  Whatever a client
or the session's code can make fail is ``invalid-api-params``, never a 500.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tarfile
import tempfile
import uuid
from typing import IO, Iterator

from remote_kernel.server.errors import bad_params

MAX_DEPTH = 256  # folders nested deeper than this are not archived
SPOOL_IN_MEMORY = 1024 * 1024  # a bigger download archive waits in a temporary file
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# failures the session's files (made by a client or by the session's code) explain
_CLIENT_ERRNOS = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENXIO, errno.EEXIST, errno.EACCES,
    errno.EPERM, errno.ENAMETOOLONG, errno.EINVAL, errno.ENOTEMPTY, errno.EBUSY, errno.ETXTBSY,
    errno.EXDEV, errno.EROFS, errno.EMLINK, errno.EOVERFLOW, errno.EFBIG,
})


@contextlib.contextmanager
def _reported(relpath: str) -> Iterator[None]:
    """OSErrors the session's files explain become 400 ``invalid-api-params``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _CLIENT_ERRNOS:
            raise bad_params(f"cannot use {relpath!r}: {os.strerror(exc.errno)}") from None
        raise


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
    with _reported(relpath):  # (a symlink the session's code removes while it is resolved)
        target = os.path.realpath(os.path.join(real_root, relpath))
    if target != real_root and not target.startswith(real_root + os.sep):
        raise bad_params(f"{relpath!r} resolves outside the session's directory")
    if must_exist and not os.path.lexists(target):
        raise bad_params(f"no such file: {relpath!r}", title="No such file.")
    return target


def _parts(root: str, target: str) -> tuple[str, list[str]]:
    """The real root, and the names leading from it to ``target`` (a path ``confine`` returned)."""
    real_root = os.path.realpath(root)
    rel = os.path.relpath(target, real_root)
    return real_root, ([] if rel == "." else rel.split(os.sep))


def _open_dir(real_root: str, names: list[str], create: bool = False) -> int:
    """A descriptor of the folder ``names`` below ``real_root``, opened one name at a time,
    never through a symlink (``create``: missing folders are made)."""
    fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in names:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_file(dir_fd: int, name: str, relpath: str) -> tuple[int, os.stat_result]:
    """``name`` in ``dir_fd`` opened for reading (not through a symlink, not waiting for a FIFO's
    writer), and its status."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise bad_params(f"{relpath!r} is not a regular file")
        if st.st_nlink > 1:
            raise bad_params(f"{relpath!r} has {st.st_nlink} hard links (one may be outside the session's "
                             "folder): not served")
        return fd, st
    except BaseException:
        os.close(fd)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def confine_all(root: str, paths: list[str]) -> None:
    for relpath in paths:
        confine(root, relpath, must_exist=True)


def save_uploads(root: str, uploads: list[tuple[str, bytes]]) -> None:
    """Every (path, data) of one upload: all paths are checked before any is written."""
    for relpath, _ in uploads:
        confine(root, relpath)
    for relpath, data in uploads:
        save_upload(root, relpath, data)


def save_upload(root: str, relpath: str, data: bytes) -> None:
    target = confine(root, relpath)
    if target == os.path.realpath(root) or relpath.endswith("/"):
        raise bad_params(f"upload destination {relpath!r} is a directory")
    real_root, names = _parts(root, target)
    with _reported(relpath):
        dir_fd = _open_dir(real_root, names[:-1], create=True)
        try:
            _replace(dir_fd, names[-1], data, relpath)
        finally:
            os.close(dir_fd)


def _replace(dir_fd: int, name: str, data: bytes, relpath: str) -> None:
    """``name`` in ``dir_fd`` becomes a new file holding ``data`` (a regular file there keeps
    its permissions); whatever was there (a hard link, a symlink, a FIFO) is not written to."""
    try:
        old = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise bad_params(f"upload destination {relpath!r} is a directory")
    temporary = f".rk-upload-{uuid.uuid4().hex}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                 dir_fd=dir_fd)
    try:
        try:
            if old is not None and stat.S_ISREG(old.st_mode):
                os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise


def _tar_info(arcname: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    info.size = st.st_size if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info


class Budget:
    """The bytes of file content one download request may still carry (the limit is per
    request, not per path: the same file asked five times counts five times)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.left = max_bytes

    def take(self, size: int, relpath: str) -> None:
        if size > self.left:
            raise bad_params(f"the download is larger than the download limit of {self.max_bytes} bytes "
                             f"(at {relpath!r})")
        self.left -= size


class _Archiver:
    """A tar archive of names below a folder descriptor: folders recursively, symlinks kept as
    links (never followed), FIFOs and devices as entries without content, sockets skipped."""

    def __init__(self, tar: tarfile.TarFile, budget: Budget, relpath: str):
        self.tar = tar
        self.budget = budget
        self.relpath = relpath

    def add(self, dir_fd: int, name: str, arcname: str, depth: int = 0) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            if depth > MAX_DEPTH:
                raise bad_params(f"{self.relpath!r} holds folders nested more than {MAX_DEPTH} deep")
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                self.tar.addfile(_tar_info(arcname, os.fstat(fd), tarfile.DIRTYPE))
                with os.scandir(fd) as entries:
                    names = sorted(entry.name for entry in entries)
                for child in names:
                    self.add(fd, child, f"{arcname}/{child}", depth + 1)
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            fd, st = _open_file(dir_fd, name, f"{self.relpath}: {arcname}")
            try:
                self.budget.take(st.st_size, self.relpath)
                with open(fd, "rb", closefd=False) as handle:
                    try:
                        self.tar.addfile(_tar_info(arcname, st, tarfile.REGTYPE), handle)
                    except OSError as exc:
                        if exc.errno is not None:
                            raise
                        raise bad_params(f"{arcname!r} changed while it was read") from None
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            info = _tar_info(arcname, st, tarfile.SYMTYPE)
            info.linkname = os.readlink(name, dir_fd=dir_fd)
            self.tar.addfile(info)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = tarfile.FIFOTYPE if stat.S_ISFIFO(mode) else tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            self.tar.addfile(_tar_info(arcname, st, kind))


def tar_of(root: str, relpath: str, budget: Budget) -> tuple[IO[bytes], int]:
    """A tar archive holding ``relpath`` (a file or a whole directory, symlinks kept as links),
    and its size: in memory while small, else in a temporary file of the server's (a download
    is sent from there in chunks, never held whole in memory)."""
    target = confine(root, relpath, must_exist=True)
    real_root, names = _parts(root, target)
    arcname = os.path.basename(target.rstrip(os.sep)) or "."
    archive = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
    try:
        with _reported(relpath), tarfile.open(fileobj=archive, mode="w") as tar:
            archiver = _Archiver(tar, budget, relpath)
            if names:
                dir_fd = _open_dir(real_root, names[:-1])
                try:
                    archiver.add(dir_fd, names[-1], arcname)
                finally:
                    os.close(dir_fd)
            else:  # the session's folder itself
                parent_fd = os.open(os.path.dirname(real_root) or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    archiver.add(parent_fd, os.path.basename(real_root), arcname)
                finally:
                    os.close(parent_fd)
        size = archive.tell()
        archive.seek(0)
        return archive, size
    except BaseException:
        archive.close()
        raise


def open_single(root: str, relpath: str, max_bytes: int) -> tuple[int, int]:
    """A descriptor of the regular file ``relpath`` to read from, and its size."""
    target = confine(root, relpath, must_exist=True)
    if target == os.path.realpath(root):
        raise bad_params(f"{relpath!r} is not a regular file")
    real_root, names = _parts(root, target)
    with _reported(relpath):
        dir_fd = _open_dir(real_root, names[:-1])
        try:
            fd, st = _open_file(dir_fd, names[-1], relpath)
        finally:
            os.close(dir_fd)
    if st.st_size > max_bytes:
        os.close(fd)
        raise bad_params(f"{relpath!r} is larger than the download limit of {max_bytes} bytes")
    return fd, st.st_size


def read_chunk(fd: int, size: int) -> bytes:
    return os.read(fd, size)


def part_head(boundary: str, name: str, size: int) -> bytes:
    """The head of one tar part of a ``multipart/mixed`` answer."""
    safe = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
    return (f"--{boundary}\r\nContent-Type: application/x-tar\r\n"
            f'Content-Disposition: attachment; filename="{safe}.tar"\r\n'
            f"Content-Length: {size}\r\n\r\n").encode("utf-8", "replace")


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def list_dir(root: str, relpath: str) -> dict:
    """The ``files`` answer: ``files`` is a JSON *string* of entries, as real servers send."""
    target = confine(root, relpath or ".", must_exist=True) if relpath not in ("", ".") else os.path.realpath(root)
    real_root, names = _parts(root, target)
    entries = []
    with _reported(relpath):
        fd = _open_dir(real_root, names)
        try:
            with os.scandir(fd) as it:
                for entry in sorted(it, key=lambda e: e.name):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    entries.append({"mode": stat.filemode(st.st_mode), "size": st.st_size,
                                    "ctime": st.st_ctime, "mtime": st.st_mtime, "atime": st.st_atime,
                                    "filename": entry.name})
        finally:
            os.close(fd)
    # abspath: real servers send the folder's path in the container, which the official CLI
    # prints; ours is relative to the session's folder, never the server's own layout
    shown = os.path.relpath(target, real_root).replace(os.sep, "/")
    return {"files": json.dumps(entries), "errors": "", "abspath": shown}
