"""A flaky network between the bridge kernel and the server (tests/_proxy.py resets a share of
connections after the request went out — the lost answer — and delays others).

With the ``resumable-runs`` extension every execute call is idempotent (client-chosen runId,
acknowledged cursor), so the bridge re-sends a request whose answer was lost and the server
answers it again from the cursor: every line arrives exactly once, in order.

On a classic server (no extension) nothing makes a re-sent ``query`` safe, so the bridge does not
re-send one whose answer may have been lost, and a lost ``continue`` answer takes its records
with it; a streamed run (the websocket loop, what the bridge uses on such servers) is lost with
its connection.  What is guaranteed there, by either loop: the cell completes or ends with a
clear error naming the endpoint — it never hangs and never runs the code twice.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

import kernel_support as ks
from _proxy import FlakyProxy

pytestmark = pytest.mark.slow

CLASSIC = ks.CLASSIC_KERNEL
LINES = 10_000
# Bursts of output with pauses in between, so the run spans many long polls the proxy can break.
FLOOD = (f"import time\nfor i in range({LINES}):\n    print(f'line {{i}}')\n"
         "    if i % 100 == 99:\n        time.sleep(0.03)\n")


@pytest.fixture(scope="module")
def server():
    with ks.start_server() as srv:
        yield srv


def proxied_env(server, proxy) -> dict[str, str]:
    env = ks.server_env(server)
    env["BACKEND_ENDPOINT"] = proxy.url
    return env


def warm_up(kc) -> None:
    reply, _, _ = ks.execute(kc, "pass", timeout=60)
    assert reply["status"] == "ok", reply


def test_every_line_exactly_once_in_order_under_resets(server, kernelspec_root):
    host, port = server.url.rsplit("//", 1)[1].split(":")
    # the transport re-sends an idempotent call twice: bursts of at most 2 resets get through
    with FlakyProxy(host, int(port), reset_share=0.0, delay_share=0.0, max_consecutive_resets=2,
                    seed=20240915) as proxy:
        with ks.running_kernel(proxied_env(server, proxy)) as (km, kc):
            warm_up(kc)  # session created over a clean line; the storm starts with the cell
            proxy.reset_share, proxy.delay_share = 0.25, 0.25
            started = time.monotonic()
            reply, outputs, _ = ks.execute(kc, FLOOD, timeout=180)
            took = time.monotonic() - started
            proxy.reset_share = proxy.delay_share = 0.0
            lines = ks.stdout_of(outputs).splitlines()
            expected = [f"line {i}" for i in range(LINES)]
            execute_resets = [r for r in proxy.reset_requests
                              if re.fullmatch(r"POST /session/[^/ ]+ HTTP/1\.1", r)]
            print(f"\nflaky proxy: lines delivered {len(lines)} vs sent {LINES} "
                  f"(unique {len(set(lines))}); connections {proxy.connections}, resets {proxy.resets} "
                  f"({len(execute_resets)} on execute long polls), delays {proxy.delays}; {took:.1f} s")
            assert reply["status"] == "ok", reply
            assert proxy.resets > 0 and execute_resets, proxy.reset_requests
            missing = sorted(set(expected) - set(lines), key=lambda s: int(s.split()[1]))
            assert not missing, f"{len(missing)} lines lost, first {missing[:5]}"
            assert len(lines) == len(set(lines)), "lines duplicated"
            assert lines == expected
            assert ks.stderr_of(outputs) == ""
            # and the session is the same one: nothing was re-created behind our back
            reply, outputs, _ = ks.execute(kc, "print(i)", timeout=60)
            assert ks.stdout_of(outputs) == f"{LINES - 1}\n"


# A streamed run is one request (the upgrade) whose answer lasts the whole run: a higher share
# of resets gives its few requests about as many chances to break as the REST loop's many polls.
@pytest.mark.parametrize("loop, reset_share", [("rest", 0.25), ("websocket", 0.6)])
def test_classic_server_completes_or_fails_clearly_never_hangs(server, kernelspec_root, loop, reset_share):
    """Without the extension (the bridge told not to use it): no guarantee of completeness, but
    a bounded end with a clear error, and never the code run twice."""
    name = f"{CLASSIC}-{loop}"
    ks.write_kernelspec(kernelspec_root, name=name,
                        extra_argv=["--RemoteKernel.use_extensions=False", f"--RemoteKernel.streaming={loop}"])
    host, port = server.url.rsplit("//", 1)[1].split(":")
    with FlakyProxy(host, int(port), reset_share=0.0, delay_share=0.0, max_consecutive_resets=2,
                    seed=7) as proxy:
        with ks.running_kernel(proxied_env(server, proxy), name=name) as (km, kc):
            warm_up(kc)
            ks.execute(kc, "runs = 0", timeout=60)
            proxy.reset_share, proxy.delay_share = reset_share, 0.25
            outcomes = []
            for _ in range(3):
                started = time.monotonic()
                reply, outputs, _ = ks.execute(kc, "runs += 1\n" + FLOOD.replace(str(LINES), "2000"), timeout=120)
                outcomes.append((reply["status"], reply.get("ename"), time.monotonic() - started))
                if reply["status"] == "error":
                    assert reply["ename"] in ("ConnectionFailed", "RequestTimeout"), reply
                    assert proxy.url in reply["evalue"]
                else:
                    lines = ks.stdout_of(outputs).splitlines()
                    assert len(lines) == len(set(lines)), "classic mode duplicated output"
            proxy.reset_share = proxy.delay_share = 0.0
            print(f"\nclassic ({loop}) under the flaky proxy: {outcomes}; resets {proxy.resets}, delays {proxy.delays}")
            assert proxy.resets > 0
            # never run twice: each cell incremented the counter at most once
            reply, outputs, _ = ks.execute(kc, "print(runs)", timeout=60)
            assert reply["status"] == "ok" and int(ks.stdout_of(outputs)) <= 3


def test_an_answer_cut_by_an_orderly_close_is_noticed_not_taken_as_empty(server):
    """A middlebox that closes the connection (FIN, not RST) inside an answer's headers: the
    client must see a broken answer (and re-send an idempotent call), never accept a headless
    200 with an empty body as the server's answer."""
    from remote_kernel.client import APIConfig, Client, errors

    host, port = server.url.rsplit("//", 1)[1].split(":")
    with FlakyProxy(host, int(port), reset_share=0.0, delay_share=0.0, max_consecutive_resets=1,
                    cut_with="fin", seed=99) as proxy:
        with Client(APIConfig(endpoint=[proxy.url], access_key=server.access_key,
                              secret_key=server.secret_key)) as client:
            name = "fin-" + os.urandom(4).hex()
            client.create_session("python", name=name)
            run_id = os.urandom(16).hex()
            first = client.execute(name, "query", "print('hi')", run_id, {"cursor": 0}, idempotent=True)
            while first["status"] != "finished":
                first = client.execute(name, "continue", "", run_id, {"cursor": 0}, idempotent=True)
            proxy.reset_share = 1.0  # every other answer cut (bursts of one), re-sends get through
            outcomes = []
            for _ in range(20):
                try:
                    result = client.execute(name, "continue", "", run_id, {"cursor": 0}, idempotent=True)
                    outcomes.append(result["status"])
                except errors.ConnectionFailed:
                    outcomes.append("ConnectionFailed")
                except errors.BadResponse as exc:
                    outcomes.append(f"BadResponse: {exc}")
            proxy.reset_share = 0.0
            client.destroy_session(name)
    print(f"\norderly cuts: {proxy.resets}; outcomes {sorted(set(outcomes))}")
    assert proxy.resets >= 10
    assert all(o == "finished" for o in outcomes), outcomes


