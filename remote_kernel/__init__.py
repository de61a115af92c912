"""remote_kernel — a Jupyter kernel bridge to Backend.AI-compatible execution services."""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _launched_module() -> str:
    """The NAME of ``python -m NAME`` while it is being located, else ''."""
    if _sys.argv[:1] != ["-m"]:
        return ""
    argv = list(getattr(_sys, "orig_argv", []))
    for i, arg in enumerate(argv[1:], 1):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("-m") and len(arg) > 2:
            return arg[2:]
    return ""


if _launched_module().split(".")[0] == __name__ and _sys.path and \
        _os.path.abspath(_sys.path[0] or ".") == _os.getcwd():
    # Kernelspecs and the embedded server run ``python -m remote_kernel...`` in the user's
    # folder, which Python puts first on sys.path: a json.py or queue.py there would replace the
    # module we import (ipykernel_launcher drops it for the same reason).  IPython puts ""
    # back for the code of a session.
    del _sys.path[0]
