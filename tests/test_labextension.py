"""The drawing renderer is installed in the environment the tests run in, and JupyterLab loads it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

EXT = "@remote-kernel/drawing"
MIME = "application/vnd.remote-kernel.drawing+json"


def _labextension_list() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert out.returncode == 0, out.stderr
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)  # strip colours


def _extension_dir() -> Path:
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("labextensions"):
        candidate = Path(base) / EXT
        if (candidate / "package.json").is_file():
            return candidate
    raise AssertionError(f"{EXT} is in no labextensions dir of {jupyter_path('labextensions')}")


def test_listed_enabled_and_ok():
    text = _labextension_list()
    line = next((ln for ln in text.splitlines() if EXT in ln), None)
    assert line is not None, f"{EXT} not listed:\n{text}"
    assert re.search(rf"{re.escape(EXT)} v\S+ enabled\s+OK", line), line


def test_built_as_mime_extension():
    meta = json.loads((_extension_dir() / "package.json").read_text())
    assert meta["name"] == EXT
    lab = meta["jupyterlab"]
    assert lab["mimeExtension"], lab
    load = lab["_build"]["load"]  # written by the builder: the federated entry point
    assert (_extension_dir() / load).is_file(), load
    # the bundle really carries our renderer and its MIME type
    static = "".join(p.read_text(errors="replace") for p in (_extension_dir() / "static").glob("*.js"))
    assert MIME in static
