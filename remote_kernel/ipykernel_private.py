"""Every use of ipykernel's private internals, in one place.

ipykernel promises nothing about names with a leading underscore; the versions this module was
written against are pinned in ``pyproject.toml`` (``ipykernel>=7,<8``).  Code elsewhere calls
the functions here, so an ipykernel release that moves one of them breaks one module.
"""

from __future__ import annotations

from typing import Any


def shell_request_ident(kernel: Any) -> Any:
    """The ZMQ routing identity of the shell request being handled (where ``input_request``
    must go): ipykernel 7 keeps it in a context variable of the shell handler."""
    return kernel._get_shell_context_var(kernel._shell_parent_ident)
