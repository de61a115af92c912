"""The private embedded server a kernel starts for itself when no endpoint is configured.

``python -m remote_kernel serve --port 0`` runs as a child process on loopback with fresh random
keys, given in its environment (argv is visible to every user through ``ps``).  Its sessions run
in the kernel's own working directory, so relative paths behave as with a local kernel.  The
server watches the kernel's pid (``--parent-pid``) and exits when the kernel is gone, even after
a SIGKILL; a normal shutdown stops it with SIGTERM, a bounded wait, then SIGKILL.  When it ends
on its own (killed, out of memory) it is reaped at once, and ``stopped`` says how it ended so
the kernel can start a new one for the next cell.

Only the standard library (and our error classes) is imported here: this runs on the kernel's start-up
path.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading

from remote_kernel.client import errors

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0   # seconds the first cell waits for the server's endpoint line
STOP_TIMEOUT = 3.0     # seconds between SIGTERM and SIGKILL at shutdown


class EmbeddedServerError(OSError):
    """The private server could not be started (an OSError: the kernel shows it as a cell error)."""


class PrivateServerStopped(errors.ConnectionFailed):
    """The private server ended on its own while a call waited for it."""

    def __init__(self, message: str):
        super().__init__(msg=message)

    def __str__(self) -> str:  # the message alone: it names the server already
        return self.msg


def describe_exit(returncode: int) -> str:
    """``-9`` → ``was killed by SIGKILL``; ``3`` → ``exited with code 3``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def fresh_keys() -> tuple[str, str]:
    return "AKRKLOCAL" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)


def server_command(cwd: str, parent_pid: int, python: str | None = None) -> list[str]:
    """The server's argv (no secret in it)."""
    return [python or sys.executable, "-m", "remote_kernel", "serve", "--host", "127.0.0.1", "--port", "0",
            "--session-cwd", cwd, "--parent-pid", str(parent_pid), "--idle-timeout", "0",
            # one session per private server, created at once: a spare would only idle
            "--warm-kernels", "0"]


def server_environ(base: dict[str, str], access_key: str, secret_key: str) -> dict[str, str]:
    """The server's environment: the kernel's own, minus anything that would point it elsewhere,
    plus the fresh keypair."""
    env = {k: v for k, v in base.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env["BACKEND_ACCESS_KEY"] = access_key
    env["BACKEND_SECRET_KEY"] = secret_key
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class EmbeddedServer:
    """One private server child process.  ``start()`` returns at once; ``wait()`` blocks until
    the server printed its endpoint and gives ``(url, access_key, secret_key)``."""

    def __init__(self, cwd: str | None = None, parent_pid: int | None = None):
        self.cwd = os.path.abspath(cwd or os.getcwd())
        self.parent_pid = parent_pid or os.getpid()
        self.access_key, self._secret_key = fresh_keys()
        self.url: str | None = None
        self.process: subprocess.Popen | None = None
        self._ready = threading.Event()
        self._error: str | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._lock = threading.Lock()
        self._stderr_reader: threading.Thread | None = None
        self._stopping = False  # our own stop(): not something to recover from

    def __repr__(self) -> str:  # never shows the secret
        return f"EmbeddedServer(url={self.url!r}, pid={self.pid}, cwd={self.cwd!r})"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Spawn the server (idempotent); its endpoint line is read in a background thread."""
        with self._lock:
            if self.process is not None:
                return
            try:
                self.process = subprocess.Popen(
                    server_command(self.cwd, self.parent_pid), cwd=self.cwd,
                    env=server_environ(dict(os.environ), self.access_key, self._secret_key),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    # its own process group: a SIGINT aimed at the kernel's group (an interrupt)
                    # must not stop the server
                    start_new_session=True,
                )
            except OSError as exc:
                self._error = f"could not start the private embedded server: {exc}"
                self._ready.set()
                return
            atexit.register(self.stop)
            self._stderr_reader = threading.Thread(target=self._read_stderr, name="embedded-server-stderr",
                                                   daemon=True)
            self._stderr_reader.start()
            threading.Thread(target=self._read_stdout, name="embedded-server-stdout", daemon=True).start()

    def _read_stdout(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if self.url is None and line.startswith(("http://", "https://")):
                self.url = line
                self._ready.set()
            # keep draining: a child writing to a full pipe would block
        process.wait()  # reap at once: a dead child must not linger as a zombie of the kernel
        if self.url is not None and not self._stopping:
            log.warning("the private embedded server %s", describe_exit(process.returncode))
        if self.url is None:
            self._stderr_reader.join(2)  # its last line says why
            tail = "".join(self._stderr_tail).strip()
            self._error = (f"the private embedded server exited with code {process.returncode} before it "
                           f"was ready" + (f": {tail.splitlines()[-1]}" if tail else ""))
            self._ready.set()

    def _read_stderr(self) -> None:
        process = self.process
        assert process is not None and process.stderr is not None
        # Drained into our log, never into the kernel's stderr: ipykernel forwards that fd to
        # the notebook, and server log lines are not the user's output.
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace")
            self._stderr_tail.append(line)
            log.debug("embedded server: %s", line.rstrip())

    def wait(self, timeout: float = START_TIMEOUT) -> tuple[str, str, str]:
        """Start if needed and wait for the endpoint: ``(url, access_key, secret_key)``."""
        self.start()
        if not self._ready.wait(timeout):
            raise EmbeddedServerError(f"the private embedded server did not start within {timeout:g} s")
        if self.url is None:
            raise EmbeddedServerError(self._error or "the private embedded server did not start")
        return self.url, self.access_key, self._secret_key

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def stopped(self) -> str | None:
        """How the server ended after it was ready, when nobody asked it to (``was killed by
        SIGKILL``), else ``None``."""
        process = self.process
        if self.url is None or self._stopping or process is None or process.poll() is None:
            return None
        return describe_exit(process.returncode)

    def ended(self, wait: float) -> str | None:
        """``stopped``, after waiting up to ``wait`` seconds for a dying server to end."""
        process = self.process
        if self.url is not None and not self._stopping and process is not None:
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                return None
        return self.stopped

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (the server stops its kernels), a bounded wait, then SIGKILL."""
        process = self.process
        self._stopping = True
        if process is None or process.poll() is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the private embedded server did not stop within %g s; killing it", timeout)
                process.kill()
                process.wait(2)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("stopping the private embedded server failed: %s", exc)
        finally:
            try:
                atexit.unregister(self.stop)
            except Exception:
                pass

