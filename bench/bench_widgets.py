"""A widget round trip, the bridge against direct ipykernel, through jupyter_client as a frontend.

    python bench/bench_widgets.py [--quick] [--reps 200]

A cell creates two widgets, a slider ``src`` and a text box ``dst``, and a kernel-side observer
that copies ``src.value`` into ``dst.value``.  The frontend reads their comm ids from the
``comm_open`` messages of that cell on IOPub, then, per round trip, sends a ``comm_msg`` on the
shell channel (``update`` of ``src.value``, as a dragged slider does) and waits on IOPub for the
``comm_msg`` that updates ``dst`` to that value.  Direct and bridge rounds are interleaved.

7. round trip   frontend comm_msg → observer → comm_msg back        target: bridge/direct median ≤ 1.5×
7b. breakdown   the same round trip from the API client straight against the server (POST /comm,
                the event stream long-polled by a second client in a thread, as the bridge does):
                the remote path alone, and what the bridge kernel adds around it
7c. trace       a second bridge and direct kernel, server and inner kernels with timestamps at each
                hop (a sitecustomize on their PYTHONPATH wraps a few functions as they are
                imported; no code of ours changes): where a round trip's time goes, stage by stage

The bridge runs against a `remote-kernel serve` process started here (bridge → HTTP → embedded
server → ipykernel); the baseline is the same ipykernel started directly.
"""

from __future__ import annotations

import argparse
import collections
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    BRIDGE_SPEC, DIRECT_SPEC, ServerUnderBench, Frontend, kernelspecs, print_ratio, print_table)

SETUP_CELL = """\
import ipywidgets as w
src = w.IntSlider(value=0, min=0, max=10**9)
dst = w.IntText(value=0)
src.observe(lambda change: setattr(dst, 'value', change['new']), 'value')
print(src.model_id, dst.model_id)
"""
TARGET = 1.5


class WidgetFrontend:
    """A kernel with the two widgets, driven as a frontend drives widgets."""

    def __init__(self, fe: Frontend):
        self.fe = fe
        self.kc = fe.kc
        self.value = 0
        msg_id = self.kc.execute(SETUP_CELL)
        models = {}
        while True:
            msg = self.kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "comm_open":
                state = msg["content"]["data"].get("state", {})
                models[state.get("_model_name")] = msg["content"]["comm_id"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        self.src, self.dst = models["IntSliderModel"], models["IntTextModel"]

    def round_trip(self, timeout: float = 60) -> dict[str, float]:
        """One update of ``src`` → the observer's update of ``dst``; seconds from send to: the
        ``dst`` update (``answer``), the ``src`` echo, the kernel's idle for the request."""
        self.value += 1
        value = self.value
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.src, "data": {
            "method": "update", "state": {"value": value}, "buffer_paths": []}})
        start = time.perf_counter()
        self.kc.shell_channel.send(msg)
        got: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while "answer" not in got or "idle" not in got:
            m = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            now = time.perf_counter() - start
            kind, content = m["msg_type"], m["content"]
            if kind == "comm_msg":
                data = content.get("data", {})
                state = data.get("state", {})
                if content["comm_id"] == self.dst and state.get("value") == value:
                    got["answer"] = now
                elif content["comm_id"] == self.src and data.get("method") == "echo_update":
                    got.setdefault("echo", now)
            elif (kind == "status" and content["execution_state"] == "idle"
                  and m["parent_header"].get("msg_id") == msg["header"]["msg_id"]):
                got["idle"] = now
        return got


