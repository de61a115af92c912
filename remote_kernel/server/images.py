"""Which engine runs a session's ``image``, and which images this server runs.

``python``, ``python3``, ``python:3.x`` and Backend.AI image references such as
``cr.backend.ai/stable/python:3.11-ubuntu22.04`` run the server's own Python (so the
remote_kernel package is importable in sessions).  Any other image runs, the first that exists:

1. the installed Jupyter kernelspec of that name (or of the reference's base name);
2. an installed kernelspec of the image's language (``r-base`` → IRkernel's ``ir``, ``julia`` →
   IJulia's), the language named by the image as ``kernel/language.py`` reads it;
3. a program runner of the language (programs.py: C, C++, Lua, Node.js, R, Julia), when its
   compiler or interpreter is on the PATH.

Kernelspecs of our own bridge (``remote-lua``, ...) never count: a session running the bridge
would start a server of its own, which would run the bridge again.  Any other image is 404
``image-not-found``, which names what the server runs — or, for a language it knows, what to
install.  ``catalogue`` lists it all (our image-list extension, ``GET /images``).
"""

from __future__ import annotations

import os
import sys

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_path
from traitlets import default

from remote_kernel.kernel.language import match_language
from remote_kernel.server import programs
from remote_kernel.server.errors import APIProblem

OWN_PYTHON = "rk-own-python"
RUNS_KERNEL = "kernel"  # a Jupyter kernel
RUNS_PROGRAM = "program"  # each query a program (programs.py)


class ServerKernelSpecManager(KernelSpecManager):
    """Installed kernelspecs plus ``rk-own-python``: IPython on the server's interpreter."""

    @default("kernel_dirs")
    def _kernel_dirs_default(self) -> list[str]:
        # jupyter_client's, without importing IPython (a tenth of a second) to name ~/.ipython
        ipython_dir = os.environ.get("IPYTHONDIR") or os.path.join(os.path.expanduser("~"), ".ipython")
        return [*jupyter_path("kernels"), os.path.join(ipython_dir, "kernels")]

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == OWN_PYTHON:
            return KernelSpec(
                # Each session keeps its own history, as each container does on a real server:
                # one shared ~/.ipython history database serialises every session on its lock.
                # lean_kernel: an IPython kernel without ipykernel 7's per-request thread hops
                # and without the IOPub messages the server does not read.
                argv=[sys.executable, "-m", "remote_kernel.lean_kernel", "-f", "{connection_file}",
                      "--HistoryManager.hist_file=:memory:",
                      "--IPKernelApp.kernel_class=remote_kernel.lean_kernel.ServerIPythonKernel"],
                display_name="Python 3 (remote_kernel server)", language="python",
                interrupt_mode="signal", metadata={"debugger": False}, resource_dir="",
            )
        return super().get_kernel_spec(kernel_name)


def _base_name(image: str) -> str:
    """``cr.backend.ai/stable/python:3.11-ubuntu22.04`` → ``python``."""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].split("@", 1)[0]


def is_python(image: str) -> bool:
    base = _base_name(image).lower()
    return base in ("python", "python3") or (base.startswith("python") and base[6:].replace(".", "").isdigit())


def session_path() -> str:
    """The PATH a session's programs search (as Session.kernel_env sets it)."""
    return os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def _is_bridge(spec: KernelSpec) -> bool:
    return "remote_kernel" in (spec.metadata or {}) or any(
        str(arg).endswith("remote_kernel.kernel") for arg in spec.argv or [])


def _jupyter_spec(specs: KernelSpecManager, name: str) -> KernelSpec | None:
    """The installed kernelspec ``name``, unless it is missing, broken or our bridge's."""
    try:
        spec = specs.get_kernel_spec(name)
    except (NoSuchKernel, ValueError, OSError):
        return None
    return None if _is_bridge(spec) else spec


def _jupyter_specs(specs: KernelSpecManager) -> dict[str, KernelSpec]:
    found = {}
    for name in sorted(specs.find_kernel_specs()):
        spec = _jupyter_spec(specs, name)
        if spec is not None:
            found[name] = spec
    return found


def _kernel_of_language(jupyter: dict[str, KernelSpec], language: str) -> str | None:
    return next((name for name, spec in jupyter.items() if (spec.language or "").lower() == language), None)


def _not_found(msg: str) -> APIProblem:
    return APIProblem(404, "image-not-found", "Unknown image.", msg)


def resolve(image: str, specs: KernelSpecManager) -> tuple[str, str]:
    """``image`` → (kernelspec name, language); a program runner's name comes from programs.py."""
    if is_python(image):
        return OWN_PYTHON, "python"
    for candidate in dict.fromkeys((image, _base_name(image))):
        spec = _jupyter_spec(specs, candidate)
        if spec is not None:
            return candidate, (spec.language or candidate).lower()
    language = match_language(image)
    program = programs.for_language(language) if language else None
    if program is not None:
        kernel = _kernel_of_language(_jupyter_specs(specs), program.language)
        if kernel is not None:
            return kernel, program.language
        if program.find_tool(session_path()) is not None:
            return program.engine_name, program.language
        raise _not_found(program.missing(image))
    runnable = ", ".join(entry["image"] for entry in catalogue(specs)["images"])
    raise _not_found(f"no kernel for image {image!r} on this server; it runs: {runnable}")


def catalogue(specs: KernelSpecManager) -> dict:
    """What this server runs: ``{"images": [...], "unavailable": [...]}`` (docs/PROTOCOL.md#our-extensions-image-list)."""
    images = [{"image": "python", "language": "python", "runs": RUNS_KERNEL, "kernelspec": OWN_PYTHON}]
    unavailable = []
    jupyter = _jupyter_specs(specs)
    for name, spec in jupyter.items():
        if not is_python(name):  # python3 and the like run the server's own Python
            images.append({"image": name, "language": (spec.language or "").lower(), "runs": RUNS_KERNEL,
                           "kernelspec": name})
    path = session_path()
    for program in programs.PROGRAMS:
        kernel = _kernel_of_language(jupyter, program.language)
        tool = None if kernel else program.find_tool(path)
        if kernel is not None:
            images.append({"image": program.image, "language": program.language, "runs": RUNS_KERNEL,
                           "kernelspec": kernel})
        elif tool is not None:
            images.append({"image": program.image, "language": program.language, "runs": RUNS_PROGRAM,
                           "command": os.path.basename(tool)})
        else:
            unavailable.append({"image": program.image, "language": program.language, "install": program.install})
    return {"images": images, "unavailable": unavailable}


def summary(listing: dict) -> str:
    """One line for ``remote-kernel serve`` to print at start."""
    text = "images: " + ", ".join(entry["image"] for entry in listing["images"])
    if listing["unavailable"]:
        text += "; not installed: " + ", ".join(f"{entry['image']} (install {entry['install']})"
                                                 for entry in listing["unavailable"])
    return text
