"""Transport behaviour over real loopback sockets: fail-over, keep-alive, and which failures
are retried (never a query that may have reached the server)."""

from __future__ import annotations

import threading

import pytest

from _fakes import Reply, ScriptedServer, closed_port, problem
from remote_kernel.client import APIConfig, Client, errors
from remote_kernel.client.transport import Transport

SECRET = "sk-transport-secret"
OK = Reply(200, {"result": {"runId": "ab" * 16, "status": "finished", "exitCode": 0, "console": []}})


def client_for(*urls, sleeps=None, **transport_kw):
    cfg = APIConfig(endpoint=list(urls), access_key="AK", secret_key=SECRET,
                    connection_timeout=2, read_timeout=transport_kw.pop("read_timeout", 10))
    sleep = (lambda s: sleeps.append(s)) if sleeps is not None else (lambda s: None)
    transport = Transport.from_config(cfg, sleep=sleep, **transport_kw)
    return Client(cfg, transport)


def test_failover_from_closed_port_and_remembers_endpoint():
    dead = f"http://127.0.0.1:{closed_port()}"
    with ScriptedServer([OK, OK]) as server:
        with client_for(dead, server.url) as client:
            client.execute("rk-fo12", "query", "1")
            assert client.transport.endpoint == server.url
            client.execute("rk-fo12", "query", "2")
    assert len(server.requests) == 2


def test_all_endpoints_down_is_connection_failed_naming_them():
    ports = [closed_port(), closed_port()]
    sleeps = []
    client = client_for(*(f"http://127.0.0.1:{p}" for p in ports), sleeps=sleeps)
    with pytest.raises(errors.ConnectionFailed) as info:
        client.server_info
    text = str(info.value)
    assert all(str(p) in text for p in ports) and "start the server" in text and SECRET not in text
    assert sleeps == [0.25, 0.5]  # two backoff rounds, then give up


def test_query_is_not_resent_after_connection_drop():
    with ScriptedServer([Reply(drop=True), OK]) as server:
        with client_for(server.url) as client:
            with pytest.raises(errors.ConnectionFailed, match="may have reached the server"):
                client.execute("rk-dr12", "query", "x = 1")
    assert len(server.requests) == 1  # exactly one attempt reached the server


def test_idempotent_execute_is_resent_after_drop():
    with ScriptedServer([Reply(drop=True), OK]) as server:
        with client_for(server.url) as client:
            result = client.execute("rk-dr12", "continue", "", run_id="ab" * 16,
                                    options={"cursor": 0}, idempotent=True)
    assert result["status"] == "finished"
    assert [r.json()["mode"] for r in server.requests] == ["continue", "continue"]


def test_get_is_retried_after_drop():
    with ScriptedServer([Reply(drop=True), Reply(200, {"result": {"logs": "L"}})]) as server:
        with client_for(server.url) as client:
            assert client.logs("rk-lg12") == "L"
    assert len(server.requests) == 2


def test_query_read_timeout_is_not_retried():
    released, answered = threading.Event(), threading.Event()

    def slow(req):
        if req.path != "/probe":
            released.wait(30)  # the answer comes only once the client has given up
        answered.set()
        return OK
    with ScriptedServer(slow) as server:
        with client_for(server.url, read_timeout=0.3) as client:
            with pytest.raises(errors.RequestTimeout):
                client.execute("rk-to12", "query", "sleep")
        released.set()
        assert answered.wait(30)
        # The server answers one request at a time: a re-sent query, sent before the client gave
        # up, has waited since then and is answered before this later one.
        with client_for(server.url) as probe:
            probe.transport.request("POST", "/probe", json={})
    assert [r.path for r in server.requests] == ["/session/rk-to12", "/probe"]


def test_rate_limited_waits_retry_after_then_succeeds():
    sleeps = []
    replies = [problem(429, "rate-limit-exceeded", headers={"Retry-After": "1.5"}),
               problem(503, "server-frozen", headers={"Retry-After": "0.5"}), OK]
    with ScriptedServer(replies) as server:
        with client_for(server.url, sleeps=sleeps) as client:
            assert client.execute("rk-rl12", "query", "1")["status"] == "finished"
    assert sleeps == [1.5, 0.5] and len(server.requests) == 3


def test_wait_beyond_cap_raises_typed_error():
    sleeps = []
    replies = [problem(429, "rate-limit-exceeded", headers={"X-RateLimit-Window": "900"})]
    with ScriptedServer(replies) as server:
        with client_for(server.url, sleeps=sleeps, max_wait=30) as client:
            with pytest.raises(errors.RateLimited) as info:
                client.execute("rk-rl12", "query", "1")
    assert info.value.retry_after == 900 and sleeps == [] and len(server.requests) == 1


def test_non_idempotent_5xx_is_not_retried():
    with ScriptedServer([problem(500, "kernel-execution-failed"), OK]) as server:
        with client_for(server.url) as client:
            with pytest.raises(errors.ServerError):
                client.execute("rk-se12", "query", "1")
    assert len(server.requests) == 1


def test_keep_alive_reuses_one_connection():
    with ScriptedServer([OK] * 5) as server:
        with client_for(server.url) as client:
            for _ in range(5):
                client.execute("rk-ka12", "query", "1")
    assert len({r.client for r in server.requests}) == 1


def test_no_endpoint_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="BACKEND_ENDPOINT"):
        Transport([])


def test_loopback_endpoints_ignore_proxy_environment(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    with ScriptedServer([OK]) as server:
        with client_for(server.url) as client:
            assert client.execute("rk-px12", "query", "1")["status"] == "finished"
    assert Transport(["https://api.example.com"]).session.trust_env is True