def bench_round_trip(direct: WidgetFrontend, bridge: WidgetFrontend, reps: int) -> dict[str, dict]:
    for wf in (direct, bridge):
        for _ in range(20):
            wf.round_trip()
    rows = {"direct": [], "bridge": []}
    detail = {f"{label[0]} {part}": [] for label in rows for part in ("echo", "idle")}
    for _ in range(reps):
        for label, wf in (("direct", direct), ("bridge", bridge)):
            got = wf.round_trip()
            rows[label].append(got["answer"])
            for part in ("echo", "idle"):
                if part in got:
                    detail[f"{label[0]} {part}"].append(got[part])
    stats = print_table(f"7. widget round trip: comm_msg → remote observe → comm_msg back ({reps} interleaved)", rows)
    print_table("7, detail: the same round trips until the slider's echo_update, and until the kernel's idle "
                "for the comm_msg (d: direct, b: bridge)", {k: v for k, v in detail.items() if v})
    median = stats["bridge"]["median"] / stats["direct"]["median"]
    p95 = stats["bridge"]["p95"] / stats["direct"]["p95"]
    print_ratio("bridge/direct median", median, f"≤ {TARGET}", median <= TARGET)
    print_ratio("bridge/direct p95", p95, "(info)", True)
    return stats


class RemotePath:
    """The round trip with the API client: POST /comm, answered by the event stream that a
    second client long-polls in a thread (what the bridge's EventFollower does)."""

    def __init__(self, server: ServerUnderBench):
        from remote_kernel.client import APIConfig, Client

        config = dict(endpoint=[server.url], access_key=server.access_key, secret_key=server.secret_key)
        self.client, self.poller = Client(APIConfig(**config)), Client(APIConfig(**config))
        self.name = "rk-bench-widgets"
        self.client.create_session("python", name=self.name)
        out = [r.data for r in self.client.run(self.name, SETUP_CELL, options={"outputs": "jupyter"})
               if getattr(r, "kind", None) == "stdout"]
        self.src, self.dst = "".join(out).split()
        self.value = 0
        self.events: queue.Queue = queue.Queue()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        from remote_kernel.client import errors

        cursor = 0
        while not self._stop.is_set():
            try:
                answer = self.poller.events(self.name, cursor, 2.0)
            except errors.APIError:
                if self._stop.is_set():
                    return  # the session was destroyed by close()
                raise
            now = time.perf_counter()
            self.polls += 1
            for event in answer.get("events") or []:
                self.events.put((now, event))
            cursor = answer["cursor"]

    def round_trip(self, timeout: float = 60) -> dict[str, float]:
        self.value += 1
        value = self.value
        body = {"msg_type": "comm_msg", "msgId": uuid.uuid4().hex, "content": {
            "comm_id": self.src, "data": {"method": "update", "state": {"value": value}, "buffer_paths": []}}}
        polls = self.polls
        start = time.perf_counter()
        self.client.send_comm(self.name, body)
        got = {"post": time.perf_counter() - start}
        deadline = time.monotonic() + timeout
        while "answer" not in got:
            at, event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            content = event.get("content", {})
            data = content.get("data", {})
            if event.get("msg_type") != "comm_msg":
                continue
            if content.get("comm_id") == self.dst and data.get("state", {}).get("value") == value:
                got["answer"] = at - start
            elif content.get("comm_id") == self.src and data.get("method") == "echo_update":
                got.setdefault("echo", at - start)
        got["polls"] = self.polls - polls
        return got

    def close(self) -> None:
        self._stop.set()
        try:
            self.client.destroy_session(self.name)  # the pending poll answers 404 and the thread ends
        except Exception:  # noqa: BLE001
            pass
        self._thread.join(5)
        self.client.close()
        self.poller.close()


