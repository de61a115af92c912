"""The bridge against direct ipykernel, measured through jupyter_client as a frontend would.

    python bench/bench_bridge.py [--quick] [--only trivial,streaming,throughput,startup,notebook] [--cells N]

1. trivial    `x = 1` round trip, interleaved direct/bridge     target: median and p95 ≤ 1.1×
2. streaming  print a timestamp every 50 ms for 2 s; print→frontend lag   target: p95 ≤ 5 ms
   (2b: the same from a real-manager stand-in, the bridge's REST loop vs its websocket loop)
3. throughput a cell writing 15 MB to stdout                    target: bridge ≥ 75 % of direct
4. startup    kernel launch → first cell's result               target: ≤ 1.5× direct
5. notebook   a 1,000-cell notebook through nbclient (--cells)  target: ≤ 1.1× direct

The bridge runs against a `remote-kernel serve` process started here (bridge → HTTP → embedded
server → ipykernel); the baseline is the same ipykernel started directly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    BRIDGE_REST_SPEC, BRIDGE_SPEC, BRIDGE_WS_SPEC, DIRECT_SPEC, ServerUnderBench, Frontend, kernelspecs, print_ratio,
    print_table, settle)

STREAM_CELL = """\
import time
for _ in range(40):
    print(repr(time.time()), flush=True)
    time.sleep(0.05)
"""
THROUGHPUT_CELL = """\
import sys
_line = "x" * 999 + "\\n"
for _ in range(15000):
    sys.stdout.write(_line)
sys.stdout.flush()
"""


def bench_trivial(direct: Frontend, bridge: Frontend, server: ServerUnderBench, reps: int) -> None:
    for fe in (direct, bridge):
        for _ in range(10):
            fe.execute("x = 1")
    times = {"direct": [], "bridge": []}
    for _ in range(reps):
        for label, fe in (("direct", direct), ("bridge", bridge)):
            times[label].append(fe.execute("x = 1")[0])
    stats = print_table(f"1. trivial cell `x = 1` ({reps} interleaved repetitions)", times)
    median = stats["bridge"]["median"] / stats["direct"]["median"]
    p95 = stats["bridge"]["p95"] / stats["direct"]["p95"]
    print_ratio("bridge/direct median", median, "≤ 1.1", median <= 1.1)
    print_ratio("bridge/direct p95", p95, "≤ 1.1", p95 <= 1.1)
    bench_floor(bridge, direct, server, max(50, reps // 3))


def bench_floor(bridge: Frontend, direct: Frontend, server: ServerUnderBench, reps: int) -> None:
    """The two parts of the bridge's round trip, each measured alone: the bridge kernel itself (an
    empty cell never leaves it: busy, execute_input, reply, idle through its own sockets) and the
    remote path its execute loop waits for (the API client running `x = 1` straight against the
    server: signed HTTP, server, inner kernel).  They run in series, so their sum is the floor
    of this architecture; only fewer hops could go lower.  Each part alternates with a direct
    cell, as the bridge's cells do in 1, so that its processes wake from the same idle."""
    from remote_kernel.client import APIConfig, Client

    client = Client(APIConfig(endpoint=[server.url], access_key=server.access_key, secret_key=server.secret_key))
    name = "rk-bench-floor"
    rows = {"direct": [], "empty": [], "remote": []}
    try:
        client.create_session("python", name=name)
        for _ in range(10):
            list(client.run(name, "x = 1"))
        for _ in range(reps):
            rows["direct"].append(direct.execute("x = 1")[0])
            rows["empty"].append(bridge.execute(" ")[0])
            rows["direct"].append(direct.execute("x = 1")[0])
            start = time.perf_counter()
            list(client.run(name, "x = 1"))
            rows["remote"].append(time.perf_counter() - start)
        client.destroy_session(name)
    finally:
        client.close()
    stats = print_table("1b. floor: the bridge kernel alone (empty cell), the remote path alone (API client), "
                        "each after a direct cell", rows)
    floor = stats["empty"]["median"] + stats["remote"]["median"]
    direct_median = stats["direct"]["median"]
    print(f"floor = bridge-alone + remote path = {floor * 1000:.2f} ms → {floor / direct_median:.2f}× direct; "
          f"the remote path alone is {stats['remote']['median'] / direct_median:.2f}× direct")


