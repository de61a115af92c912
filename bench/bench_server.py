"""The embedded server's HTTP API against direct jupyter_client execution, same snippets, one run.

    python bench/bench_server.py [--quick]

1. trivial     `x = 1` round trip, interleaved direct/server       target: median ≤ 1.1× direct
2. streaming   a cell printing a timestamp every 50 ms: time to first output and the lag of
               each chunk (print → client)                          target: p95 lag ≤ 5 ms
3. throughput  a cell writing ~15 MB to stdout                       target: ≥ 75 % of direct

"server" is the API client (remote_kernel.client) talking to a `remote-kernel serve` process
over loopback HTTP; "direct" is the same ipykernel started and driven by jupyter_client.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import DIRECT_SPEC, ServerUnderBench, Frontend, kernelspecs, print_ratio, print_table  # noqa: E402

from remote_kernel.client import APIConfig, Client  # noqa: E402
from remote_kernel.client.loop import Record  # noqa: E402

STREAM_CELL = """\
import time
for _ in range({n}):
    print(repr(time.time()), flush=True)
    time.sleep(0.05)
"""
THROUGHPUT_CELL = """\
import sys
line = 'x' * 999 + '\\n'
for _ in range(15000):
    sys.stdout.write(line)
"""
THROUGHPUT_BYTES = 15000 * 1000


def server_run(client: Client, session: str, code: str, on_record=None) -> float:
    start = time.perf_counter()
    for event in client.run(session, code):
        if isinstance(event, Record) and on_record:
            on_record(time.time(), event)
    return time.perf_counter() - start


def lags_of(text: str, received: float) -> list[float]:
    out = []
    for line in text.splitlines():
        try:
            out.append(received - float(line))
        except ValueError:
            pass
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    trivial_n = 30 if args.quick else 200
    stream_n = 20 if args.quick else 40
    rounds = 1 if args.quick else 3

    with kernelspecs(), ServerUnderBench() as server, Frontend(DIRECT_SPEC) as direct:
        client = Client(APIConfig(endpoint=[server.url], access_key=server.access_key,
                                  secret_key=server.secret_key))
        client.create_session("python", name="bench-server")
        for _ in range(5):  # warm up both paths
            direct.execute("x = 1")
            server_run(client, "bench-server", "x = 1")

        # 1. trivial cell
        rows = {"direct": [], "server": []}
        for _ in range(trivial_n):
            rows["direct"].append(direct.execute("x = 1")[0])
            rows["server"].append(server_run(client, "bench-server", "x = 1"))
        stats = print_table("trivial cell `x = 1` (round trip)", rows)
        ratio = stats["server"]["median"] / stats["direct"]["median"]
        print_ratio("server/direct median", ratio, "≤ 1.1", ratio <= 1.1)
        print_ratio("server/direct p95", stats["server"]["p95"] / stats["direct"]["p95"], "(info)", True)

        # 2. streaming
        first = {"direct": [], "server": []}
        lag = {"direct": [], "server": []}
        code = STREAM_CELL.format(n=stream_n)
        for _ in range(rounds):
            start = time.time()
            _, outputs = direct.execute(code)
            first["direct"].append(outputs[0][0] - start)
            for received, msg in outputs:
                lag["direct"] += lags_of(msg["content"].get("text", ""), received)
            arrivals = []
            start = time.time()
            server_run(client, "bench-server", code, lambda t, e: arrivals.append((t, e)))
            first["server"].append(arrivals[0][0] - start)
            for received, event in arrivals:
                lag["server"] += lags_of(event.data if isinstance(event.data, str) else "", received)
        print_table("time to first output (cell printing every 50 ms)", first)
        lag_stats = print_table("per-chunk lag, print → client", lag)
        p95 = lag_stats["server"]["p95"]
        print_ratio("server p95 lag (ms)", p95 * 1000, "≤ 5", p95 <= 0.005)

        # 3. throughput
        thr = {"direct": [], "server": []}
        for _ in range(rounds):
            elapsed, _ = direct.execute(THROUGHPUT_CELL)
            thr["direct"].append(THROUGHPUT_BYTES / elapsed / 1e6)
            got = [0]

            def count(_t, event):
                if isinstance(event.data, str):
                    got[0] += len(event.data)

            elapsed = server_run(client, "bench-server", THROUGHPUT_CELL, count)
            assert got[0] == THROUGHPUT_BYTES, f"server delivered {got[0]} bytes"
            thr["server"].append(THROUGHPUT_BYTES / elapsed / 1e6)
        thr_stats = print_table("stdout throughput, 15 MB cell (MB/s)", thr, unit=lambda v: f"{v:8.1f} MB/s")
        ratio = thr_stats["server"]["median"] / thr_stats["direct"]["median"]
        print_ratio("server/direct throughput", ratio, "≥ 0.75", ratio >= 0.75)

        client.destroy_session("bench-server")
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
