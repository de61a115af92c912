"""Batch runs: ``clean``, ``build``, ``exec`` shell commands in the session's working directory,
their output streamed into the run (docs/PROTOCOL.md#the-execute-loop).  ``"*"`` picks the
language default (Makefile → ``make``; Python: ``python setup.py develop`` / ``python main.py``;
the languages of programs.py: e.g. ``gcc -O2 -o main *.c`` / ``./main``, ``lua main.lua``);
``""``/null skips a step; a failed build skips exec, which then reports exit code 127.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import shlex
import signal

from remote_kernel import protocol
from remote_kernel.server import programs
from remote_kernel.server.runs import Run

# exec "*" of languages programs.py does not know
_EXEC_DEFAULTS = {
    "python": "python main.py",
    "bash": "bash main.sh",
    "ruby": "ruby main.rb",
}


def default_command(step: str, cwd: str, language: str, path: str | None = None) -> str | None:
    """What ``"*"`` runs; ``path``: the PATH the command runs with (which compiler, which Lua)."""
    has_make = any(os.path.exists(os.path.join(cwd, n)) for n in ("Makefile", "makefile", "GNUmakefile"))
    program = programs.for_language(language)
    tool = program.find_tool(path) if program is not None else None
    tool = os.path.basename(tool) if tool else (program.tools[0] if program is not None else "")
    if step == "build":
        if has_make:
            return "make"
        if language == "python" and os.path.exists(os.path.join(cwd, "setup.py")):
            return "python setup.py develop"
        return program.batch_build(tool) if program is not None else None
    if step == "exec":
        return program.batch_exec(tool, cwd) if program is not None else _EXEC_DEFAULTS.get(language)
    return None  # clean has no default


def resolve_command(step: str, value: object, cwd: str, language: str, path: str | None = None) -> str | None:
    if value is None or value == "":
        return None
    if value == "*":
        return default_command(step, cwd, language, path)
    return str(value)


def exit_code_of(returncode: int) -> int:
    # a signal-killed step reports 128+N, as a shell does
    return 128 - returncode if returncode < 0 else returncode


class BatchRunner:
    """Runs one batch run; ``interrupt()`` sends SIGINT to the current step's process group."""

    def __init__(self, run: Run, cwd: str, env: dict, language: str):
        self.run = run
        self.cwd = cwd
        self.env = env
        self.language = language
        self.process: asyncio.subprocess.Process | None = None

    def interrupt(self) -> None:
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signum)
            except OSError:
                pass

    async def execute(self) -> None:
        run = self.run
        options = run.options
        path = self.env.get("PATH")
        clean = resolve_command("clean", options.get("clean"), self.cwd, self.language, path)
        if clean:
            run.phase(protocol.STATUS_CLEAN_FINISHED, await self._step(clean))
        build = resolve_command("build", options.get("build"), self.cwd, self.language, path)
        if build:
            code = await self._step(build)
            run.phase(protocol.STATUS_BUILD_FINISHED, code)
            if code != 0:
                run.finish(protocol.EXIT_BUILD_FAILED)
                return
        command = resolve_command("exec", options.get("exec"), self.cwd, self.language, path)
        if not command:
            run.finish(0)
            return
        run.finish(await self._step(command))

    async def _step(self, command: str) -> int:
        try:
            self.process = await asyncio.create_subprocess_shell(
                command, cwd=self.cwd, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            self.run.add([["stderr", f"cannot start {shlex.quote(command)}: {exc.strerror}\n"]])
            return 127
        try:
            await asyncio.gather(self._pump(self.process.stdout, "stdout"),
                                 self._pump(self.process.stderr, "stderr"))
            return exit_code_of(await self.process.wait())
        finally:
            self.kill()  # leftovers of the step's process group
            self.process = None

    async def _pump(self, stream: asyncio.StreamReader, kind: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            chunk = await stream.read(65536)
            text = decoder.decode(chunk, final=not chunk)
            if text:
                self.run.add([[kind, text]])
            if not chunk:
                return