def bench_breakdown(server: ServerUnderBench, direct: WidgetFrontend, bridge: WidgetFrontend,
                    reps: int) -> None:
    remote = RemotePath(server)
    try:
        for _ in range(20):
            remote.round_trip()
            bridge.round_trip()
        rows = {"post": [], "echo": [], "remote": [], "bridge": [], "b idle": [], "direct": []}
        polls = []
        for _ in range(reps):
            got = remote.round_trip()
            rows["post"].append(got["post"])
            rows["echo"].append(got["echo"])
            rows["remote"].append(got["answer"])
            polls.append(got["polls"])
            got = bridge.round_trip()
            rows["bridge"].append(got["answer"])
            rows["b idle"].append(got["idle"])
            rows["direct"].append(direct.round_trip()["answer"])
    finally:
        remote.close()
    stats = print_table("7b. breakdown: the remote path alone (API client: POST /comm → event long poll), "
                        "interleaved with the bridge and direct", rows)
    med = {k: v["median"] for k, v in stats.items()}
    print("post   = POST /comm until its 204 (server → inner kernel's shell; the bridge's handler waits for it)")
    print(f"echo   = until the event stream delivers the slider's echo_update; "
          f"remote = until it delivers dst's update; answered polls per round trip: median "
          f"{statistics.median(polls):.0f}, mean {statistics.mean(polls):.2f}")
    print("b idle = frontend → bridge → POST /comm answered → the bridge says idle (before the answer: the xfail "
          "of tests/test_browser_widgets.py)")
    print(f"remote path {med['remote'] * 1000:.2f} ms = {med['remote'] / med['direct']:.2f}× direct; "
          f"the bridge adds {(med['bridge'] - med['remote']) * 1000:.2f} ms around it "
          f"(two zmq hops, its shell handler, publishing); inner kernel + one zmq round trip (direct) "
          f"{med['direct'] * 1000:.2f} ms\n")


# -- 7c: tracing -----------------------------------------------------------------------------

# Written as sitecustomize.py into a temporary directory on the PYTHONPATH of the traced server
# (and so of its inner kernels) and kernels: when one of the modules below is imported, a few of
# its functions are wrapped to append "<time.time()> <tag>" lines to <RK_BENCH_TRACE>/<pid>.log.
SITECUSTOMIZE = r"""
import functools, importlib.abc, os, sys, time

_DIR = os.environ.get("RK_BENCH_TRACE")


def _install():
    fd = os.open(os.path.join(_DIR, "%d.log" % os.getpid()), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def mark(tag):
        os.write(fd, ("%.6f %s\n" % (time.time(), tag)).encode())

    def around(cls, name, tag, detail=None):
        orig = getattr(cls, name)

        @functools.wraps(orig)
        def wrapper(*args, **kwargs):
            mark(tag + "_in" + (detail(*args, **kwargs) if detail else ""))
            try:
                return orig(*args, **kwargs)
            finally:
                mark(tag + "_out")
        setattr(cls, name, wrapper)

    def around_async(cls, name, tag):
        orig = getattr(cls, name)

        @functools.wraps(orig)
        async def wrapper(*args, **kwargs):
            mark(tag + "_in")
            try:
                return await orig(*args, **kwargs)
            finally:
                mark(tag + "_out")
        setattr(cls, name, wrapper)

    def comm_detail(content):
        data = content.get("data") or {}
        return " %s %s" % (content.get("comm_id"), data.get("method"))

    def bridge_kernel(m):
        around_async(m.RemoteKernel, "_comm_from_frontend", "B.handler")
        around(m.RemoteKernel, "_publish_inner", "B.publish",
               lambda self, message: " " + message.msg_type + comm_detail(message.content))

    def client_api(m):
        around(m.Client, "send_comm", "B.post")
        orig = m.Client.events

        @functools.wraps(orig)
        def events(self, *args, **kwargs):
            answer = orig(self, *args, **kwargs)
            mark("B.poll_answer %d" % len(answer.get("events") or []))
            return answer
        m.Client.events = events

    def server_comm_handlers(m):
        around_async(m.CommHandler, "post", "S.post")
        around_async(m.EventsHandler, "get", "S.poll")

    def server_comms(m):
        around(m.EventLog, "add", "S.add", lambda self, msg: " " + str(msg.get("msg_type")) + comm_detail(msg.get("content") or {}))
        around(m.EventLog, "_answer", "S.answer")

    def server_inner(m):
        around(m.InnerKernel, "send_shell", "S.send_shell", lambda self, msg_type, *a, **k: " " + msg_type)

    def comm_base(m):
        around(m.CommManager, "comm_msg", "K.comm_msg")

    role = "B" if "remote_kernel.kernel" in sys.orig_argv else "K"

    def iostream(m):  # when a kernel's IOPub thread really sends (published from any thread)
        around(m.IOPubThread, "_really_send", role + ".iopub_send")

    def ipykernel_comm(m):
        around(m.BaseComm, "publish_msg", "K.pub",
               lambda self, msg_type, data=None, *a, **k: " %s %s %s" % (msg_type, self.comm_id, (data or {}).get("method")))

    patches = {"remote_kernel.kernel.kernel": bridge_kernel, "remote_kernel.client.api": client_api,
               "remote_kernel.server.handlers.comms": server_comm_handlers,
               "remote_kernel.server.comms": server_comms, "remote_kernel.server.inner_kernel": server_inner,
               "comm.base_comm": comm_base, "ipykernel.comm.comm": ipykernel_comm,
               "ipykernel.iostream": iostream}

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            patch = patches.pop(fullname, None)
            if patch is None:
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
            exec_module = spec.loader.exec_module

            def patched(module):
                exec_module(module)
                patch(module)
            spec.loader.exec_module = patched
            return spec

    sys.meta_path.insert(0, Finder())


if _DIR:
    _install()
"""

