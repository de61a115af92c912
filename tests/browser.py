"""Browser-test harness: a private JupyterLab server and headless Chromium driven by Playwright.

Use the pytest fixtures (import them into a test module: `from browser import lab, page`) or
the classes directly:

    with JupyterLab(root_dir) as server, Chromium() as chromium:
        page = chromium.new_page()
        open_notebook(page, server, "x.ipynb")
        screenshot(page, "x")

JupyterLab gets its own config and runtime dirs (no user settings or workspaces leak in) but
keeps the caller's JUPYTER_PATH / JUPYTER_DATA_DIR so kernelspecs installed by the tests are
found. Browser tests skip only when Chromium is missing outside CI; under CI=true they fail.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"

# Lab settings that keep the page deterministic: no news pop-up, every cell rendered (the
# windowed notebook would leave off-screen outputs out of the DOM).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_chromium() -> None:
    """Skip (or, under CI, fail) when Chromium or Playwright is not available."""
    problem = None
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is not installed (Debian package 'chromium')"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the Python package 'playwright' is not installed"
    if problem:
        if in_ci():
            pytest.fail(f"browser tests cannot run under CI: {problem}")
        pytest.skip(f"browser test skipped: {problem}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on a free loopback port with a random token; stop() cleans up."""

    def __init__(self, root_dir: str | os.PathLike, *, env: dict | None = None,
                 startup_timeout: float = 120.0):
        self.root_dir = Path(root_dir)
        self.extra_env = env or {}
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(16)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._home = Path(tempfile.mkdtemp(prefix="rk-lab-"))
        self.log_path = self._home / "jupyterlab.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def notebook_url(self, relpath: str) -> str:
        # a fresh workspace per page: no tabs (or kernels) restored from an earlier page
        return self.url(f"lab/workspaces/t{secrets.token_hex(6)}/tree/{relpath}?reset")

    def shutdown_kernels(self) -> None:
        """Shut down every kernel the pages started (sessions and all)."""
        for session in self.api("GET", "api/sessions") or []:
            self.api("DELETE", f"api/sessions/{session['id']}")
        for kernel in self.api("GET", "api/kernels") or []:
            self.api("DELETE", f"api/kernels/{kernel['id']}")

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_DIR": str(self._home / "config"),
            "JUPYTER_RUNTIME_DIR": str(self._home / "runtime"),
        })
        env.update(self.extra_env)
        return env

    def _write_settings(self) -> None:
        settings = self._home / "config" / "lab" / "user-settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def start(self) -> "JupyterLab":
        self._write_settings()
        last_error = ""
        for _attempt in range(3):  # another process may grab the port between pick and bind
            self.port = free_port()
            cmd = [
                sys.executable, "-m", "jupyterlab", "--no-browser",
                "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
                "--ServerApp.open_browser=False",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",  # no PyPI queries from the page
            ]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd.append("--allow-root")  # CI containers run as root
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log,
                                             stderr=subprocess.STDOUT, cwd=self.root_dir)
            finally:
                log.close()
            ok, last_error = self._wait_ready()
            if ok:
                return self
            self._kill()
            if "address already in use" not in self.log_tail().lower():
                break
        raise RuntimeError(f"JupyterLab did not start: {last_error}\n--- log ---\n{self.log_tail()}")

    def _wait_ready(self) -> tuple[bool, str]:
        """A bounded poll of ``api/status``: a starting server sends no event we could wait for."""
        deadline = time.monotonic() + self.startup_timeout
        error = "timed out"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, f"exited with code {self.proc.returncode}"
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as resp:
                    if resp.status == 200:
                        return True, ""
            except (urllib.error.URLError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        return False, f"no answer on {self.base_url} within {self.startup_timeout:.0f}s ({error})"

    def api(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return re.sub(r"token=[0-9a-f]+", "token=…", text[-chars:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:  # a clean shutdown also shuts down the kernels the notebooks started
                self.api("POST", "api/shutdown")
                self.proc.wait(timeout=20)
            except Exception:
                pass
        self._kill()
        shutil.rmtree(self._home, ignore_errors=True)

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> "JupyterLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Chromium:
    """Debian's Chromium under Playwright with a fresh profile; pages log console errors."""

    def __init__(self, viewport: tuple[int, int] = (1400, 1000)):
        self.viewport = viewport
        self.console: list[str] = []
        self._pw = None
        self._context = None
        self._profile = None

    def start(self) -> "Chromium":
        require_chromium()
        from playwright.sync_api import sync_playwright

        self._profile = tempfile.mkdtemp(prefix="rk-chromium-")
        self._pw = sync_playwright().start()
        try:
            self._context = self._pw.chromium.launch_persistent_context(
                self._profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": self.viewport[0], "height": self.viewport[1]},
            )
        except Exception:
            self.stop()
            raise
        return self

    def new_page(self):
        page = self._context.new_page()
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))
        return page

    def stop(self) -> None:
        if self._context is not None:
            try:
                self._context.close()
            except Exception:
                pass
            self._context = None
        if self._pw is not None:
            self._pw.stop()
            self._pw = None
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> "Chromium":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- page helpers -------------------------------------------------------------------------

def open_notebook(page, server: JupyterLab, relpath: str, timeout: float = 90.0):
    """Open a notebook (relative to the server's root) and wait until its cells are shown."""
    page.goto(server.notebook_url(relpath), timeout=timeout * 1000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout * 1000)
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first


def wait_kernel_idle(page, timeout: float = 120.0) -> None:
    """Wait until the open notebook's kernel is connected and idle (toolbar and status bar)."""
    page.wait_for_function(
        """() => {
            const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
            const bar = Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
                .some(e => / \\| Idle$/.test(e.textContent || ''));
            return bar && ind && ind.getAttribute('data-status') === 'idle';
        }""",
        timeout=timeout * 1000,
    )


def run_first_cell(page, timeout: float = 120.0) -> None:
    """Run the open notebook's first cell (code or markdown) once its kernel is idle; the
    next cell is then active, so more Shift+Enter presses run the following cells."""
    wait_kernel_idle(page, timeout)
    # the prompt area selects the cell in command mode, whatever its type
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputPrompt").first.click()
    page.keyboard.press("Shift+Enter")


def screenshot(page, name: str, locator=None) -> Path:
    """Save a PNG under artifacts/ at the repo root; returns its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    (locator or page).screenshot(path=str(path))
    return path


def canvas_pixel(locator, x: float, y: float) -> list[int]:
    """RGBA of a <canvas> at drawing coordinates (x, y), whatever the device pixel ratio."""
    return locator.evaluate(
        """(c, [x, y]) => {
            const scale = c.width / parseFloat(c.style.width || c.width);
            const d = c.getContext('2d').getImageData(Math.floor(x * scale), Math.floor(y * scale), 1, 1).data;
            return Array.from(d);
        }""",
        [x, y],
    )


# --- pytest fixtures ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    return tmp_path_factory.mktemp("lab-root")


@pytest.fixture(scope="module")
def lab(lab_root):
    require_chromium()  # no point starting a server the browser cannot reach
    with JupyterLab(lab_root) as server:
        yield server


@pytest.fixture(scope="module")
def chromium():
    with Chromium() as browser:
        yield browser


@pytest.fixture
def page(chromium, request):
    page = chromium.new_page()
    yield page
    page.close()
    if "lab" in request.fixturenames:  # free the CPU for the next test
        request.getfixturevalue("lab").shutdown_kernels()
