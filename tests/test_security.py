"""Security: every way a signature can be for something else is refused; sessions belong to
the key that created them on every endpoint; secrets never reach the server's debug log, error
bodies, installed kernel.json files, executed notebooks or the bridge kernel's own log."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import requests

import kernel_support as ks
import server_fixture
from remote_kernel import protocol, signing
from remote_kernel.client import errors


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The embedded server at debug log level (everything it logs is grepped for secrets)."""
    srv = server_fixture.start_server(str(tmp_path_factory.mktemp("sec-root")), "--log-level", "debug")
    yield srv
    srv.stop()
    log = open(srv.stderr_path, encoding="utf-8", errors="replace").read()
    assert srv.secret_key not in log and srv.other_secret not in log


@pytest.fixture(scope="module")
def owned(server):
    client = server.client()
    name = "sec-" + uuid.uuid4().hex[:8]
    client.create_session("python", name=name)
    client.upload(name, [("mine.txt", b"private")])
    yield client, name
    try:
        client.destroy_session(name)
    except errors.APIError:
        pass


def raw(server, method, path, *, sign_method=None, sign_path=None, sign_host=None, sign_version=None,
        version=protocol.SERVER_API_VERSION, body=b"", sign_body=None, date=None, secret=None,
        access=None, content_type="application/json"):
    """A request whose signature covers whatever the caller says (to forge each mismatch)."""
    date = date or signing.format_date()
    host = sign_host or urlsplit(server.url).netloc
    sig = signing.sign(secret or server.secret_key, sign_method or method, sign_path or path, date, host,
                       content_type, sign_version or version, body if sign_body is None else sign_body)
    headers = {"Date": date, "X-BackendAI-Version": version, "Content-Type": content_type,
               "Authorization": signing.authorization_header(access or server.access_key, sig)}
    return requests.request(method, server.url + path, data=body, headers=headers, timeout=30)