# The round trip's critical path, in order, each stage caused by the one before, and what happens
# beside it. A path stage is the first line with that tag at or after the previous stage (a round
# trip may see several long poll answers); a stage beside, the first in the round trip's window.
# (``dst``/``src``: the tag names that widget's comm id.)
BRIDGE_PATH = [
    ("B.handler_in", "bridge: the shell handler starts"),
    ("B.post_in", "bridge: POST /comm sent (client call starts)"),
    ("S.post_in", "server: POST /comm handler starts"),
    ("S.send_shell_in comm_msg", "server: sends the comm_msg to the inner kernel's shell"),
    ("K.comm_msg_in", "inner kernel: comm_msg handler starts"),
    ("K.pub_in comm_msg dst", "inner kernel: publishes dst's update"),
    ("K.iopub_send_in", "inner kernel: its IOPub thread sends it"),
    ("S.add_in comm_msg dst", "server: dst's update read from iopub, into the event log"),
    ("S.answer_out", "server: the waiting long poll's answer built"),
    ("B.poll_answer", "bridge: long poll answered (follower thread)"),
    ("B.publish_in comm_msg dst", "bridge: publishes dst's update on its iopub (follower thread)"),
    ("B.iopub_send_in", "bridge: its IOPub thread sends it"),
    ("F.answer", "frontend: receives dst's update"),
]
BRIDGE_BESIDE = [
    ("S.send_shell_out", "server: the comm_msg's send returns"),
    ("S.post_out", "server: POST /comm answered (204)"),
    ("B.post_out", "bridge: POST /comm returns"),
    ("B.handler_out", "bridge: shell handler returns (then idle)"),
    ("F.idle", "frontend: receives the bridge's idle"),
    ("K.pub_in comm_msg src echo_update", "inner kernel: publishes the slider's echo"),
    ("K.comm_msg_out", "inner kernel: comm_msg handler returns"),
    ("S.add_in comm_msg src", "server: the echo into the event log"),
    ("B.publish_in comm_msg src", "bridge: publishes the echo"),
]
DIRECT_PATH = [
    ("K.comm_msg_in", "kernel: comm_msg handler starts"),
    ("K.pub_in comm_msg dst", "kernel: publishes dst's update"),
    ("K.iopub_send_in", "kernel: its IOPub thread sends it"),
    ("F.answer", "frontend: receives dst's update"),
]
DIRECT_BESIDE = [("K.comm_msg_out", "kernel: comm_msg handler returns"), ("F.idle", "frontend: receives idle")]


def _read_trace(folder: Path, wf: WidgetFrontend) -> list[tuple[float, str]]:
    lines = []
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            at, _, tag = line.partition(" ")
            lines.append((float(at), tag.replace(wf.dst, "dst").replace(wf.src, "src")))
    lines.sort()
    return lines


