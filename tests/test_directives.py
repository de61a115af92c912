"""Directive parsing (pure): what is handled locally and what goes to the remote verbatim."""

from __future__ import annotations

import pytest

from remote_kernel.kernel.directives import DirectiveError, parse_cell


def test_plain_code_and_ipython_magics_go_to_the_remote_verbatim():
    for code in ("print(1)", "%timeit x = 1", "%%time\nx = 1", "!ls", "%remotely(1)", "  \n"):
        parsed = parse_cell(code)
        assert parsed.directives == [] and parsed.code == code


def test_leading_directives_then_code():
    parsed = parse_cell("%remote info\n\n%remote upload data.csv in/data.csv\nprint(1)\n")
    assert [(d.command, d.args) for d in parsed.directives] == [("info", []), ("upload", ["data.csv", "in/data.csv"])]
    assert parsed.code == "print(1)\n"


def test_directive_only_cell_sends_nothing():
    parsed = parse_cell("%remote download out.txt 'my file.txt'")
    assert parsed.directives[0].args == ["out.txt", "my file.txt"] and parsed.code == ""
    assert parse_cell("%remote").directives[0].command == "help"


def test_directives_after_code_are_code():
    parsed = parse_cell("x = 1\n%remote info")
    assert parsed.directives == [] and parsed.code == "x = 1\n%remote info"


@pytest.mark.parametrize("line, message", [
    ("%remote frobnicate", "unknown directive"),
    ("%remote upload", "usage: %remote upload"),
    ("%remote info extra", "usage: %remote info"),
    ("%remote upload 'unterminated", "cannot parse"),
])
def test_bad_directives_say_the_right_form(line, message):
    with pytest.raises(DirectiveError, match=message):
        parse_cell(line)


def test_batch_cell_defaults_and_options():
    [d] = parse_cell("%%remote batch").directives
    assert d.command == "batch" and d.options["batch"] == {"clean": None, "build": "*", "exec": "*"}
    [d] = parse_cell("%%remote batch --build '' --exec 'python main.py' --file main.py\nprint('hi')\n").directives
    assert d.options["batch"] == {"clean": None, "build": None, "exec": "python main.py"}
    assert d.options["file"] == "main.py" and d.body == "print('hi')\n"
    [d] = parse_cell("%%remote batch --clean=make-clean").directives
    assert d.options["batch"]["clean"] == "make-clean"


@pytest.mark.parametrize("cell, message", [
    ("%%remote shell", "only cell directive"),
    ("%%remote batch --run x", "unrecognized arguments: --run x"),
    ("%%remote batch --exec", "--exec: expected one argument"),
    ("%%remote batch\nprint(1)", "needs --file"),
])
def test_bad_batch_cells(cell, message):
    with pytest.raises(DirectiveError, match=message):
        parse_cell(cell)
