"""``Engine``: what runs a session's code — the session's Jupyter kernel (``InnerKernel``), or, for
a language whose Jupyter kernel is not installed, a ``ProgramEngine`` that runs each query as a
program (programs.py).

``Session`` and its ``RunWorker`` use this interface only.  A query's output, input requests and
reply reach the run through an ``inner_kernel.Listener`` whichever engine runs it; a program's
reply carries its exit code (``exitCode``), which a Jupyter kernel's has not.
"""

from __future__ import annotations

import logging
from typing import Protocol

from remote_kernel.server import programs
from remote_kernel.server.comms import EventLog
from remote_kernel.server.inner_kernel import SHELL_TIMEOUT, InnerKernel, Listener
from remote_kernel.server.program_engine import ProgramEngine


class Engine(Protocol):
    events: EventLog  # our jupyter-comms event stream

    @property
    def pid(self) -> int | None: ...

    def running(self) -> bool: ...

    def exit_code(self) -> int | None: ...

    async def is_alive(self) -> bool: ...

    async def start(self, cwd: str, env: dict) -> None: ...

    async def stop(self, grace: float = ..., interrupt_first: bool = False) -> None: ...

    async def restart(self, cwd: str) -> None: ...

    def kill_group(self) -> None: ...

    def kill(self) -> None: ...

    async def interrupt(self) -> None: ...

    def read_log(self, limit: int) -> str: ...

    async def request(self, kind: str, timeout: float = SHELL_TIMEOUT, **kwargs) -> dict | None: ...

    def execute(self, code: str, allow_stdin: bool, listener: Listener, msg_id: str | None = None) -> str: ...

    def forget(self, msg_id: str) -> None: ...

    def send_input(self, text: str) -> None: ...

    def send_shell(self, msg_type: str, content: dict, metadata: dict | None = None, buffers=(),
                   msg_id: str | None = None) -> str: ...


def new_engine(kernel_name: str, kernel_specs, files_prefix: str, start_timeout: float,
               log: logging.LoggerAdapter) -> Engine:
    """The engine of a session whose image resolved to ``kernel_name`` (images.resolve)."""
    program = programs.for_engine(kernel_name)
    if program is not None:
        return ProgramEngine(program, files_prefix, log)
    return InnerKernel(kernel_name, kernel_specs, files_prefix, start_timeout, log)
