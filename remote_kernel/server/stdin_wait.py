"""Is a program blocked reading its standard input?  (Linux, from ``/proc``.)

A program run by the server (program_engine.py) gets a terminal of its own as standard input
(the other end stays with the server).  It waits for input when one of its threads (or of its
children's) is blocked in the kernel:

* in a ``read``-family system call on that terminal (C's ``scanf``, Lua's ``io.read``, R's
  ``readLines``): ``/proc/PID/task/TID/syscall`` names the call and its arguments, the first
  being the file descriptor, which ``/proc/PID/fd/N`` resolves to the terminal; or
* in ``epoll_wait`` with no timeout, the terminal among the descriptors that epoll instance
  watches for input (libuv programs, Node.js's ``readline`` and Julia's ``readline``): the
  instance's ``/proc/PID/fdinfo`` lists each watched file's inode.

Anything else — running, sleeping, reading a file or a socket, waiting for a child or for a
timer — is not waiting for input.  A thread the server has just answered may still sit in its
``read`` before the scheduler wakes it: ``Blocked`` carries the thread's voluntary context-switch
count, so the engine treats a block as new only once that count moved (the thread woke up), and
the terminal's input queue must be empty.

Reading ``syscall`` takes ptrace access to the process, which the parent (the server) has unless
a security module forbids it (Yama ``ptrace_scope`` 2 or 3): ``StdinWatch.supported`` is then
False and no run reports waiting for input.  ``poll``/``select`` keep their descriptor sets in
the process's memory and are not looked at (neither libc's stdio nor libuv waits in them).
"""

from __future__ import annotations

import fcntl
import os
import platform
import struct
import termios
from dataclasses import dataclass

# system call numbers per architecture (Linux's unistd tables)
_READS = {
    "x86_64": {0, 17, 19, 295, 327},  # read, pread64, readv, preadv, preadv2
    "aarch64": {63, 65, 67, 69, 286},
}
_EPOLL_WAITS = {
    "x86_64": {232, 281, 441},  # epoll_wait, epoll_pwait, epoll_pwait2
    "aarch64": {22, 441},  # epoll_pwait, epoll_pwait2
}
_EPOLL_PWAIT2 = 441  # its timeout is a timespec pointer (NULL: none), the others' milliseconds
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}
EPOLLIN = 0x001


@dataclass(frozen=True)
class Blocked:
    """A thread blocked reading the watched input; ``switches`` moves once it wakes."""

    tid: int
    switches: int


def parse_syscall(text: str) -> tuple[int, list[int]] | None:
    """``/proc/.../syscall`` → (number, arguments), or None when the thread is not in a call
    ("running", or "-1 ..." for a thread stopped outside one)."""
    fields = text.split()
    if not fields or fields[0] in ("running", "-1"):
        return None
    try:
        return int(fields[0]), [int(value, 16) for value in fields[1:7]]
    except ValueError:
        return None


def kernel_dev_to_user(dev: int) -> int:
    """A device number as fdinfo prints it (the kernel's 12:20 bit split) → ``st_dev``."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


def epoll_watches(fdinfo: str) -> list[tuple[int, int, int | None, int | None]]:
    """The ``tfd:`` lines of an epoll instance's fdinfo → (fd, events, inode, st_dev); inode and
    device are None on kernels that do not print them."""
    watches = []
    for line in fdinfo.splitlines():
        if not line.startswith("tfd:"):
            continue
        fields = line.split()
        values = {fields[i].rstrip(":"): fields[i + 1] for i in range(0, len(fields) - 1, 2)}
        try:
            ino = int(values["ino"], 16) if "ino" in values else None
            sdev = kernel_dev_to_user(int(values["sdev"], 16)) if "sdev" in values else None
            watches.append((int(values["tfd"]), int(values["events"], 16), ino, sdev))
        except (KeyError, ValueError):
            continue
    return watches


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:  # gone meanwhile, or not ours to read
        return None


class StdinWatch:
    """Watches whether the processes started with ``stdin_fd`` (the server's copy of their
    standard input, a terminal) are blocked reading it."""

    def __init__(self, stdin_fd: int):
        self._fd = stdin_fd
        stat = os.fstat(stdin_fd)
        self._identity = (stat.st_dev, stat.st_ino)
        arch = platform.machine().lower()
        arch = _ARCH_ALIASES.get(arch, arch)
        self._reads = _READS.get(arch, set())
        self._epoll_waits = _EPOLL_WAITS.get(arch, set())
        self.supported = bool(self._reads)

    def blocked(self, pid: int) -> Blocked | None:
        """A thread of ``pid`` or of its descendants blocked reading the input, with nothing
        queued for it; else None."""
        if not self.supported or self._queued() > 0:
            return None
        for process in self._tree(pid):
            for tid in self._threads(process):
                if self._thread_blocked(process, tid):
                    return Blocked(tid, self._switches(process, tid))
        return None

    def check_access(self, pid: int) -> bool:
        """Whether this server may read the system calls of ``pid`` (its own child); a process
        already gone tells nothing against it."""
        try:
            with open(f"/proc/{pid}/syscall", "rb") as handle:
                handle.read()
        except PermissionError:
            self.supported = False
        except OSError:
            pass
        return self.supported

    # -- what the kernel says -------------------------------------------------------------------

    def _queued(self) -> int:
        """Bytes written to the terminal that the program has not read yet."""
        try:
            return struct.unpack("i", fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0

    def _tree(self, pid: int) -> list[int]:
        """``pid`` and its descendants (as far as ``/proc/.../children`` tells)."""
        found, pending = [], [pid]
        while pending and len(found) < 256:
            process = pending.pop()
            found.append(process)
            for tid in self._threads(process):
                children = _read(f"/proc/{process}/task/{tid}/children") or ""
                pending.extend(int(child) for child in children.split())
        return found

    @staticmethod
    def _threads(pid: int) -> list[int]:
        try:
            return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))
        except (OSError, ValueError):
            return []

    def _thread_blocked(self, pid: int, tid: int) -> bool:
        call = parse_syscall(_read(f"/proc/{pid}/task/{tid}/syscall") or "")
        if call is None:
            return False
        number, args = call
        if number in self._reads:
            return self._is_input(pid, args[0])
        if number in self._epoll_waits:
            # epoll_wait(epfd, events, maxevents, timeout): only a wait without a timeout waits
            # for the input alone (a pending timer means the program has more to do)
            if number == _EPOLL_PWAIT2:
                endless = args[3] == 0
            else:
                endless = struct.unpack("i", struct.pack("I", args[3] & 0xFFFFFFFF))[0] < 0
            return endless and self._epoll_watches_input(pid, args[0])
        return False

    def _is_input(self, pid: int, fd: int) -> bool:
        try:
            stat = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino) == self._identity

    def _epoll_watches_input(self, pid: int, epfd: int) -> bool:
        for fd, events, ino, dev in epoll_watches(_read(f"/proc/{pid}/fdinfo/{epfd}") or ""):
            if not events & EPOLLIN:
                continue
            if ino is not None and dev is not None:
                if (dev, ino) == self._identity:
                    return True
            elif self._is_input(pid, fd):
                return True
        return False

    @staticmethod
    def _switches(pid: int, tid: int) -> int:
        for line in (_read(f"/proc/{pid}/task/{tid}/status") or "").splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
        return -1