def skewed(minutes: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()


FORGERIES = [
    ("signed-for-other-host", dict(sign_host="evil.example:80"), 401, "auth-failed"),
    ("signed-for-other-method", dict(sign_method="DELETE"), 401, "auth-failed"),
    ("signed-for-other-version", dict(sign_version="v7.20230615"), 401, "auth-failed"),
    ("signed-for-other-path", dict(sign_path="/session/someone-else"), 401, "auth-failed"),
    # (since v4.20181215 the body is not part of the string to sign, see
    # docs/PROTOCOL.md#signing-requests, so a tampered body cannot be detected by the
    # signature; TLS is what protects it)
    ("unknown-key", dict(access="AKNOBODYKNOWS"), 401, "auth-failed"),
    ("other-keys-secret", dict(secret="not-the-secret"), 401, "auth-failed"),
    ("date-16-min-ago", dict(date=lambda: skewed(-16)), 400, "invalid-auth-params"),
    ("date-16-min-ahead", dict(date=lambda: skewed(16)), 400, "invalid-auth-params"),
    ("date-a-day-ago", dict(date=lambda: skewed(-24 * 60)), 400, "invalid-auth-params"),
]


@pytest.mark.parametrize("case", FORGERIES, ids=[c[0] for c in FORGERIES])
def test_forged_signatures_are_refused(server, owned, case):
    _, kwargs, status, slug = case
    kwargs = dict(kwargs)
    if callable(kwargs.get("date")):  # dates are made when the case runs, not at import
        kwargs["date"] = kwargs["date"]()
    method = kwargs.pop("method", "GET")
    response = raw(server, method, f"/session/{owned[1]}", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["type"] == protocol.PROBLEM_BASE + slug
    for secret in (server.secret_key, server.other_secret):
        assert secret not in response.text
    assert raw(server, "GET", f"/session/{owned[1]}").status_code == 200  # the honest twin passes


def test_unsigned_requests_are_refused_everywhere(server, owned):
    name = owned[1]
    for method, path in [("GET", f"/session/{name}"), ("POST", f"/session/{name}"), ("DELETE", f"/session/{name}"),
                         ("POST", "/session"), ("POST", f"/session/{name}/download"),
                         ("POST", f"/session/{name}/upload"), ("GET", f"/session/{name}/logs")]:
        r = requests.request(method, server.url + path, json={}, timeout=30,
                             headers={"X-BackendAI-Version": protocol.SERVER_API_VERSION, "Date": signing.format_date()})
        assert r.status_code == 401, (method, path, r.text)
    assert owned[0].get_session(name)["status"] == "RUNNING"


def test_another_key_cannot_touch_a_session_on_any_endpoint(server, owned):
    mine, name = owned
    other = server.client(access_key=server.other_key, secret_key=server.other_secret)
    attempts = {
        "get": lambda: other.get_session(name),
        "execute": lambda: other.execute(name, "query", "open('stolen', 'w').write('x')"),
        "upload": lambda: other.upload(name, [("planted.txt", b"x")]),
        "download": lambda: other.download(name, ["mine.txt"]),
        "download_single": lambda: other.download_single(name, "mine.txt"),
        "list_files": lambda: other.list_files(name),
        "logs": lambda: other.logs(name),
        "complete": lambda: other.complete(name, "imp", {}),
        "interrupt": lambda: other.interrupt(name),
        "restart": lambda: other.restart_session(name),
        "destroy": lambda: other.destroy_session(name),
    }
    for what, attempt in attempts.items():
        with pytest.raises(errors.SessionNotFound):
            attempt()
            pytest.fail(f"another key could {what} the session")
    # nothing happened to it
    files = {f["filename"] for f in mine.list_files(name)}
    assert "mine.txt" in files and "planted.txt" not in files and "stolen" not in files
    assert mine.get_session(name)["status"] == "RUNNING"
    assert mine.download_single(name, "mine.txt") == b"private"


def test_installed_kernel_json_holds_no_secret(tmp_path, server):
    env = dict(os.environ, BACKEND_ACCESS_KEY=server.access_key, BACKEND_SECRET_KEY=server.secret_key,
               BACKEND_ENDPOINT=server.url)
    subprocess.run([sys.executable, "-m", "remote_kernel", "install", "--prefix", str(tmp_path), "--all",
                    "--endpoint", server.url], env=env, check=True, capture_output=True, timeout=120)
    specs = glob.glob(str(tmp_path / "share" / "jupyter" / "kernels" / "*" / "kernel.json"))
    assert specs
    for spec in specs:
        text = open(spec).read()
        assert server.secret_key not in text and "BACKEND_SECRET_KEY" not in json.loads(text).get("env", {})


@pytest.mark.slow
def test_no_secret_in_executed_notebook_nor_kernel_log(tmp_path, server):
    import nbformat
    from nbclient import NotebookClient

    root = tmp_path / "specs"
    ks.write_kernelspec(root, name="remote-sec", extra_argv=["--log-level=DEBUG"])
    saved = os.environ.get("JUPYTER_PATH")
    ks.prepend_jupyter_path(root)
    cells = [
        "print('hello')",
        "1/0",
        "%remote info",
        "%remote download no-such-file.txt",
        "import os; print(sorted(os.environ))",
        "input('never answered')",
        "%remote nonsense",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    log_path = tmp_path / "kernel.log"
    try:
        with open(log_path, "wb") as log:
            NotebookClient(nb, kernel_name="remote-sec", timeout=60, allow_errors=True,
                           ).execute(env=dict(os.environ, **ks.server_env(server)), stderr=log, stdout=log)
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = saved
    text = nbformat.writes(nb)
    assert "ZeroDivisionError" in text and "hello" in text  # it really ran
    kernel_log = log_path.read_text(errors="replace")
    assert kernel_log, "the kernel logged nothing at DEBUG level"
    for secret in (server.secret_key, server.other_secret):
        assert secret not in text, "a secret reached the notebook"
        assert secret not in kernel_log, "a secret reached the kernel's log"


def test_no_secret_in_the_server_debug_log_after_a_mixed_workload(server, owned):
    client, name = owned
    client.execute(name, "query", "print('work')")
    raw(server, "GET", f"/session/{name}", secret="wrong-" + server.secret_key[:5])
    raw(server, "GET", f"/session/{name}", access=server.other_key, secret=server.secret_key)
    server.signed_request("POST", f"/session/{name}", b"{broken")
    server.signed_request("POST", f"/session/{name}/download", {"files": ["../../etc/passwd"]})
    log = open(server.stderr_path, encoding="utf-8", errors="replace").read()
    assert "DEBUG" in log or "debug" in log.lower() or len(log) > 0, "the server logged nothing"
    assert server.secret_key not in log and server.other_secret not in log
    assert server.secret_key[:12] not in log  # not even a prefix
