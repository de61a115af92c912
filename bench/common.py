"""Shared plumbing of the benchmarks: an embedded server process, kernels through
jupyter_client as a frontend would start them, and statistics printed as min/median/p95/max.

Every benchmark runs its baseline and the bridge in the same process run, interleaved where it
can, because this machine is shared and noisy: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from jupyter_client.manager import KernelManager

BRIDGE_SPEC = "rk-bench-bridge"
# the bridge told which execute loop to use (streaming against a real-manager stand-in)
BRIDGE_REST_SPEC = "rk-bench-bridge-rest"
BRIDGE_WS_SPEC = "rk-bench-bridge-websocket"
DIRECT_SPEC = "rk-bench-direct"


def quantile(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values) -> dict:
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "p95": quantile(values, 0.95), "max": max(values)}


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def print_table(title: str, rows: dict[str, list[float]], unit=fmt_ms) -> dict[str, dict]:
    print(f"\n## {title}")
    print(f"{'':<10}{'n':>5} {'min':>12} {'median':>12} {'p95':>12} {'max':>12}")
    stats = {}
    for label, values in rows.items():
        s = summary(values)
        stats[label] = s
        print(f"{label:<10}{s['n']:>5} {unit(s['min']):>12} {unit(s['median']):>12} {unit(s['p95']):>12} {unit(s['max']):>12}")
    return stats


def print_ratio(label: str, value: float, target: str, ok: bool) -> None:
    print(f"{label}: {value:.2f}  (target {target})  {'OK' if ok else 'MISSED'}")


def compile_our_bytecode() -> None:
    """Byte-compile remote_kernel as ``pip install`` does for the direct kernel's packages.  An
    editable install run with PYTHONDONTWRITEBYTECODE (this machine sets it) would otherwise
    compile our ~40 modules from source at every kernel start: ~30 ms no installed copy pays."""
    import compileall

    import remote_kernel

    compileall.compile_dir(os.path.dirname(remote_kernel.__file__), quiet=1)


@contextmanager
def kernelspecs():
    """A temporary JUPYTER_PATH with a direct ipykernel spec and a bridge spec (and our bytecode
    compiled, like the direct kernel's)."""
    compile_our_bytecode()
    with tempfile.TemporaryDirectory(prefix="rk-bench-specs-") as tmp:
        for name, argv, extra in (
            (DIRECT_SPEC, [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], {}),
            (BRIDGE_SPEC, [sys.executable, "-m", "remote_kernel.kernel", "-f", "{connection_file}",
                           "--RemoteKernel.image=python"], {"interrupt_mode": "message"}),
            *((name, [sys.executable, "-m", "remote_kernel.kernel", "-f", "{connection_file}",
                      "--RemoteKernel.image=python", f"--RemoteKernel.streaming={loop}"], {"interrupt_mode": "message"})
              for name, loop in ((BRIDGE_REST_SPEC, "rest"), (BRIDGE_WS_SPEC, "websocket"))),
        ):
            folder = Path(tmp, "kernels", name)
            folder.mkdir(parents=True)
            (folder / "kernel.json").write_text(json.dumps(
                {"argv": argv, "display_name": name, "language": "python", **extra}))
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + old if old else "")
        try:
            yield tmp
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def settle(seconds: float = 2.0) -> None:
    """Before a measured launch: let the previous one's processes exit and the server's spare
    kernel come back (it restarts 1 s after being taken), so that no launch meets a busy CPU."""
    time.sleep(seconds)


class ServerUnderBench:
    """`remote-kernel serve --port 0` as a real subprocess; the bridge reaches it over HTTP."""

    def __init__(self, *extra_args: str, env: dict | None = None):
        self.access_key = "AKBENCH" + secrets.token_hex(6).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.root = tempfile.mkdtemp(prefix="rk-bench-root-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "remote_kernel", "serve", "--port", "0",
             "--root", self.root,
             "--parent-pid", str(os.getpid()),  # never outlives an interrupted bench
             *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
            # the keypair in the environment, never in argv (which every user can read)
            env={**os.environ, **(env or {}), "BACKEND_ACCESS_KEY": self.access_key,
                 "BACKEND_SECRET_KEY": self.secret_key})
        self.url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("embedded server exited before printing its endpoint")
            if line.startswith("http://"):
                self.url = line.strip()
                break
        if not self.url:
            raise RuntimeError("embedded server did not print its endpoint")

    def env(self) -> dict:
        return {"BACKEND_ENDPOINT": self.url, "BACKEND_ACCESS_KEY": self.access_key,
                "BACKEND_SECRET_KEY": self.secret_key}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Frontend:
    """One kernel started and driven through jupyter_client, recording receive times."""

    def __init__(self, kernel_name: str, env: dict | None = None, transport: str = "tcp"):
        # transport="ipc" when many kernels start at once: TCP ports picked in this process can
        # collide with those the server picks for its inner kernels (both probe, then release)
        self.km = KernelManager(kernel_name=kernel_name, transport=transport)
        if transport == "ipc":
            self.km.ip = os.path.join(tempfile.gettempdir(), f"rk-bench-{os.getpid()}-{id(self)}")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.started = time.perf_counter()
        self.km.start_kernel(env=full_env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def execute(self, code: str, timeout: float = 300, on_output=None) -> tuple[float, list]:
        """Run code; return (seconds until both its reply and its idle status arrived, outputs).

        Outputs are (receive time.time(), message) pairs, timestamped as they arrive."""
        start = time.perf_counter()
        msg_id = self.kc.execute(code)
        outputs = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            received = time.time()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                outputs.append((received, msg))
                if on_output:
                    on_output(received, msg)
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        elapsed = time.perf_counter() - start
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
        return elapsed, outputs

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
