"""Two versions of this repository against each other and a direct ipykernel, interleaved.

    python bench/bench_ab.py BEFORE AFTER [--reps 300] [--only trivial,print,result,lag,throughput,widgets]

BEFORE and AFTER are git revisions (a commit, a tag, ``HEAD~3``); ``WORKTREE`` is the working
tree as it is.  Each is unpacked into a temporary folder (``git archive``) and gets its own
`remote-kernel serve` process and bridge kernel, both importing that version; one direct
ipykernel is the baseline.  Every repetition runs the same cell on direct, BEFORE and AFTER in
turn, so that both versions meet the same machine load: the way to tell a change's effect from
this shared machine's noise.

trivial  `x = 1`                 print   a cell that prints     result  a cell that ends in a value
lag      print → frontend lag per line (a cell printing every 50 ms for 2 s; bench_bridge 2)
throughput  a cell writing 15 MB to stdout (bench_bridge 3)
widgets  the widget round trip (bench_widgets 7)
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BRIDGE_SPEC, DIRECT_SPEC, ServerUnderBench, Frontend, kernelspecs, print_table  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLS = {"trivial": "x = 1", "print": "x5 = 5\nprint(x5)", "result": "x5 = 5\nx5"}


def unpack(revision: str, into: str) -> str:
    """The repository at ``revision`` (``WORKTREE``: as it is now) in a folder of its own."""
    folder = os.path.join(into, revision.replace("/", "_").replace("~", "-").replace("^", "-"))
    if revision == "WORKTREE":
        shutil.copytree(os.path.join(REPO, "remote_kernel"), os.path.join(folder, "remote_kernel"),
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        os.makedirs(folder)
        archive = subprocess.run(["git", "-C", REPO, "archive", revision, "remote_kernel"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    import compileall

    compileall.compile_dir(os.path.join(folder, "remote_kernel"), quiet=1)  # as an installed copy is
    return folder


class VersionServer(ServerUnderBench):
    """`remote-kernel serve` importing the version in ``tree`` (its PYTHONPATH and working folder)."""

    def __init__(self, tree: str):
        self.access_key = "AKBENCH" + secrets.token_hex(6).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.root = tempfile.mkdtemp(prefix="rk-bench-root-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "remote_kernel", "serve", "--port", "0", "--root", self.root,
             "--parent-pid", str(os.getpid())],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True, cwd=tree,
            env={**os.environ, "PYTHONPATH": tree, "BACKEND_ACCESS_KEY": self.access_key,
                 "BACKEND_SECRET_KEY": self.secret_key})
        self.url = None
        for line in self.proc.stdout:
            if line.startswith("http://"):
                self.url = line.strip()
                break
        if not self.url:
            raise RuntimeError(f"the server of {tree} did not start")


def ratios(stats: dict, key: str) -> str:
    return " ".join(f"{label} {stats[label][key] / stats['direct'][key]:.2f}×" for label in stats if label != "direct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--reps", type=int, default=300, help="repetitions of each small cell")
    parser.add_argument("--only", default="trivial,print,result,lag,throughput,widgets")
    args = parser.parse_args()
    only = args.only.split(",")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"before = {args.before}, after = {args.after}")
    with tempfile.TemporaryDirectory(prefix="rk-bench-ab-") as trees, kernelspecs(), ExitStack() as stack:
        # kernels start in the working folder, which comes first on their sys.path: not the repository's
        os.chdir(trees)
        stack.callback(os.chdir, REPO)
        frontends = {"direct": stack.enter_context(Frontend(DIRECT_SPEC))}
        for label, revision in (("before", args.before), ("after", args.after)):
            tree = unpack(revision, trees)
            server = stack.enter_context(VersionServer(tree))
            frontends[label] = stack.enter_context(Frontend(BRIDGE_SPEC, {**server.env(), "PYTHONPATH": tree}))
        for fe in frontends.values():
            for _ in range(10):
                fe.execute("x = 1")
                fe.execute("print(1)")
        for name in (n for n in only if n in CELLS):
            rows = {label: [] for label in frontends}
            for _ in range(args.reps):
                for label, fe in frontends.items():
                    rows[label].append(fe.execute(CELLS[name])[0])
            stats = print_table(f"{name}: {CELLS[name]!r} ({args.reps} interleaved repetitions)", rows)
            print(f"median: {ratios(stats, 'median')}; p95: {ratios(stats, 'p95')} (of direct)")
        if "lag" in only:
            from bench_bridge import stream_lags

            rows = {label: [] for label in frontends}
            for _ in range(4):
                for label, fe in frontends.items():
                    rows[label] += stream_lags(fe)
            print_table("lag: print → frontend, per line (50 ms prints for 2 s, 4 cells each)", rows)
        if "throughput" in only:
            from bench_bridge import THROUGHPUT_CELL

            rows = {label: [] for label in frontends}
            for _ in range(9):
                for label, fe in frontends.items():
                    elapsed, outputs = fe.execute(THROUGHPUT_CELL, timeout=600)
                    size = sum(len(m["content"]["text"]) for _, m in outputs if m["msg_type"] == "stream")
                    if size != 15_000_000:
                        print(f"{label}: delivered {size} of 15000000 bytes")
                    rows[label].append(elapsed)
            stats = print_table("throughput: a cell writing 15 MB to stdout (time per cell)", rows)
            print("share of direct (direct median / median): " + " ".join(
                f"{label} {stats['direct']['median'] / stats[label]['median']:.2f}" for label in stats if label != "direct"))
        if "widgets" in only:
            from bench_widgets import WidgetFrontend

            widgets = {label: WidgetFrontend(fe) for label, fe in frontends.items()}
            for wf in widgets.values():
                for _ in range(20):
                    wf.round_trip()
            rows = {label: [] for label in widgets}
            for _ in range(200):
                for label, wf in widgets.items():
                    rows[label].append(wf.round_trip()["answer"])
            stats = print_table("widgets: comm_msg → remote observe → comm_msg back (200 interleaved)", rows)
            print(f"median: {ratios(stats, 'median')} (of direct)")


if __name__ == "__main__":
    main()
