"""Languages the embedded server runs as programs, the way real Backend.AI images run them when
no Jupyter kernel of the language is installed (docs/PROTOCOL.md#programs-on-the-embedded-server):
a query's code is a whole program — compiled first for C and C++ — run to its end in the
session's folder.

Pure: which executables serve each language, the commands of a query and the batch defaults,
and what a failed run replies.  Running them is program_engine.py's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass

ENGINE_PREFIX = "rk-program-"  # the "kernelspec" name a program session reports

# C and C++ programs: stdout line-buffered, as on a terminal, so that output streams as lines
# are written and a prompt shows before its input is read (glibc flushes a line-buffered stdout
# before it reads a terminal, and stdin is one).  Compiled with every query.
LINE_BUFFERED_C = "_rk_line_buffered.c"
LINE_BUFFERED_SOURCE = """\
#include <stdio.h>
__attribute__((constructor)) static void rk_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, BUFSIZ); }
"""
COMPILE_FLAGS = ("-Wall",)  # as Backend.AI's C and C++ images
LINK_FLAGS = ("-lm", "-lpthread")

SOURCE = "{source}"  # in ``run_args``: the path of the query's source file
# Lua: stdout line-buffered (as LINE_BUFFERED_SOURCE); the code loaded under the name
# "cell.lua", which messages show whole (Lua shortens a long path to its last 60 characters)
LUA_LOADER = ("io.stdout:setvbuf('line') "
              "local h = assert(io.open([==[" + SOURCE + "]==], 'rb')) local src = h:read('*a') h:close() "
              "local f, e = (loadstring or load)(src, '=cell.lua') if not f then error(e, 0) end f()")


@dataclass(frozen=True)
class Step:
    """One process of a query: ``executable`` run with ``argv`` in ``cwd``; a compiler
    (``compiles``) never reads input.  ``argv[0]`` is the tool's bare name, which interpreters
    put before their messages (``lua: cell.lua:1: ...``)."""

    executable: str
    argv: tuple[str, ...]
    cwd: str
    compiles: bool = False


@dataclass(frozen=True)
class Program:
    language: str  # the language key of kernel/language.py: c, c++, lua, javascript, r, julia
    image: str  # the image name our kernelspecs use (kernelspecs/remote-*)
    display: str
    tools: tuple[str, ...]  # executables that serve, in order of preference
    install: str  # what to install when none is found
    extension: str
    compiled: bool = False
    run_args: tuple[str, ...] = (SOURCE,)  # the interpreter's arguments

    @property
    def engine_name(self) -> str:
        return ENGINE_PREFIX + self.image

    @property
    def source(self) -> str:
        """The file a query's code is written to (compiler messages name it)."""
        return "cell" + self.extension

    def find_tool(self, path: str | None) -> str | None:
        """The absolute path of the first of ``tools`` on ``path``, or None."""
        for tool in self.tools:
            found = shutil.which(tool, path=path)
            if found:
                return found
        return None

    def missing(self, image: str) -> str:
        """What ``ImageNotFound`` says when none of ``tools`` is installed."""
        what = "compiler" if self.compiled else "interpreter"
        return (f"image {image!r} runs {self.display} programs, and this server has no {self.display} {what} "
                f"({', '.join(self.tools)}) on its PATH: install {self.install}")

    def query_steps(self, tool: str, scratch: str, cwd: str) -> list[Step]:
        """A query whose code is in ``scratch``/``source``: compile there (so that messages name
        ``cell.c``, with the session's folder on the include path), then run in ``cwd``."""
        name = os.path.basename(tool)
        if self.compiled:
            return [Step(tool, (name, *COMPILE_FLAGS, "-I", cwd, "-o", "cell", self.source, LINE_BUFFERED_C,
                                *LINK_FLAGS), scratch, compiles=True),
                    Step(os.path.join(scratch, "cell"), ("cell",), cwd)]
        source = os.path.join(scratch, self.source)
        return [Step(tool, (name, *(arg.replace(SOURCE, source) for arg in self.run_args)), cwd)]

    # -- batch mode: what "*" means (a Makefile, if any, builds first: batch.py) ---------------------

    def batch_build(self, tool: str) -> str | None:
        return f"{tool} -O2 -o main *{self.extension}" if self.compiled else None

    def batch_exec(self, tool: str, cwd: str) -> str:
        if self.compiled:
            built = [name for name in ("main", "a.out") if os.path.isfile(os.path.join(cwd, name))]
            return "./" + (built[0] if built else "main")
        return f"{tool} main{self.extension}"


