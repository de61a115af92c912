"""20 bridge kernels at once on one embedded server, each running 100 cells, two rounds.

    python bench/bench_scale.py [--kernels 20] [--cells 100] [--rounds 2]

Targets: no failures; per-cell p95 ≤ 3× the single-kernel p95 measured first in the same run;
the server process's own memory (RSS, excluding its inner kernels) ≤ 150 MB and flat across
the second round (growth < 10 %).

For scale, the same load then runs on direct ipykernels (no bridge, no server): what 20 kernels
at once cost on this machine with nothing of ours in the way (`--no-direct` skips it).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import psutil
from jupyter_core.utils import ensure_event_loop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BRIDGE_SPEC, DIRECT_SPEC, ServerUnderBench, Frontend, kernelspecs, print_ratio, print_table  # noqa: E402

CELL = "x = {i}\nprint(x)"


def run_cells(fe: Frontend, cells: int, times: list, failures: list) -> None:
    for i in range(cells):
        try:
            times.append(fe.execute(CELL.format(i=i), timeout=120)[0])
        except Exception as exc:  # count, don't stop: the report must show every failure
            failures.append(repr(exc))


def one_round(server: ServerUnderBench | None, kernels: int, cells: int) -> tuple[list, list, float, float]:
    """(per-cell times, failures, wall seconds, CPU seconds the whole chain spent per cell);
    bridge kernels on ``server``, or direct ipykernels when it is None."""
    frontends = []
    start_errors = []

    def start():
        try:
            if server is None:
                frontends.append(Frontend(DIRECT_SPEC, transport="ipc"))
            else:
                frontends.append(Frontend(BRIDGE_SPEC, server.env(), transport="ipc"))
        except Exception as exc:
            start_errors.append(repr(exc))

    in_threads(start, [()] * kernels)
    for fe in frontends:   # each kernel has its session before the timed part
        fe.execute("x = 0")
    times, failures = [], list(start_errors)
    chain = [psutil.Process(), *(psutil.Process(fe.km.provisioner.process.pid) for fe in frontends)]
    if server is not None:
        server_proc = psutil.Process(server.proc.pid)
        chain += [server_proc, *server_proc.children(recursive=True)]
    cpu_before = cpu_seconds(chain)
    started = time.perf_counter()
    in_threads(run_cells, [(fe, cells, times, failures) for fe in frontends])
    wall = time.perf_counter() - started
    cpu_per_cell = (cpu_seconds(chain) - cpu_before) / max(1, len(times))
    in_threads(Frontend.close, [(fe,) for fe in frontends])
    return times, failures, wall, cpu_per_cell


def in_threads(func, arg_tuples: list[tuple]) -> None:
    """``func(*args)`` for each args at once, one thread each; returns when all are done."""
    def run(*args):
        try:
            func(*args)
        finally:
            # the event loop jupyter_client's blocking calls made for this thread: closed here,
            # not garbage-collected at exit (a traceback about a closed file descriptor)
            ensure_event_loop().close()

    threads = [threading.Thread(target=run, args=args) for args in arg_tuples]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def cpu_seconds(processes) -> float:
    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernels", type=int, default=20)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="rounds after the first show whether memory is flat")
    parser.add_argument("--no-direct", action="store_true", help="skip the same load on direct ipykernels")
    args = parser.parse_args()
    # the server's Python sessions keep their history in memory (one per session, as each
    # container of a real server has); a shared ~/.ipython database serialised them on its lock
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    server_env = {}
    with kernelspecs(), ServerUnderBench(env=server_env) as server:
        proc = psutil.Process(server.proc.pid)
        with Frontend(BRIDGE_SPEC, server.env()) as single:
            single.execute("x = 0")
            single_times = []
            run_cells(single, args.cells, single_times, [])
        # what a direct ipykernel and its frontend spend per cell, for scale
        with Frontend(DIRECT_SPEC) as direct:
            direct.execute("x = 0")
            chain = [psutil.Process(), psutil.Process(direct.km.provisioner.process.pid)]
            before = cpu_seconds(chain)
            direct_times = []
            run_cells(direct, args.cells, direct_times, [])
            direct_cpu = (cpu_seconds(chain) - before) / args.cells
        rss = [proc.memory_info().rss]
        rounds = []
        for _ in range(args.rounds):
            rounds.append(one_round(server, args.kernels, args.cells))
            time.sleep(1)
            rss.append(proc.memory_info().rss)
        labels = [f"round {i + 1}" for i in range(args.rounds)]
        stats = print_table(
            f"6. scale: {args.kernels} bridge kernels × {args.cells} cells, per-cell round trip",
            {"single": single_times, **{label: r[0] for label, r in zip(labels, rounds)}})
        for label, (values, _, wall, _) in zip(labels, rounds):
            slow = sorted(v for v in values if v > 1.0)
            rate = len(values) / wall
            # Little's law: with every kernel always running a cell, latency = kernels / rate
            print(f"{label}: {rate:.0f} cells/s over {wall:.1f} s → {args.kernels} kernels / rate = "
                  f"{args.kernels / rate * 1000:.0f} ms per cell; {len(slow)} cells over 1 s"
                  + (f" (slowest {slow[-1]:.2f} s)" if slow else ""))
        failures = [f for r in rounds for f in r[1]]
        print(f"failures: {len(failures)}" + (f" (first: {failures[0]})" if failures else ""))
        print(f"cells completed: {' + '.join(str(len(r[0])) for r in rounds)} of {args.rounds * args.kernels * args.cells}")
        cores = os.cpu_count() or 1
        target = 3 * stats["single"]["p95"]
        for label, (values, _, wall, cpu_per_cell) in zip(labels, rounds):
            # with every kernel always running a cell, no cell can average less than the CPU all
            # kernels' cells need, shared by the cores
            floor = args.kernels * cpu_per_cell / cores
            print(f"{label}: the chain (frontends, bridges, server, inner kernels) spent {cpu_per_cell * 1000:.1f} ms "
                  f"CPU per cell, cores {100 * cpu_per_cell * len(values) / (wall * cores):.0f} % busy → "
                  f"floor {args.kernels} × {cpu_per_cell * 1000:.1f} / {cores} = {floor * 1000:.0f} ms per cell")
        print(f"3× the single-kernel p95 ({target * 1000:.0f} ms) would need ≤ {target * cores / args.kernels * 1000:.1f} ms "
              f"of CPU per cell for the whole chain on {cores} cores; a direct ipykernel and its frontend "
              f"alone spend {direct_cpu * 1000:.1f} ms")
        worst_p95 = max(stats[label]["p95"] for label in labels)
        print_ratio("per-cell p95 / single-kernel p95", worst_p95 / stats["single"]["p95"], "≤ 3",
                    worst_p95 <= 3 * stats["single"]["p95"])
        mb = [r / 2**20 for r in rss]
        print("server RSS (MB): idle " + f"{mb[0]:.1f}, " + ", ".join(
            f"after {label} {m:.1f}" for label, m in zip(labels, mb[1:])))
        print_ratio("server RSS max (MB)", max(mb), "≤ 150", max(mb) <= 150)
        if args.rounds >= 2:
            growth = (mb[-1] - mb[-2]) / mb[-2]
            print_ratio(f"RSS growth in round {args.rounds}", growth, "< 0.10 (flat)", growth < 0.10)
        if not args.no_direct:
            report_direct(args.kernels, args.cells, direct_times)


def report_direct(kernels: int, cells: int, single_times: list) -> None:
    """The same load with no bridge and no server: if direct ipykernels miss 3× too, the target
    is out of reach on this machine whatever the bridge does."""
    time.sleep(1)
    times, failures, wall, cpu_per_cell = one_round(None, kernels, cells)
    if not times:
        print(f"6b. direct ipykernels: no cell ran ({failures[:1]})")
        return
    stats = print_table(f"6b. the same load on direct ipykernels: {kernels} × {cells} cells",
                        {"single": single_times, "at once": times})
    cores = os.cpu_count() or 1
    print(f"failures: {len(failures)}; kernels and frontends spent {cpu_per_cell * 1000:.1f} ms CPU per cell → "
          f"floor {kernels} × {cpu_per_cell * 1000:.1f} / {cores} = {kernels * cpu_per_cell / cores * 1000:.0f} ms per cell")
    ratio = stats["at once"]["p95"] / stats["single"]["p95"]
    print_ratio("direct: per-cell p95 / single-kernel p95", ratio, "(info: the same 3× bar)", ratio <= 3)

if __name__ == "__main__":
    main()