def stream_lags(fe: Frontend) -> list[float]:
    lags = []
    _, outputs = fe.execute(STREAM_CELL)
    for received, msg in outputs:
        if msg["msg_type"] != "stream":
            continue
        for line in msg["content"]["text"].splitlines():
            try:
                lags.append(received - float(line))
            except ValueError:
                pass
    return lags


def bench_streaming(direct: Frontend, bridge: Frontend, reps: int) -> None:
    lags = {"direct": [], "bridge": []}
    for _ in range(reps):
        lags["direct"] += stream_lags(direct)
        lags["bridge"] += stream_lags(bridge)
    stats = print_table("2. streaming: print→frontend lag per line (50 ms prints for 2 s)", lags)
    p95 = stats["bridge"]["p95"]
    print_ratio("bridge p95 lag (ms)", p95 * 1000, "≤ 5 ms; the original REST loop: ~2000 ms", p95 <= 0.005)


def bench_manager_streaming(reps: int) -> None:
    """What a real cluster streams: a manager collects a REST poll's output for ~2 s but flushes
    its websocket every 0.2 s.  A server run as its stand-in (no extensions, REST polls
    coalescing 2 s); the bridge's REST loop (the original integration's) against its websocket
    loop (the default on such servers)."""
    lags = {"rest": [], "websocket": []}
    with ServerUnderBench("--no-extensions", "--coalesce", "2") as manager, \
            Frontend(BRIDGE_REST_SPEC, manager.env()) as rest, Frontend(BRIDGE_WS_SPEC, manager.env()) as ws:
        for fe in (rest, ws):
            fe.execute("x = 0")
        for _ in range(reps):
            lags["rest"] += stream_lags(rest)
            lags["websocket"] += stream_lags(ws)
    stats = print_table("2b. streaming from a real-manager stand-in (REST polls collect 2 s): REST loop vs websocket", lags)
    p95 = stats["websocket"]["p95"]
    print_ratio("websocket p95 lag (ms)", p95 * 1000, "≤ 300 ms: the manager's 200 ms flush plus the hops", p95 <= 0.300)


def bench_throughput(direct: Frontend, bridge: Frontend, reps: int) -> None:
    times = {"direct": [], "bridge": []}
    for _ in range(reps):
        for label, fe in (("direct", direct), ("bridge", bridge)):
            elapsed, outputs = fe.execute(THROUGHPUT_CELL, timeout=600)
            size = sum(len(m["content"]["text"]) for _, m in outputs if m["msg_type"] == "stream")
            if size != 15_000_000:
                raise AssertionError(f"{label} delivered {size} bytes, expected 15000000")
            times[label].append(elapsed)
    stats = print_table("3. throughput: 15 MB of stdout (time per cell)", times)
    for label in times:
        print(f"{label}: {15 / stats[label]['median']:.1f} MB/s (median)")
    share = stats["direct"]["median"] / stats["bridge"]["median"]
    print_ratio("bridge throughput / direct", share, "≥ 0.75", share >= 0.75)
    throughput_floor(stats["direct"]["median"])


def throughput_floor(direct_median: float) -> None:
    """CPU that each hop of 15 MB costs, measured here: a Jupyter (zmq) hop signs, JSON-encodes,
    verifies and decodes the text (with orjson when jupyter_client finds it); our HTTP hop
    JSON-encodes and decodes it as server and client do (remote_kernel.jsonio).  A stock
    ipykernel flushes such a cell's output as one message at its end, after which the stages run
    one after the other: direct pays one zmq hop, the bridge would pay two zmq hops and one HTTP
    hop.  The server's kernels send large output in 1 MiB pieces as it is written
    (lean_kernel.py), so the bridge's hops overlap and it does better than that sum."""
    import uuid

    from jupyter_client.session import Session

    from remote_kernel import jsonio

    session = Session(key=uuid.uuid4().hex.encode())
    text = ("x" * 999 + "\n") * 15000

    def zmq_hop():
        frames = session.serialize(session.msg("stream", {"name": "stdout", "text": text}))
        session.deserialize(frames[frames.index(b"<IDS|MSG>") + 1:])

    def http_hop():
        jsonio.loads(jsonio.dumps({"result": {"console": [["stdout", text]]}}))

    cost = {}
    for name, hop in (("zmq", zmq_hop), ("http", http_hop)):
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            hop()
            samples.append(time.perf_counter() - start)
        cost[name] = sorted(samples)[1]
    floor = direct_median + cost["zmq"] + cost["http"]
    print(f"CPU per 15 MB hop: zmq {cost['zmq'] * 1000:.0f} ms, http {cost['http'] * 1000:.0f} ms → one hop after "
          f"the other (one message) = direct + zmq + http = {floor * 1000:.0f} ms, a share of "
          f"{direct_median / floor:.2f}; in 1 MiB pieces the hops overlap")


