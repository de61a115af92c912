"""Directives: the only code the bridge handles locally.

A cell may start with ``%remote`` lines, or be a ``%%remote batch`` cell.  ``%remote`` is not an
IPython magic and not valid code in any remote language we serve, so nothing sent to the remote
can be mistaken for one; every other line (IPython magics included) goes to the remote verbatim.

The directives and their forms are listed in ``HELP`` (what ``%remote help`` prints).

Parsing is pure (``parse_cell``); ``run_directive`` performs one against a client.
"""

from __future__ import annotations

import argparse
import os
import shlex
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

PREFIX = "%remote"
CELL_PREFIX = "%%remote"

# A constant, not taken from the module docstring: ``python -OO`` drops docstrings.
HELP = textwrap.dedent("""\
    %remote help                          this list
    %remote info                          session name, id, image, endpoint, API version, extensions
    %remote upload LOCAL [REMOTE]         copy a local file into the session (< 1 MiB)
    %remote download REMOTE [LOCAL]       copy a file of the session to the local disk
    %remote ls [PATH]                     list files in the session
    %remote sessions                      this key's sessions on the server (name, image, status, age,
                                          whether a cell runs) — with our session-list extension
    %remote attach NAME                   use the session NAME from now on (one kept by an earlier
                                          kernel); a cell still running there streams its rest here
    %%remote batch [--clean CMD] [--build CMD] [--exec CMD] [--file NAME]
                                          batch mode; the cell body, if any, is uploaded as NAME
                                          first.  CMD "*" = the server's default for the language,
                                          "" = skip the step (defaults: clean skipped, build and exec "*").
""")

COMMANDS = ("help", "info", "upload", "download", "ls", "sessions", "attach")
# how many arguments each takes, and its usage line
_FORMS = {"help": (0, 0, "%remote help"), "info": (0, 0, "%remote info"),
          "upload": (1, 2, "%remote upload LOCAL [REMOTE]"), "download": (1, 2, "%remote download REMOTE [LOCAL]"),
          "ls": (0, 1, "%remote ls [PATH]"), "sessions": (0, 0, "%remote sessions"),
          "attach": (1, 1, "%remote attach NAME")}


class DirectiveError(ValueError):
    """A malformed directive; the message says the right form."""


@dataclass
class Directive:
    command: str
    args: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    body: str = ""


@dataclass
class ParsedCell:
    directives: list[Directive]
    code: str  # what remains for the remote ("" when nothing)


def _is_directive_line(line: str) -> bool:
    stripped = line.strip()
    return stripped == PREFIX or stripped.startswith(PREFIX + " ") or stripped.startswith(PREFIX + "\t")


def parse_cell(code: str) -> ParsedCell:
    """Split a cell into leading directives and the code to send to the remote."""
    lines = code.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return ParsedCell([], code)
    head = lines[first].strip()
    if head == CELL_PREFIX or head.startswith(CELL_PREFIX + " "):
        return ParsedCell([_parse_cell_directive(head, "\n".join(lines[first + 1:]))], "")
    directives: list[Directive] = []
    index = first
    while index < len(lines) and (not lines[index].strip() or _is_directive_line(lines[index])):
        if lines[index].strip():
            directives.append(parse_line(lines[index]))
        index += 1
    if not directives:
        return ParsedCell([], code)
    rest = "\n".join(lines[index:])
    return ParsedCell(directives, rest if rest.strip() else "")


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise DirectiveError(f"cannot parse {text.strip()!r}: {exc}") from None


def parse_line(line: str) -> Directive:
    words = _split(line.strip()[len(PREFIX):])
    if not words:
        return Directive("help")
    command, args = words[0].lower(), words[1:]
    if command not in COMMANDS:
        raise DirectiveError(f"unknown directive '%remote {words[0]}'; known: {', '.join(COMMANDS)} "
                             "(and the '%%remote batch' cell)")
    low, high, usage = _FORMS[command]
    if not low <= len(args) <= high:
        raise DirectiveError(f"usage: {usage}")
    return Directive(command, args)