def _stages(lines, windows, path, beside) -> dict[str, list]:
    """Per round trip (window start, end, frontend marks): each stage's time since the send;
    under ``("names", tag)`` the full tag each path stage matched (e.g. how many events the long
    poll's answer carried)."""
    found: dict = collections.defaultdict(list)
    for start, end, marks in windows:
        window = [(at, tag) for at, tag in lines if start <= at < end] + [(at, tag) for tag, at in marks.items()]
        window.sort()
        at = start
        for tag, _ in path:
            hit = next(((t, name) for t, name in window if t >= at and name.startswith(tag)), None)
            if hit is None:
                break
            found[tag].append(hit[0] - start)
            found[("names", tag)].append((hit[1], marks["F.answer"] - start))
            at = hit[0]
        for tag, _ in beside:
            hit = next((t for t, name in window if name.startswith(tag)), None)
            if hit is not None:
                found[tag].append(hit - start)
    return found


def _step(found, path, tag) -> float:
    """The median step into ``tag`` from the path's stage before it (medians of times since send)."""
    tags = [t for t, _ in path]
    i = tags.index(tag)
    before = statistics.median(found[tags[i - 1]]) if i else 0.0
    return statistics.median(found[tag]) - before


def _print_groups(direct, bridge) -> None:
    """The bridge's critical path by kind of work, against the direct kernel's."""
    if any(not bridge.get(tag) for tag, _ in BRIDGE_PATH) or any(not direct.get(tag) for tag, _ in DIRECT_PATH):
        return
    groups = {
        "zmq hops a direct kernel has too (server → inner kernel → server)":
            ["K.comm_msg_in", "K.iopub_send_in", "S.add_in comm_msg dst"],
        "the inner kernel's handler until dst's update": ["K.pub_in comm_msg dst"],
        "zmq hops only the bridge adds (frontend → bridge → frontend)": ["B.handler_in", "B.iopub_send_in", "F.answer"],
        "HTTP: POST /comm to the server, the long poll's answer back": ["S.post_in", "B.poll_answer"],
        "server: POST handler → shell send, event logged → poll answered": ["S.send_shell_in comm_msg", "S.answer_out"],
        "bridge: handler → POST, poll answer → publish": ["B.post_in", "B.publish_in comm_msg dst"],
    }
    print("the bridge's critical path by kind (sums of the median steps above):")
    for what, tags in groups.items():
        print(f"  {sum(_step(bridge, BRIDGE_PATH, t) for t in tags) * 1000:6.2f} ms  {what}")
    direct_total = statistics.median(direct["F.answer"])
    direct_hops = sum(_step(direct, DIRECT_PATH, t) for t in ("K.comm_msg_in", "K.iopub_send_in", "F.answer"))
    print(f"  direct: {direct_total * 1000:.2f} ms, of which zmq hops (frontend → kernel → frontend) "
          f"{direct_hops * 1000:.2f} ms, handler {_step(direct, DIRECT_PATH, 'K.pub_in comm_msg dst') * 1000:.2f} ms")
    handoff = _step(bridge, BRIDGE_PATH, "B.iopub_send_in")
    kernel_handoff = _step(direct, DIRECT_PATH, "K.iopub_send_in")
    print(f"publish → the IOPub thread's send: bridge (follower thread) {handoff * 1000:.2f} ms, "
          f"kernel (main thread) {kernel_handoff * 1000:.2f} ms")
    extra = _step(bridge, BRIDGE_PATH, "B.handler_in") + kernel_handoff + _step(bridge, BRIDGE_PATH, "F.answer")
    floor = direct_total + extra
    print(f"floor with a bridge, HTTP and server that cost nothing: direct + the bridge's own two zmq hops "
          f"(its publish handed off as fast as a kernel's) = {floor * 1000:.2f} ms → {floor / direct_total:.2f}× direct")
    by_answer = collections.defaultdict(list)
    for name, answered in bridge[("names", "B.poll_answer")]:
        by_answer[name.split()[1]].append(answered)
    for count, values in sorted(by_answer.items()):
        kind = "dst's update came with the echo" if count != "1" else "the echo came in an earlier answer, dst's in another poll"
        print(f"  long poll answer with {count} event(s) ({kind}): {len(values)} round trips, "
              f"median {statistics.median(values) * 1000:.2f} ms")


