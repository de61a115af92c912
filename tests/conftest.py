"""Shared test setup: an isolated Jupyter home, the embedded-server fixture, and a guard that a
run which passes no test at all fails instead of looking green."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Isolate every test (and every kernel/server they start) from the user's own Jupyter setup.
_HOME = tempfile.mkdtemp(prefix="rk-tests-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for var, sub in (("JUPYTER_DATA_DIR", "data"), ("JUPYTER_CONFIG_DIR", "config"),
                 ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
    os.environ[var] = os.path.join(_HOME, sub)
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
for var in ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY",
            "SORNA_ENDPOINT", "SORNA_ACCESS_KEY", "SORNA_SECRET_KEY"):
    os.environ.pop(var, None)

# the embedded-server fixtures, shared by every suite that needs a live peer
from server_fixture import *  # noqa: E402,F401,F403


@pytest.fixture(scope="module")
def kernelspec_root(tmp_path_factory):
    """The bridge's test kernelspecs (lossless and classic) on JUPYTER_PATH for one module."""
    import kernel_support as ks

    root = tmp_path_factory.mktemp("kernelspecs")
    ks.write_kernelspec(root)
    ks.write_kernelspec(root, name=ks.CLASSIC_KERNEL, extra_argv=["--RemoteKernel.use_extensions=False"])
    with ks.on_jupyter_path(root):
        yield root


def pytest_collection_modifyitems(config, items):
    """A browser test (JupyterLab and Chromium) is slow by nature: the fast tier
    (``-m "not slow"``) leaves them all out without each module saying so."""
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and passed == 0 and not session.config.option.collectonly:
        # everything skipped or deselected: that is not a green run
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
