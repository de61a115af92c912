"""Security of authentication (issue 16): secrets never on the command line, no empty or short
secrets, one answer for every credential failure, no body read before the headers are
authenticated, TLS served directly, replays refused, and the body-signature extension."""

from __future__ import annotations

import json
import os
import signal
import socket
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


def raw_headers(url: str, method: str, path: str, access: str, secret: str, length: int,
                content_type: str = "application/json") -> bytes:
    """A request's head, signed as the official SDK signs it, announcing ``length`` body bytes."""
    host = urlsplit(url).netloc
    date = signing.format_date()
    sig = signing.sign(secret, method, path, date, host, content_type, protocol.SERVER_API_VERSION)
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nDate: {date}\r\n"
            f"X-BackendAI-Version: {protocol.SERVER_API_VERSION}\r\nContent-Type: {content_type}\r\n"
            f"Authorization: {signing.authorization_header(access, sig)}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def read_answer_head(sock: socket.socket, timeout: float) -> bytes:
    """The bytes the server sends up to the end of its answer's head (b"" if it closed first)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
    return data


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


# -- 5. no body read before the headers are authenticated -------------------------------------

HALF_SENT_CONNECTIONS = 6
DECLARED = 20_000_000  # under the server's body limit (uploads: 20 files of < 1 MiB)


def test_an_unauthenticated_body_is_answered_at_once_and_never_kept(server):
    """Six requests with a wrong signature declare 20 MB bodies and send half: each gets its 401
    while its body is still incomplete, and the server keeps none of it (before: it buffered the
    bodies, 46 → 172 MB, and answered only once they were complete)."""
    process = psutil.Process(server.pid)
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    before = process.memory_info().rss
    half = b"x" * (DECLARED // 2)
    sockets = []
    try:
        for _ in range(HALF_SENT_CONNECTIONS):
            sock = socket.create_connection((host, port), timeout=30)
            sockets.append(sock)
            sock.sendall(raw_headers(server.url, "POST", "/session/nobody/upload", server.access_key,
                                     "not-the-secret-" + "q" * 20, DECLARED, "multipart/form-data"))
            sock.sendall(half)  # returns once the server has taken it in
        for sock in sockets:
            head = read_answer_head(sock, timeout=10)
            assert head.startswith(b"HTTP/1.1 401 "), head[:200]
        grown = (process.memory_info().rss - before) / 1e6
        assert grown < 30, f"the server grew by {grown:.0f} MB while refusing six half-sent bodies"
    finally:
        for sock in sockets:
            sock.close()
    response = signed(server.url, "GET", "/session/nobody", server.access_key, server.secret_key)
    assert response.status_code == 404  # and it serves on


def test_a_body_that_does_not_arrive_in_time_closes_the_connection(launch):
    srv = launch("--body-timeout", "1", env=clean_env(BACKEND_ACCESS_KEY="AKSLOW", BACKEND_SECRET_KEY=GOOD_SECRET))
    assert srv.url, srv.stop()
    parts = urlsplit(srv.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(raw_headers(srv.url, "POST", "/session/nobody", "AKSLOW", GOOD_SECRET, 1000))
        sock.sendall(b'{"mode": ')  # and no more: the server gives up after --body-timeout
        assert read_answer_head(sock, timeout=20) == b""  # closed without an answer
    assert signed(srv.url, "GET", "/session/nobody", "AKSLOW", GOOD_SECRET).status_code == 404


# -- 2. TLS, plain HTTP only on loopback or when allowed ------------------------------------------

WIDE_ENV = dict(BACKEND_ACCESS_KEY="AKWIDE", BACKEND_SECRET_KEY=GOOD_SECRET)


def test_plain_http_beyond_loopback_is_refused_unless_allowed(launch):
    proc = refused_at_start("--host", "0.0.0.0", env=clean_env(**WIDE_ENV))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert "plain HTTP" in proc.stderr and "--certfile" in proc.stderr and "--allow-insecure-http" in proc.stderr
    srv = launch("--host", "0.0.0.0", "--allow-insecure-http", env=clean_env(**WIDE_ENV))
    assert srv.url.startswith("http://0.0.0.0:"), srv.stop()


@pytest.mark.skipif(not __import__("shutil").which("openssl"), reason="needs the openssl command")
def test_tls_beyond_loopback_needs_no_flag(launch, tmp_path):
    from test_tls import make_certificates

    ca, cert, key = make_certificates(tmp_path)
    srv = launch("--host", "0.0.0.0", "--certfile", str(cert), "--keyfile", str(key), env=clean_env(**WIDE_ENV))
    assert srv.url.startswith("https://0.0.0.0:"), srv.stop()
    url = "https://127.0.0.1:" + srv.url.rsplit(":", 1)[1]
    assert signed(url, "GET", "/session/nobody", "AKWIDE", GOOD_SECRET, verify=str(ca)).status_code == 404
    proc = refused_at_start("--certfile", str(tmp_path / "missing.pem"), env=clean_env(**WIDE_ENV))
    assert proc.returncode == 2 and "cannot use --certfile/--keyfile" in proc.stderr, proc.stderr


# -- 2. replays ----------------------------------------------------------------------------------


def test_a_replayed_request_is_refused(server):
    """The same signed request twice (as someone who captured it would send it): the second is
    refused, on another connection too; a request signed afresh passes (before: both passed)."""
    date = signing.format_date()
    host = urlsplit(server.url).netloc
    sig = signing.sign(server.secret_key, "GET", "/session/nobody", date, host, "application/json",
                       protocol.SERVER_API_VERSION)
    headers = {"Date": date, "X-BackendAI-Version": protocol.SERVER_API_VERSION, "Content-Type": "application/json",
               "Authorization": signing.authorization_header(server.access_key, sig)}
    first = requests.get(server.url + "/session/nobody", headers=headers, timeout=30)
    assert first.status_code == 404, first.text
    with requests.Session() as other_connection:
        again = other_connection.get(server.url + "/session/nobody", headers=headers, timeout=30)
    assert again.status_code == 401 and slug(again) == "auth-failed" and "replay" in again.json()["msg"], again.text
    assert signed(server.url, "GET", "/session/nobody", server.access_key, server.secret_key).status_code == 404


def test_the_client_signs_every_request_afresh():
    """Even when its clock has not moved on: a later Date, another signature."""
    from datetime import datetime, timezone

    from remote_kernel.client.auth import BackendAIAuth

    fixed = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    auth = BackendAIAuth("AKFIXED", GOOD_SECRET, clock=lambda: fixed)
    sent = [auth(requests.Request("GET", "http://127.0.0.1:9/session/s").prepare()).headers for _ in range(3)]
    assert len({h["Date"] for h in sent}) == 3 and len({h["Authorization"] for h in sent}) == 3
    assert sent[0]["Date"] == "2024-01-02T03:04:05+00:00"  # the clock's own time first


def test_the_clients_retries_are_signed_afresh(server):
    """A proxy cuts every other answer after the server has handled the request: the client's
    retry reaches the server with a new signature, so it is answered, not refused as a replay."""
    from _proxy import FlakyProxy
    from remote_kernel.client import APIConfig, Client, errors

    port = urlsplit(server.url).port
    with FlakyProxy("127.0.0.1", port, reset_share=1.0, delay_share=0.0, max_consecutive_resets=1) as proxy:
        with Client(APIConfig(endpoint=[proxy.url], access_key=server.access_key,
                              secret_key=server.secret_key)) as client:
            with pytest.raises(errors.SessionNotFound):  # a 404: the server answered the retry
                client.get_session("nobody")
        assert any(r.startswith("GET /session/nobody") for r in proxy.reset_requests), proxy.reset_requests


def test_the_replay_cache_is_bounded_and_never_lets_a_replay_through():
    from remote_kernel.server.replay import ACCEPTED, REPLAYED, TOO_OLD, ReplayCache

    now = [1000.0]
    cache = ReplayCache(window=900, capacity=4, granularity=10, clock=lambda: now[0])
    for i, dated in enumerate([995, 996, 1005, 1006]):
        assert cache.admit(str(i) * 64, None, dated) == ACCEPTED
    assert cache.admit("0" * 64, None, 995) == REPLAYED
    assert cache.admit("9" * 64, None, 1007) == ACCEPTED and len(cache) <= 4  # the oldest bucket went
    assert cache.admit("0" * 64, None, 995) == TOO_OLD  # forgotten, so refused for good
    # the same signature with two different body signatures: two requests; with a seen one: a replay
    assert cache.admit("a" * 64, "b" * 64, 1008) == ACCEPTED
    assert cache.admit("a" * 64, "c" * 64, 1008) == ACCEPTED
    assert cache.admit("a" * 64, "c" * 64, 1008) == REPLAYED
    assert cache.admit("a" * 64, None, 1008) == REPLAYED  # the body signature stripped
    # a request refused without effect (429/503) is released for its identical retry
    cache.forget("a" * 64, "c" * 64, 1008)
    assert cache.admit("a" * 64, "c" * 64, 1008) == ACCEPTED
    now[0] += 2000  # past the window: everything expired
    assert cache.admit("d" * 64, None, now[0]) == ACCEPTED and len(cache) == 1


# -- 2. body signatures (our extension) ----------------------------------------------------------


def body_signed(url: str, method: str, path: str, access: str, secret: str, body: bytes, *,
                sent_body: bytes | None = None) -> requests.Response:
    """A request with our body signature over ``body``; ``sent_body`` is what goes out instead
    (a body altered on the way)."""
    date = signing.format_date()
    host = urlsplit(url).netloc
    sig = signing.sign(secret, method, path, date, host, "application/json", protocol.SERVER_API_VERSION)
    headers = {"Date": date, "X-BackendAI-Version": protocol.SERVER_API_VERSION, "Content-Type": "application/json",
               "Authorization": signing.authorization_header(access, sig),
               protocol.BODY_SIGNATURE_HEADER: signing.body_signature(secret, date, host, sig, body)}
    return requests.request(method, url + path, data=body if sent_body is None else sent_body, headers=headers,
                            timeout=30)


def test_a_body_altered_after_signing_is_refused(server):
    body = json.dumps({"mode": "query", "code": "print('signed')"}).encode()
    altered = json.dumps({"mode": "query", "code": "print('altered')"}).encode()
    honest = body_signed(server.url, "POST", "/session/nobody", server.access_key, server.secret_key, body)
    assert honest.status_code == 404, honest.text  # the body checked out: the handler answered
    tampered = body_signed(server.url, "POST", "/session/nobody", server.access_key, server.secret_key, body,
                           sent_body=altered)
    assert tampered.status_code == 401 and slug(tampered) == "auth-failed", tampered.text
    assert protocol.BODY_SIGNATURE_HEADER in tampered.json()["msg"]


def test_body_signatures_required_our_client_works_the_sdk_way_is_refused(launch):
    env = clean_env(BACKEND_ACCESS_KEY="AKBODY", BACKEND_SECRET_KEY=GOOD_SECRET)
    srv = launch("--require-body-signature", env=env)
    assert srv.url, srv.stop()
    unsigned_body = signed(srv.url, "GET", "/session/nobody", "AKBODY", GOOD_SECRET)
    assert unsigned_body.status_code == 401 and protocol.BODY_SIGNATURE_HEADER in unsigned_body.json()["msg"]
    from remote_kernel.client import APIConfig, Client

    with Client(APIConfig(endpoint=[srv.url], access_key="AKBODY", secret_key=GOOD_SECRET)) as client:
        client.create_session("python", name="bodysig")
        assert client.execute("bodysig", "query", "print(6 * 7)")["console"] == [["stdout", "42\n"]]
        client.upload("bodysig", [("up.txt", b"uploaded")])  # multipart
        assert client.download_single("bodysig", "up.txt") == b"uploaded"
        from remote_kernel.client.stream import StreamRun

        with StreamRun(client, "bodysig") as run:  # the websocket's upgrade request is signed too
            result = run.exchange({"mode": "query", "code": "print('streamed')", "options": {}})
            console = list(result["console"])
            while result["status"] != "finished":
                result = run.exchange({"mode": "continue", "code": ""})
                console += result["console"]
        assert ["stdout", "streamed\n"] in console, console
        client.destroy_session("bodysig")