PROGRAMS = (
    Program("c", "c", "C", ("gcc", "cc", "clang"), "gcc (Debian/Ubuntu: apt-get install gcc)", ".c",
            compiled=True),
    Program("c++", "cpp", "C++", ("g++", "c++", "clang++"), "g++ (Debian/Ubuntu: apt-get install g++)", ".cpp",
            compiled=True),
    Program("lua", "lua", "Lua", ("lua", "lua5.4", "lua5.3", "lua5.2", "lua5.1", "luajit"),
            "lua5.4 (Debian/Ubuntu: apt-get install lua5.4)", ".lua", run_args=("-e", LUA_LOADER)),
    Program("javascript", "nodejs", "Node.js", ("node", "nodejs"),
            "nodejs (Debian/Ubuntu: apt-get install nodejs)", ".js"),
    Program("r", "r-base", "R", ("Rscript",),
            "r-base-core (Debian/Ubuntu: apt-get install r-base-core), or IRkernel for R's Jupyter kernel", ".R"),
    Program("julia", "julia", "Julia", ("julia",),
            "julia (https://julialang.org/downloads/), or IJulia for Julia's Jupyter kernel", ".jl"),
)
_BY_LANGUAGE = {program.language: program for program in PROGRAMS}
_BY_ENGINE = {program.engine_name: program for program in PROGRAMS}


def for_language(language: str) -> Program | None:
    return _BY_LANGUAGE.get(language)


def for_engine(name: str) -> Program | None:
    """The program behind a session's kernelspec name, or None for a Jupyter kernel's."""
    return _BY_ENGINE.get(name)


# -- what a finished query replies ------------------------------------------------------------------

TRACEBACK_LINES = 20
_NODE_ERROR = re.compile(r"^\s*(?:Uncaught\s+)?(\w*(?:Error|Exception))(?:\s*\[\w+\])?:\s*(.*)$")
_ERROR_LINE = re.compile(r"^\s*(?:ERROR|Error|error)\b")
_COMPILER_ERROR = re.compile(r"\b(?:error|Error)\b")


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _signal_name(exit_code: int) -> str | None:
    if exit_code <= 128:
        return None
    try:
        return signal.Signals(exit_code - 128).name
    except ValueError:
        return None


def failure(program: Program, exit_code: int, stderr_tail: str, *, compile_failed: bool,
            tool: str = "") -> tuple[str, str]:
    """(ename, evalue) of a query that exited with ``exit_code`` (not 0), from the end of its
    standard error."""
    lines = _lines(stderr_tail)
    if compile_failed:
        message = next((line for line in lines if _COMPILER_ERROR.search(line)), lines[-1] if lines else "")
        return "CompileError", message or f"{os.path.basename(tool) or 'the compiler'} exited with code {exit_code}"
    ename = "RuntimeError"
    message = ""
    if program.language == "javascript":
        found = next((m for m in map(_NODE_ERROR.match, lines) if m), None)
        if found:
            ename, message = found.group(1), found.group(2)
    elif program.language == "lua":
        # lua.c reports "<progname>: <message>", then a stack traceback
        prefix = os.path.basename(tool) + ": " if tool else "lua: "
        message = next((line[len(prefix):] for line in lines if line.startswith(prefix)), "")
    if not message:
        message = next((line for line in lines if _ERROR_LINE.match(line)), lines[-1] if lines else "")
    if message:
        return ename, f"{message} (exit code {exit_code})"
    killed = _signal_name(exit_code)
    if killed:
        return ename, f"the program was killed by {killed} (exit code {exit_code})"
    return ename, f"the program exited with code {exit_code}"


def reply(program: Program, exit_code: int, stderr_tail: str, *, compile_failed: bool, interrupted: bool,
          tool: str = "") -> dict:
    """The run's reply, shaped as a Jupyter execute_reply (our extensions pass it on), plus
    ``exitCode``: the program's own."""
    if interrupted and exit_code != 0:
        return {"status": "error", "ename": "KeyboardInterrupt", "evalue": "the program was interrupted",
                "traceback": ["KeyboardInterrupt: the program was interrupted"], "exitCode": exit_code}
    if exit_code == 0:
        return {"status": "ok", "exitCode": 0}
    ename, evalue = failure(program, exit_code, stderr_tail, compile_failed=compile_failed, tool=tool)
    return {"status": "error", "ename": ename, "evalue": evalue,
            "traceback": _lines(stderr_tail)[-TRACEBACK_LINES:] or [f"{ename}: {evalue}"], "exitCode": exit_code}
