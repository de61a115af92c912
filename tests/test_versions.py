"""What the package promises about the Python it runs on and the versions it depends on.

* ``python -OO`` (no docstrings, no asserts) runs every entry point.
* The floors in ``pyproject.toml`` are the pins of ``.ci/minimum-versions.txt``, which CI's
  second run (``./dev test-min``) installs; the installed versions are within the declared
  ranges, and in that run exactly the floors.
* ipykernel's private internals are used in ``remote_kernel/ipykernel_private.py`` only, and
  the ones it relies on are there in the installed ipykernel.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / ".ci" / "minimum-versions.txt"

# -- python -OO -----------------------------------------------------------------------------------


def run_optimized(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-OO", *args], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


@pytest.mark.parametrize("args", [
    ("-m", "remote_kernel", "--help"),
    ("-m", "remote_kernel", "serve", "--help"),
    ("-m", "remote_kernel.kernel", "--help"),  # the kernelspec's command: imports the whole bridge
    ("-c", "import remote_kernel.kernel.kernel, remote_kernel.server.app"),
], ids=["cli", "serve", "kernel", "import"])
def test_entry_points_run_without_docstrings(args):
    done = run_optimized(*args)
    assert done.returncode == 0, done.stderr[-3000:]


def test_directive_help_survives_without_docstrings():
    done = run_optimized("-c", "from remote_kernel.kernel.directives import HELP; print(HELP)")
    assert done.returncode == 0, done.stderr[-3000:]
    for form in ("%remote help", "%remote info", "%remote upload", "%remote download", "%remote ls",
                 "%%remote batch"):
        assert form in done.stdout, done.stdout


# -- version floors ------------------------------------------------------------------------------


def declared() -> dict[str, Requirement]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(req.name): req for req in map(Requirement, project["dependencies"])}


def pinned() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{CONSTRAINTS.name}: not a pin: {line!r}"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def floor(req: Requirement) -> Version | None:
    lows = [Version(spec.version) for spec in req.specifier if spec.operator == ">="]
    return max(lows) if lows else None


def test_every_dependency_has_a_floor_and_the_constraints_pin_exactly_it():
    deps, pins = declared(), pinned()
    assert sorted(pins) == sorted(deps), "the constraints pin exactly the runtime dependencies"
    for name, req in deps.items():
        assert floor(req) is not None, f"{req}: no lower bound"
        assert pins[name] == floor(req), f"{req} but {CONSTRAINTS.name} pins {name}=={pins[name]}"
        assert pins[name] in req.specifier, f"{req} excludes its own floor"


def test_installed_versions_are_the_declared_ones():
    """In every run, within the declared ranges; in ``./dev test-min``'s, exactly the floors."""
    minimum_run = bool(os.environ.get("REMOTE_KERNEL_MINIMUM_VERSIONS"))
    pins = pinned()
    for name, req in declared().items():
        installed = Version(metadata.version(name))
        assert req.specifier.contains(installed, prereleases=True), f"{name} {installed} installed, {req} declared"
        if minimum_run:
            assert installed == pins[name], f"{name} {installed} installed in the minimum-versions run"


# -- ipykernel's private internals ---------------------------------------------------------------

_DEFINED = (r"\b(?:self|cls)\._([A-Za-z]\w*)", r"^\s*(?:async\s+)?def _([A-Za-z]\w*)",
            r"^\s+_([A-Za-z]\w*)\s*(?::[^=\n]*)?=")
_USED = (r"\._([A-Za-z]\w*)",) + _DEFINED[1:]


def _names(patterns: tuple[str, ...], text: str) -> set[str]:
    return {name for pattern in patterns for name in re.findall(pattern, text, re.M)}


def ipykernel_private_names() -> set[str]:
    """Underscore names that ipykernel's classes we subclass (and their ipykernel bases) define."""
    from ipykernel.iostream import OutStream
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelapp import IPKernelApp

    names: set[str] = set()
    for ours in (IPythonKernel, IPKernelApp, OutStream):
        for cls in ours.__mro__:
            if cls.__module__.split(".")[0] == "ipykernel":
                names |= _names(_DEFINED, inspect.getsource(cls))
    return names


def test_ipykernel_private_names_are_used_in_ipykernel_private_only():
    """Also catches an attribute of our own subclass that happens to share a name with one of
    ipykernel's (it would silently replace ipykernel's state)."""
    private = ipykernel_private_names()
    problems = []
    for path in sorted((REPO / "remote_kernel").rglob("*.py")):
        if path.name == "ipykernel_private.py":
            continue
        text = path.read_text(encoding="utf-8")
        if not re.search(r"^\s*(from|import) ipykernel\b", text, re.M):
            continue
        where = path.relative_to(REPO)
        problems += [f"{where}: imports {m}" for m in re.findall(r"ipykernel(?:\.\w+)*\._\w+", text)]
        problems += [f"{where}: _{name}" for name in sorted(_names(_USED, text) & private)]
    assert not problems, "ipykernel internals outside remote_kernel/ipykernel_private.py:\n" + "\n".join(problems)


def test_the_internals_ipykernel_private_relies_on_are_there():
    """Each private name the module uses exists in the installed ipykernel with the shape used
    (CI runs this on the lowest allowed ipykernel and on the newest)."""
    from ipykernel.iostream import OutStream
    from ipykernel.kernelapp import IPKernelApp
    from ipykernel.kernelbase import Kernel

    assert callable(Kernel._get_shell_context_var) and callable(Kernel._topic)
    assert re.search(r"self\._shell_parent_ident\s*(:[^=\n]*)?=\s*ContextVar\(", inspect.getsource(Kernel.__init__))
    traits = Kernel.class_traits()
    assert "_execute_sleep" in traits and "_allow_stdin" in traits
    assert list(inspect.signature(Kernel._publish_execute_input).parameters) == [
        "self", "code", "parent", "execution_count"]
    assert list(inspect.signature(Kernel._publish_status).parameters) == ["self", "status", "channel", "parent"]
    stream_init = inspect.getsource(OutStream.__init__)
    for attribute in ("_buffer_lock", "_buffers", "_flush_pending", "_subprocess_flush_pending"):
        assert re.search(rf"self\.{attribute}\s*(:[^=\n]*)?=", stream_init), attribute
    # (that ipykernel then reads the shell socket on the main loop: tests/test_lean_kernel.py)
    assert "shell_channel_thread" in IPKernelApp.class_traits()