def _print_stages(title: str, found: dict[str, list[float]], path, beside) -> None:
    print(f"\n## {title}")
    print(f"{'median since send':>20} {'step':>9}   stage")
    previous = 0.0
    for tag, what in path:
        if not found.get(tag):
            print(f"{'—':>20} {'':>9}   {what} (not seen)")
            continue
        at = statistics.median(found[tag])
        print(f"{at * 1000:17.2f} ms {(at - previous) * 1000:+6.2f} ms   {what}")
        previous = at
    for tag, what in beside:
        if found.get(tag):
            print(f"{statistics.median(found[tag]) * 1000:17.2f} ms {'':>9}   (beside) {what}")


def bench_trace(reps: int) -> None:
    """Both kernels again, traced (instrumentation costs a few µs per mark, so this section only
    shows where the time goes; 7 and 7b are the figures)."""
    folder = Path(tempfile.mkdtemp(prefix="rk-bench-trace-"))
    try:
        (folder / "site").mkdir()
        (folder / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        (folder / "log").mkdir()
        env = {"RK_BENCH_TRACE": str(folder / "log"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(folder / "site"), os.environ.get("PYTHONPATH")]))}
        with ServerUnderBench(env=env) as server:
            with Frontend(DIRECT_SPEC, env) as d, Frontend(BRIDGE_SPEC, {**server.env(), **env}) as b:
                direct, bridge = WidgetFrontend(d), WidgetFrontend(b)
                for wf in (direct, bridge):
                    for _ in range(20):
                        wf.round_trip()
                windows = {"direct": [], "bridge": []}
                for _ in range(reps):
                    for label, wf in (("direct", direct), ("bridge", bridge)):
                        start = time.time()
                        got = wf.round_trip()
                        end = time.time()
                        windows[label].append((start, end + 0.0005, {"F.answer": start + got["answer"],
                                                                    "F.idle": start + got["idle"]}))
                lines = {label: _read_trace(folder / "log", wf) for label, wf in (("direct", direct), ("bridge", bridge))}
        if not any(tag.startswith("K.") for _, tag in lines["bridge"]):
            print("\n(7c: no trace from the inner kernels: the server did not pass PYTHONPATH on)")
        found = {"direct": _stages(lines["direct"], windows["direct"], DIRECT_PATH, DIRECT_BESIDE),
                 "bridge": _stages(lines["bridge"], windows["bridge"], BRIDGE_PATH, BRIDGE_BESIDE)}
        _print_stages(f"7c. trace: direct kernel ({reps} round trips, medians)", found["direct"], DIRECT_PATH, DIRECT_BESIDE)
        _print_stages(f"7c. trace: bridge ({reps} round trips, medians)", found["bridge"], BRIDGE_PATH, BRIDGE_BESIDE)
        _print_groups(found["direct"], found["bridge"])
        polls = [tag for _, tag in lines["bridge"] if tag.startswith("B.poll_answer")]
        print(f"bridge long polls answered: {len(polls)} for {reps + 20} round trips; "
              f"events per answer: {collections.Counter(p.split()[1] for p in polls).most_common()}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 round trips instead of 200")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--no-trace", action="store_true", help="leave out 7c (the traced run)")
    args = parser.parse_args()
    reps = args.reps or (50 if args.quick else 200)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {load:.2f}")
    with kernelspecs():
        with ServerUnderBench() as server, Frontend(DIRECT_SPEC) as d, Frontend(BRIDGE_SPEC, server.env()) as b:
            direct, bridge = WidgetFrontend(d), WidgetFrontend(b)
            bench_round_trip(direct, bridge, reps)
            bench_breakdown(server, direct, bridge, max(50, reps // 2))
        if not args.no_trace:
            bench_trace(max(50, reps // 2))


if __name__ == "__main__":
    main()