def bench_startup(server: ServerUnderBench, reps: int) -> None:
    """``bridge``: the server as it runs by default, with a spare kernel ready (--warm-kernels 1);
    ``cold``: a server started with --warm-kernels 0, so the session waits for its kernel."""
    times = {"direct": [], "bridge": [], "cold": []}
    with ServerUnderBench("--warm-kernels", "0") as cold_server:
        for _ in range(reps):
            for label, name, env in (("direct", DIRECT_SPEC, None), ("bridge", BRIDGE_SPEC, server.env()),
                                     ("cold", BRIDGE_SPEC, cold_server.env())):
                settle()
                start = time.perf_counter()
                fe = Frontend(name, env)
                fe.execute("x = 1")
                times[label].append(time.perf_counter() - start)
                fe.close()
    stats = print_table("4. start-up: launch → first cell's result", times)
    ratio = stats["bridge"]["median"] / stats["direct"]["median"]
    print_ratio("bridge/direct median", ratio, "≤ 1.5", ratio <= 1.5)
    cold = stats["cold"]["median"] / stats["direct"]["median"]
    print(f"without a spare kernel (cold server)/direct median: {cold:.2f}")


def bench_notebook(server: ServerUnderBench, reps: int, cells: int) -> None:
    """What ``nbclient.execute()`` does, phase by phase: launch to ready, the cells, and the
    shutdown (for the bridge: until its remote session is destroyed and the process exits)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    for i in range(cells):
        nb.cells.append(nbformat.v4.new_code_cell(f"x{i} = {i}\nprint(x{i})" if i % 2 else f"x{i} = {i}\nx{i}"))
    times = {"direct": [], "bridge": []}
    phases = {label: {"start": [], "cells": [], "shutdown": []} for label in times}
    for _ in range(reps):
        for label, name, env in (("direct", DIRECT_SPEC, {}), ("bridge", BRIDGE_SPEC, server.env())):
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                settle()
                client = NotebookClient(nbformat.from_dict(nb), kernel_name=name, timeout=120)
                start = time.perf_counter()
                with client.setup_kernel():  # what execute() does, with the phases timed
                    ready = time.perf_counter()
                    for index, cell in enumerate(client.nb.cells):
                        client.execute_cell(cell, index)
                    cells_done = time.perf_counter()
                end = time.perf_counter()
                times[label].append(end - start)
                for phase, seconds in (("start", ready - start), ("cells", cells_done - ready),
                                       ("shutdown", end - cells_done)):
                    phases[label][phase].append(seconds)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    stats = print_table(f"5. a {cells:,}-cell notebook through nbclient (whole run)", times)
    for phase in ("start", "cells", "shutdown"):
        medians = {label: statistics.median(phases[label][phase]) * 1000 for label in times}
        print(f"  {phase:<9} direct {medians['direct']:7.0f} ms   bridge {medians['bridge']:7.0f} ms   "
              f"(+{medians['bridge'] - medians['direct']:.0f} ms)")
    ratio = stats["bridge"]["median"] / stats["direct"]["median"]
    print_ratio("bridge/direct median", ratio, "≤ 1.1", ratio <= 1.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", default="trivial,streaming,throughput,startup,notebook")
    parser.add_argument("--cells", type=int, default=1000, help="cells of the notebook (5)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    q = args.quick
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    with kernelspecs(), ServerUnderBench() as server:
        if only & {"trivial", "streaming", "throughput"}:
            with Frontend(DIRECT_SPEC) as direct, Frontend(BRIDGE_SPEC, server.env()) as bridge:
                if "trivial" in only:
                    bench_trivial(direct, bridge, server, 50 if q else 300)
                if "streaming" in only:
                    bench_streaming(direct, bridge, 1 if q else 3)
                if "throughput" in only:
                    bench_throughput(direct, bridge, 1 if q else 7)
        if "streaming" in only:
            bench_manager_streaming(1 if q else 2)
        if "startup" in only:
            bench_startup(server, 2 if q else 5)
        if "notebook" in only:
            bench_notebook(server, 1 if q else 5, args.cells)


if __name__ == "__main__":
    main()
