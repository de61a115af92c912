"""The bridge against a server behind TLS, as real clusters are: a private CA given by
``BACKEND_CA_BUNDLE``, verification switched off by ``BACKEND_SKIP_SSLCERT_VALIDATION``, and a
clear error when the certificate cannot be verified — for the REST calls and for the websocket
execute loop (wss) alike.  A TLS-terminating proxy (as nginx would be) sits in front of the
embedded server, and the embedded server serves TLS itself (``serve --certfile --keyfile``);
the certificates are made here with the openssl command."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

import kernel_support as ks
import server_fixture
from _relay import Listener, splice

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]

STREAMED = "rk-tls-auto"


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key): a private CA and a certificate for
    127.0.0.1 and localhost signed by it."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=remote_kernel test CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr")
    (folder / "san.cnf").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.cnf", "-out", "server.pem")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


class TLSProxy:
    """https://127.0.0.1:PORT → the plain-HTTP server, byte for byte (websocket upgrades too)."""

    def __init__(self, target_port: int, certfile: Path, keyfile: Path):
        self.target = ("127.0.0.1", target_port)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certfile, keyfile)
        self.listener = Listener(self._serve)
        self.url = f"https://127.0.0.1:{self.listener.port}"

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that does not trust us: the handshake fails, as it should
            return
        splice(client, socket.create_connection(self.target))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls(certs):
    """(proxy, CA bundle) in front of a classic server: the bridge's default there is the
    websocket loop, so a cell exercises both https (session calls) and wss (the run)."""
    ca, cert, key = certs
    srv = server_fixture.start_server(tempfile.mkdtemp(prefix="rk-tls-srv-"), "--no-extensions")
    proxy = TLSProxy(int(srv.url.rsplit(":", 1)[1]), cert, key)
    try:
        yield srv, proxy, ca
    finally:
        proxy.close()
        srv.stop()


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls-specs")
    ks.write_kernelspec(root, name=STREAMED)
    with ks.on_jupyter_path(root):
        yield root


def tls_env(srv, proxy, **extra: str) -> dict[str, str]:
    return dict(ks.server_env(srv), BACKEND_ENDPOINT=proxy.url, **extra)


@pytest.mark.parametrize("trust", ["ca-bundle", "skip-verification"])
def test_cells_run_and_stream_over_tls(tls, specs, trust):
    srv, proxy, ca = tls
    extra = {"BACKEND_CA_BUNDLE": str(ca)} if trust == "ca-bundle" else {"BACKEND_SKIP_SSLCERT_VALIDATION": "true"}
    with ks.running_kernel(tls_env(srv, proxy, **extra), name=STREAMED) as (_km, kc):
        reply, outputs, _ = ks.execute(kc, "import time\nfor i in range(3):\n    print(i, flush=True)\n"
                                           "    time.sleep(0.2)", timeout=60)
        assert reply["status"] == "ok", reply
        assert ks.stdout_of(outputs) == "0\n1\n2\n"
        reply, outputs, _ = ks.execute(kc, "%remote info")
        assert "execute loop: websocket" in ks.stdout_of(outputs)


def test_an_untrusted_certificate_is_a_clear_error(tls, specs):
    srv, proxy, _ = tls
    with ks.running_kernel(tls_env(srv, proxy), name=STREAMED) as (_km, kc):
        reply, _, _ = ks.execute(kc, "print('never')", timeout=60)
        assert reply["status"] == "error", reply
        assert reply["ename"] == "ConnectionFailed", reply
        assert proxy.url in reply["evalue"] and "TLS handshake failed" in reply["evalue"], reply["evalue"]
        assert "BACKEND_CA_BUNDLE" in reply["evalue"] and srv.secret_key not in reply["evalue"]


def test_the_websocket_checks_the_certificate_too(tls):
    """The websocket connection verifies like the REST calls: trusted through the CA bundle, a
    clear error when it is not (here: the REST calls trust the CA, the websocket is told to use
    the system's CAs only)."""
    from remote_kernel.client import APIConfig, Client, errors
    from remote_kernel.client.stream import StreamRun

    srv, proxy, ca = tls
    with Client(APIConfig(endpoint=[proxy.url], access_key=srv.access_key, secret_key=srv.secret_key,
                          ca_bundle=str(ca))) as client:
        client.create_session("python", name="tls-ws")
        try:
            with StreamRun(client, "tls-ws") as run:
                result = run.exchange({"mode": "query", "code": "print('over wss')", "options": {}})
                console = list(result["console"])
                while result["status"] != "finished":
                    result = run.exchange({"mode": "continue", "code": ""})
                    console += result["console"]
                assert result["exitCode"] == 0 and ["stdout", "over wss\n"] in console, (result, console)
            client.transport.session.verify = True  # the system's CAs: ours is unknown to them
            # refused before anything was sent: the bridge hands the cell to the REST loop, whose
            # error (test above) names the endpoint and the settings
            with pytest.raises(errors.StreamUnavailable, match="TLS handshake failed"):
                StreamRun(client, "tls-ws").exchange({"mode": "query", "code": "print(1)", "options": {}})
        finally:
            client.transport.session.verify = str(ca)
            client.destroy_session("tls-ws")


@pytest.fixture(scope="module")
def direct(certs):
    """A classic server serving TLS itself (``--certfile``/``--keyfile``), and the CA bundle."""
    ca, cert, key = certs
    srv = server_fixture.start_server(tempfile.mkdtemp(prefix="rk-tls-direct-"), "--no-extensions",
                                      "--certfile", str(cert), "--keyfile", str(key))
    try:
        yield srv, ca
    finally:
        srv.stop()


def test_the_server_serves_tls_itself(direct, specs):
    """https and wss straight to the embedded server, trusted through BACKEND_CA_BUNDLE; an
    untrusted client and plain HTTP get nowhere."""
    srv, ca = direct
    assert srv.url.startswith("https://127.0.0.1:"), srv.url
    with ks.running_kernel(dict(ks.server_env(srv), BACKEND_CA_BUNDLE=str(ca)), name=STREAMED) as (_km, kc):
        reply, outputs, _ = ks.execute(kc, "print('over tls')", timeout=60)
        assert reply["status"] == "ok" and ks.stdout_of(outputs) == "over tls\n", (reply, outputs)
        reply, outputs, _ = ks.execute(kc, "%remote info")
        assert "execute loop: websocket" in ks.stdout_of(outputs)
    with ks.running_kernel(ks.server_env(srv), name=STREAMED) as (_km, kc):
        reply, _, _ = ks.execute(kc, "print('never')", timeout=60)
        assert reply["status"] == "error" and "TLS handshake failed" in reply["evalue"], reply
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get("http://" + srv.url.split("://", 1)[1] + "/", timeout=10)