class _BatchOptions(argparse.ArgumentParser):
    """``%%remote batch``'s options; a mistake is a DirectiveError, never an exit."""

    def __init__(self) -> None:
        super().__init__(prog="%%remote batch", add_help=False, allow_abbrev=False)
        for step in ("clean", "build", "exec"):
            self.add_argument(f"--{step}", metavar="CMD")
        self.add_argument("--file", metavar="NAME")

    def error(self, message: str):  # argparse would print and exit the process
        raise DirectiveError(f"{message}; the form is '{BATCH_FORM}' (CMD '*' = the server's default, '' = skip)")


BATCH_FORM = "%%remote batch [--clean CMD] [--build CMD] [--exec CMD] [--file NAME]"


def _parse_cell_directive(head: str, body: str) -> Directive:
    words = _split(head[len(CELL_PREFIX):])
    if not words or words[0].lower() != "batch":
        raise DirectiveError(f"the only cell directive is '{BATCH_FORM}'")
    given = _BatchOptions().parse_args(words[1:])
    # defaults: clean skipped, build and exec the server's default for the language; "" skips
    options = {"clean": given.clean or None,
               "build": "*" if given.build is None else (given.build or None),
               "exec": "*" if given.exec is None else (given.exec or None)}
    if body.strip() and not given.file:
        raise DirectiveError("a '%%remote batch' cell with a body needs --file NAME to upload it as")
    return Directive("batch", [], {"batch": options, "file": given.file}, body)


# ---- execution -------------------------------------------------------------------------------

def run_directive(directive: Directive, client: Any, session_name: str, info: dict,
                  emit: Callable[[str], None], cwd: str | None = None) -> None:
    """Perform one non-batch directive; ``emit(text)`` shows a line to the user.  API failures
    propagate (the kernel turns them into a cell error)."""
    cwd = cwd or os.getcwd()
    if directive.command == "help":
        emit(HELP)
    elif directive.command == "info":
        emit("".join(f"{key}: {value}\n" for key, value in info.items()))
    elif directive.command == "upload":
        local = os.path.join(cwd, os.path.expanduser(directive.args[0]))
        if not os.path.isfile(local):
            raise DirectiveError(f"no local file {directive.args[0]!r} (relative to {cwd})")
        remote = directive.args[1] if len(directive.args) > 1 else os.path.basename(local)
        client.upload(session_name, [(remote, local)])
        emit(f"uploaded {directive.args[0]} → {remote} ({os.path.getsize(local)} bytes)\n")
    elif directive.command == "download":
        remote = directive.args[0]
        local = os.path.join(cwd, os.path.expanduser(directive.args[1] if len(directive.args) > 1
                                                     else os.path.basename(remote.rstrip("/"))))
        content = client.download(session_name, [remote])[remote]
        with open(local, "wb") as handle:
            handle.write(content)
        emit(f"downloaded {remote} → {local} ({len(content)} bytes)\n")
    elif directive.command == "sessions":
        emit(sessions_table(client.list_sessions(), session_name))
    elif directive.command == "ls":
        files = client.list_files(session_name, directive.args[0] if directive.args else ".")
        lines = []
        for entry in files:
            name = entry.get("filename", "?")
            mode = str(entry.get("mode", ""))
            suffix = "/" if mode.startswith("d") else ""
            lines.append(f"{mode:>11} {entry.get('size', ''):>10} {name}{suffix}\n")
        emit("".join(lines) or "(empty)\n")
    else:  # pragma: no cover - parse_line only yields known commands; attach is the kernel's
        raise DirectiveError(f"unknown directive {directive.command!r}")


def sessions_table(sessions: list[dict], current: str) -> str:
    """``%remote sessions``: one line per session, the current one marked."""
    if not sessions:
        return "(no sessions)\n"
    lines = [f"  {'NAME':<32} {'IMAGE':<16} {'STATUS':<10} {'AGE':>8}  CELL\n"]
    for info in sorted(sessions, key=lambda i: str(i.get("sessionName") or i.get("name") or "")):
        name = str(info.get("sessionName") or info.get("name") or "?")
        age = info.get("age")
        age_text = _age(age / 1000) if isinstance(age, (int, float)) else "?"
        run = info.get("activeRun") if isinstance(info.get("activeRun"), dict) else None
        cell = "running" if run and run.get("state") in ("running", "waiting-input", "queued") else ""
        mark = "*" if name == current else " "
        lines.append(f"{mark} {name:<32} {str(info.get('image', '?')):<16} {str(info.get('status', '?')):<10} "
                     f"{age_text:>8}  {cell}\n")
    return "".join(lines)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