@pytest.mark.parametrize("interrupt", ["interrupt_request", "SIGINT"])
def test_a_server_that_stops_answering_can_be_abandoned(server, kernelspec_root, interrupt):
    # The cell's loop blocks on an HTTP answer that will not come for 30 s; a second interrupt
    # after the grace time must still end the cell at once, and the kernel must live on.
    host, port = server.url.rsplit("//", 1)[1].split(":")
    with FlakyProxy(host, int(port), reset_share=0.0, delay_share=0.0) as proxy:
        with ks.running_kernel(proxied_env(server, proxy)) as (km, kc):
            def requests_pass(seen: int) -> None:
                """Wait for a request through the proxy after the ``seen`` ones (no other
                event exists: the answers are held)."""
                deadline = time.monotonic() + 30
                while proxy.connections <= seen:  # a bounded poll of the proxy's count
                    assert time.monotonic() < deadline, "no request reached the proxy"
                    time.sleep(0.01)

            def interrupt_once(first: bool) -> None:
                if interrupt == "SIGINT":
                    seen = proxy.connections
                    os.kill(km.provisioner.process.pid, signal.SIGINT)
                    if first:  # taken in: the kernel sends the remote its interrupt request
                        requests_pass(seen)
                else:
                    ks.interrupt_request(kc)  # its reply says it was taken in

            warm_up(kc)
            proxy.read_delay = 30.0  # every answer from now on is held
            seen = proxy.connections
            msg_id = kc.execute("print('never seen')")
            # running: its execute request went out (and waits for the held answer)
            ks.abandon_after_two_interrupts(kc, msg_id, running=lambda: requests_pass(seen),
                                            interrupt=interrupt_once)
            proxy.read_delay = 0.0


def test_a_cell_waiting_for_a_session_that_never_gets_created_ends_at_the_first_interrupt(server, kernelspec_root):
    # From the start no answer comes: the first cell waits for the session's creation.
    host, port = server.url.rsplit("//", 1)[1].split(":")
    with FlakyProxy(host, int(port), reset_share=0.0, delay_share=0.0, read_delay=30.0) as proxy:
        with ks.running_kernel(proxied_env(server, proxy)) as (km, kc):
            msg_id = kc.execute("print('never seen')")
            # No request of the cell's own gets out (it waits for the session's creation), so
            # the event is the kernel's execute_input: the cell waits right after it.
            ks.wait_for_iopub(kc, msg_id, lambda m: m["msg_type"] == "execute_input")
            ks.interrupt_request(kc)
            # nothing of the cell reached the remote: one interrupt ends the wait (the start goes on)
            reply = ks.shell_reply(kc, msg_id, timeout=20)["content"]
            assert reply["ename"] == "KeyboardInterrupt", reply
            assert "interrupted while the remote session was being started" in reply["evalue"]
            assert kc.kernel_info(reply=True, timeout=10)["content"]["status"] == "ok"
            proxy.read_delay = 0.0
