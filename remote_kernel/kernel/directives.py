"""Directives: the only code the bridge handles locally.

A cell may start with ``%remote`` lines, or be a ``%%remote batch`` cell.  ``%remote`` is not an
IPython magic and not valid code in any remote language we serve, so nothing sent to the remote
can be mistaken for one; every other line (IPython magics included) goes to the remote verbatim.

The directives and their forms are listed in ``HELP`` (what ``%remote help`` prints).

Parsing is pure (``parse_cell``); ``run_directive`` performs one against a client.
"""

from __future__ import annotations

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
    %%remote batch [--clean CMD] [--build CMD] [--exec CMD] [--file NAME]
                                          batch mode; the cell body, if any, is uploaded as NAME
                                          first.  CMD "*" = the server's default for the language,
                                          "" = skip the step (defaults: clean skipped, build and exec "*").
""")

COMMANDS = ("help", "info", "upload", "download", "ls")


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
    limits = {"help": (0, 0), "info": (0, 0), "upload": (1, 2), "download": (1, 2), "ls": (0, 1)}
    low, high = limits[command]
    if not low <= len(args) <= high:
        usage = {"help": "%remote help", "info": "%remote info", "upload": "%remote upload LOCAL [REMOTE]",
                 "download": "%remote download REMOTE [LOCAL]", "ls": "%remote ls [PATH]"}[command]
        raise DirectiveError(f"usage: {usage}")
    return Directive(command, args)


def _parse_cell_directive(head: str, body: str) -> Directive:
    words = _split(head[len(CELL_PREFIX):])
    if not words or words[0].lower() != "batch":
        raise DirectiveError("the only cell directive is '%%remote batch [--clean CMD] [--build CMD] "
                             "[--exec CMD] [--file NAME]'")
    options: dict[str, Any] = {"clean": None, "build": "*", "exec": "*"}
    filename = None
    rest = words[1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        name, _, value = word.partition("=")
        key = name.lstrip("-")
        if not name.startswith("--") or key not in ("clean", "build", "exec", "file"):
            raise DirectiveError(f"unknown batch option {word!r}; use --clean, --build, --exec, --file")
        if not _:
            if i + 1 >= len(rest):
                raise DirectiveError(f"{name} needs a value (a command, '*' for the default, '' to skip)")
            value = rest[i + 1]
            i += 1
        if key == "file":
            filename = value
        else:
            options[key] = value or None
        i += 1
    if body.strip() and not filename:
        raise DirectiveError("a '%%remote batch' cell with a body needs --file NAME to upload it as")
    return Directive("batch", [], {"batch": options, "file": filename}, body)


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
    elif directive.command == "ls":
        files = client.list_files(session_name, directive.args[0] if directive.args else ".")
        lines = []
        for entry in files:
            name = entry.get("filename", "?")
            mode = str(entry.get("mode", ""))
            suffix = "/" if mode.startswith("d") else ""
            lines.append(f"{mode:>11} {entry.get('size', ''):>10} {name}{suffix}\n")
        emit("".join(lines) or "(empty)\n")
    else:  # pragma: no cover - parse_line only yields known commands
        raise DirectiveError(f"unknown directive {directive.command!r}")
