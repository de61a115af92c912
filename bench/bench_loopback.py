"""What the lean loopback adapter (remote_kernel/client/loopback.py) saves over requests' own
HTTPAdapter (urllib3), for calls to a server on this machine.

    python bench/bench_loopback.py [--quick]

1. client   the API client running `x = 1` against a `remote-kernel serve` process, through the
            lean adapter and through urllib3, alternating: latency and the client's CPU per call
2. bridge   a trivial cell `x = 1` through two bridge kernels, one with the adapter and one
            without, alternating
3. output   a cell writing 15 MB to stdout through the same two bridge kernels

Both variants send plain JSON calls straight to their adapter (``Transport._send_direct``); only
the adapter differs.  Ratios are urllib3 / lean, from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import EmbeddedServer, Frontend, compile_our_bytecode, print_table  # noqa: E402

LEAN_SPEC = "rk-bench-bridge-lean"
URLLIB3_SPEC = "rk-bench-bridge-urllib3"
THROUGHPUT_CELL = """\
import sys
_line = "x" * 999 + "\\n"
for _ in range(15000):
    sys.stdout.write(_line)
sys.stdout.flush()
"""
# the bridge's own launcher, with the lean adapter switched off first
WITHOUT_LEAN = ("import remote_kernel.client.transport as t; t.Transport.lean_loopback = False; "
                "from remote_kernel.kernel.__main__ import main; main()")


@contextmanager
def bridge_specs():
    compile_our_bytecode()
    with tempfile.TemporaryDirectory(prefix="rk-bench-specs-") as tmp:
        for name, launcher in ((LEAN_SPEC, ["-m", "remote_kernel.kernel"]), (URLLIB3_SPEC, ["-c", WITHOUT_LEAN])):
            folder = Path(tmp, "kernels", name)
            folder.mkdir(parents=True)
            argv = [sys.executable, *launcher, "-f", "{connection_file}", "--RemoteKernel.image=python"]
            (folder / "kernel.json").write_text(json.dumps(
                {"argv": argv, "display_name": name, "language": "python", "interrupt_mode": "message"}))
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + old if old else "")
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def client_for(server: EmbeddedServer, lean: bool):
    from remote_kernel.client import APIConfig, Client
    from remote_kernel.client.transport import Transport

    Transport.lean_loopback = lean
    try:
        return Client(APIConfig(endpoint=[server.url], access_key=server.access_key, secret_key=server.secret_key))
    finally:
        Transport.lean_loopback = True


def bench_client(server: EmbeddedServer, reps: int) -> None:
    clients = {"lean": client_for(server, True), "urllib3": client_for(server, False)}
    name = "rk-bench-loopback"
    wall = {label: [] for label in clients}
    cpu = {label: [] for label in clients}
    try:
        clients["lean"].create_session("python", name=name)
        for client in clients.values():
            for _ in range(20):
                list(client.run(name, "x = 1"))
        for rep in range(reps):
            order = list(clients.items()) if rep % 2 == 0 else list(reversed(clients.items()))
            for label, client in order:
                started, started_cpu = time.perf_counter(), time.process_time()
                list(client.run(name, "x = 1"))
                wall[label].append(time.perf_counter() - started)
                cpu[label].append(time.process_time() - started_cpu)
        clients["lean"].destroy_session(name)
    finally:
        for client in clients.values():
            client.close()
    walls = print_table(f"1. API client, `x = 1` against the server ({reps} alternating calls each)", wall)
    cpus = print_table("1. the client's CPU per call", cpu)
    print(f"urllib3/lean median: latency {walls['urllib3']['median'] / walls['lean']['median']:.2f}, "
          f"client CPU {cpus['urllib3']['median'] / cpus['lean']['median']:.2f} "
          f"(+{(cpus['urllib3']['median'] - cpus['lean']['median']) * 1000:.2f} ms per call)")


def bench_bridge(server: EmbeddedServer, reps: int, output_reps: int) -> None:
    env = server.env()
    with Frontend(LEAN_SPEC, env) as lean, Frontend(URLLIB3_SPEC, env) as urllib3:
        frontends = {"lean": lean, "urllib3": urllib3}
        for fe in frontends.values():
            for _ in range(10):
                fe.execute("x = 1")
        times = {label: [] for label in frontends}
        for rep in range(reps):
            order = list(frontends.items()) if rep % 2 == 0 else list(reversed(frontends.items()))
            for label, fe in order:
                times[label].append(fe.execute("x = 1")[0])
        stats = print_table(f"2. bridge, trivial cell `x = 1` ({reps} alternating repetitions)", times)
        print(f"urllib3/lean median: {stats['urllib3']['median'] / stats['lean']['median']:.2f}, "
              f"p95: {stats['urllib3']['p95'] / stats['lean']['p95']:.2f}")
        times = {label: [] for label in frontends}
        for rep in range(output_reps):
            order = list(frontends.items()) if rep % 2 == 0 else list(reversed(frontends.items()))
            for label, fe in order:
                times[label].append(fe.execute(THROUGHPUT_CELL)[0])
        stats = print_table(f"3. bridge, a cell writing 15 MB ({output_reps} alternating repetitions)", times)
        print(f"urllib3/lean median: {stats['urllib3']['median'] / stats['lean']['median']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    with bridge_specs(), EmbeddedServer() as server:
        bench_client(server, 100 if args.quick else 400)
        bench_bridge(server, 50 if args.quick else 300, 2 if args.quick else 7)


if __name__ == "__main__":
    main()
