"""Security of authentication (issue 16): secrets never on the command line, no empty or short
secrets, one answer for every credential failure, no body read before the headers are
authenticated, TLS served directly, replays refused, and the body-signature extension."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from urllib.parse import urlsplit

import psutil
import pytest
import requests

import server_fixture
from remote_kernel import protocol, signing

SERVE = [sys.executable, "-m", "remote_kernel", "serve", "--port", "0", "--warm-kernels", "0"]
GOOD_SECRET = "a-good-long-secret-" + "x" * 20


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env.update(extra)
    return env


class Launched:
    """``remote-kernel serve`` with the given arguments, until its endpoint line (or its exit)."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([*SERVE, "--root", tempfile.mkdtemp(prefix="rk-auth-root-"),
                                      "--parent-pid", str(os.getpid()), *args],
                                     env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.url = self.proc.stdout.readline().strip()  # the endpoint line, or "" when it exited

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err


@pytest.fixture
def launch():
    started: list[Launched] = []

    def go(*args: str, env: dict | None = None) -> Launched:
        started.append(Launched(*args, env=env))
        return started[-1]

    yield go
    for launched in started:
        launched.stop()


def refused_at_start(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVE, *args], env=env or clean_env(), capture_output=True, text=True, timeout=60)


def signed(url: str, method: str, path: str, access: str, secret: str, *, body: bytes = b"",
           date: str | None = None, headers: dict | None = None, verify: bool | str = True) -> requests.Response:
    """A request signed as the official SDK signs it (no extension header)."""
    date = date or signing.format_date()
    host = urlsplit(url).netloc
    sig = signing.sign(secret, method, path, date, host, "application/json", protocol.SERVER_API_VERSION)
    hdrs = {"Date": date, "X-BackendAI-Version": protocol.SERVER_API_VERSION, "Content-Type": "application/json",
            "Authorization": signing.authorization_header(access, sig), **(headers or {})}
    return requests.request(method, url + path, data=body, headers=hdrs, timeout=30, verify=verify)


def slug(response: requests.Response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


# -- 1. secrets never on the command line ---------------------------------------------------


@pytest.mark.parametrize("form", ["--secret-key", "--secret-key="])
def test_a_secret_on_the_command_line_is_refused(form):
    secret = "cmdline-secret-" + "y" * 20
    args = ["--access-key", "AKCMD", form, secret] if form == "--secret-key" else ["--access-key", "AKCMD", form + secret]
    proc = refused_at_start(*args)
    assert proc.returncode != 0 and proc.stdout == ""
    for way in ("BACKEND_SECRET_KEY", "--secret-key-file", "--keys-file"):
        assert way in proc.stderr, proc.stderr
    assert secret not in proc.stderr


def test_secrets_from_files_and_a_keys_file_with_several_keypairs(launch, tmp_path):
    secret_file = tmp_path / "one.secret"
    secret_file.write_text("file-secret-" + "z" * 20 + "\n")
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"keys": [{"access_key": "AKTWO", "secret_key": "two-secret-" + "t" * 20},
                                              {"access_key": "AKTHREE", "secret_key": "three-secret-" + "h" * 20}]}))
    srv = launch("--access-key", "AKONE", "--secret-key-file", str(secret_file), "--keys-file", str(keys_file))
    assert srv.url.startswith("http://127.0.0.1:"), srv.stop()
    for access, secret in [("AKONE", "file-secret-" + "z" * 20), ("AKTWO", "two-secret-" + "t" * 20),
                           ("AKTHREE", "three-secret-" + "h" * 20)]:
        response = signed(srv.url, "GET", "/session/nobody", access, secret)
        assert response.status_code == 404 and slug(response) == "session-not-found", (access, response.text)
        assert signed(srv.url, "GET", "/session/nobody", access, "wrong-" + secret).status_code == 401
        assert secret not in " ".join(psutil.Process(srv.proc.pid).cmdline())


def test_the_test_servers_keep_their_secrets_out_of_argv(server):
    argv = " ".join(psutil.Process(server.pid).cmdline())
    assert server.secret_key not in argv and server.other_secret not in argv


# -- 3. no empty or short secrets -------------------------------------------------------------


@pytest.mark.parametrize("secret, word", [("", "empty"), ("short-secret", "too short")])
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_an_empty_or_short_secret_in_the_environment_is_refused(secret, word, host):
    proc = refused_at_start("--host", host, env=clean_env(BACKEND_ACCESS_KEY="AKWEAK", BACKEND_SECRET_KEY=secret))
    assert proc.returncode != 0 and proc.stdout == "", proc.stdout
    assert word in proc.stderr and "at least 16 characters" in proc.stderr, proc.stderr
    assert not secret or secret not in proc.stderr


def test_an_empty_secret_file_or_keys_file_entry_is_refused(tmp_path):
    empty = tmp_path / "empty.secret"
    empty.write_text("\n")
    proc = refused_at_start("--access-key", "AKEMPTY", "--secret-key-file", str(empty))
    assert proc.returncode != 0 and "'AKEMPTY' is empty" in proc.stderr, proc.stderr
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"keys": [{"access_key": "AKOK", "secret_key": GOOD_SECRET},
                                              {"access_key": "AKBAD", "secret_key": "tiny"}]}))
    proc = refused_at_start("--keys-file", str(keys_file))
    assert proc.returncode != 0 and "'AKBAD' is too short" in proc.stderr and "tiny" not in proc.stderr


# -- 13. one answer for every credential failure ------------------------------------------------


def test_an_unknown_access_key_and_a_wrong_signature_get_the_same_answer(server):
    """Neither answer tells whether an access key exists."""
    unknown = signed(server.url, "GET", "/session/nobody", "AKNOBODYHASTHIS", GOOD_SECRET)
    wrong = signed(server.url, "GET", "/session/nobody", server.access_key, GOOD_SECRET)
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json() and slug(wrong) == "auth-failed", (unknown.text, wrong.text)
    assert {k: v for k, v in unknown.headers.items() if k not in ("Date",)} == \
        {k: v for k, v in wrong.headers.items() if k not in ("Date",)}
