"""The embedded server as a real subprocess, for every suite that needs a live peer.

``server`` (module scope) starts ``python -m remote_kernel serve --port 0`` with two keypairs
(``access_key``/``secret_key`` and ``other_key``/``other_secret``, to test ownership), reads the
URL line, and on teardown sends SIGTERM and checks that the process exited and left no kernel
behind.  ``signed_request`` sends arbitrary (also malformed) signed requests.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests

from _procs import live_descendants, survivors
from remote_kernel import protocol, signing


@dataclass
class ServerProcess:
    url: str
    access_key: str
    secret_key: str
    pid: int
    root: str
    proc: subprocess.Popen
    other_key: str = ""
    other_secret: str = ""
    stderr_path: str = ""
    _clients: list = field(default_factory=list)

    def client(self, access_key: str | None = None, secret_key: str | None = None, **config):
        from remote_kernel.client import APIConfig, Client

        cfg = APIConfig(endpoint=[self.url], access_key=access_key or self.access_key,
                        secret_key=secret_key or self.secret_key, **config)
        c = Client(cfg)
        self._clients.append(c)
        return c

    def signed_request(self, method: str, path: str, body: bytes | str | dict | None = None, *,
                       content_type: str | None = "application/json", version: str = protocol.SERVER_API_VERSION,
                       access_key: str | None = None, secret_key: str | None = None,
                       date: str | None = None, headers: dict | None = None, timeout: float = 30,
                       sign_path: str | None = None, drop_headers: tuple = ()) -> requests.Response:
        """A request signed like an official client, but with any body, path or headers."""
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        host = urlsplit(self.url).netloc
        date = date or signing.format_date()
        secret = secret_key or self.secret_key
        try:
            sig = signing.sign(secret, method, sign_path or path, date, host,
                               content_type or "application/octet-stream", version, body or b"")
        except ValueError:  # an unparseable date cannot be signed; the server must say why
            sig = "0" * 64
        hdrs = {"Date": date, "X-BackendAI-Version": version,
                "Authorization": signing.authorization_header(access_key or self.access_key, sig)}
        if content_type:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        for name in drop_headers:
            hdrs.pop(name, None)
        return requests.request(method, self.url + path, data=body, headers=hdrs, timeout=timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        for c in self._clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError("the server did not stop on SIGTERM within 30 s")
        return self.proc.returncode


def write_secret(secret: str) -> str:
    """A file holding ``secret`` alone (mode 0600), for ``serve --secret-key-file``."""
    fd, path = tempfile.mkstemp(prefix="rk-secret-")
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return path


def start_server(root: str | None = None, *extra: str, env: dict | None = None) -> ServerProcess:
    access, secret = "AKTEST" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
    other, other_secret = "AKOTHER" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
    root = root or tempfile.mkdtemp(prefix="rk-server-root-")
    stderr_path = os.path.join(tempfile.mkdtemp(prefix="rk-server-log-"), "stderr.log")
    full_env = dict(os.environ)
    full_env.update(env or {})
    # secrets in files, never in argv (which every user can read)
    secret_file, other_file = write_secret(secret), write_secret(other_secret)
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remote_kernel", "serve", "--port", "0", "--access-key", access,
             "--secret-key-file", secret_file, "--access-key", other, "--secret-key-file", other_file,
             "--root", root, "--log-level", "INFO",
             # a test run killed mid-way must not leave servers behind
             "--parent-pid", str(os.getpid()), *extra],
            stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True, env=full_env)
    deadline = time.monotonic() + 60
    url = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(("http://", "https://")):
            url = line.strip()
            break
    if url is None:
        proc.kill()
        proc.wait()
        raise RuntimeError("the server did not print its URL: " + open(stderr_path).read()[-2000:])
    key_line = proc.stdout.readline()
    assert key_line.strip() == f"access key: {access}", key_line
    return ServerProcess(url, access, secret, proc.pid, root, proc, other, other_secret, stderr_path)


def stop_checked(srv: ServerProcess) -> None:
    """Stop ``srv`` and check it ended cleanly: exit 0, no kernel left, no secret and no
    unexpected exception in its log."""
    kids = live_descendants(srv.pid)
    code = srv.stop()
    assert code == 0, f"server exited with {code}"
    left = survivors(kids, timeout=5)
    assert not left, f"kernel processes survived the server: {left}"
    with open(srv.stderr_path, encoding="utf-8", errors="replace") as log:
        text = log.read()
    assert srv.secret_key not in text and srv.other_secret not in text, "a secret reached the log"
    assert "Traceback" not in text, "the server logged an unexpected exception:\n" + text[-3000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("server-root")))
    yield srv
    stop_checked(srv)
