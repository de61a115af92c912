"""``remote-kernel <command> --help`` says each option's default (issue 21: `serve --help`
showed none for the port, the idle timeout or the session limit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def help_of(*command: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "remote_kernel", *command, "--help"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())  # argparse wraps lines


def test_serve_help_shows_the_defaults():
    text = help_of("serve")
    for option, default in (("--port", "8090"), ("--idle-timeout", "3600.0"), ("--max-sessions", "32")):
        described = text.split(f" {option} {option.lstrip('-').upper().replace('-', '_')} ", 1)[1]
        assert described.split(" --", 1)[0].endswith(f"(default: {default})"), (option, described[:200])
    # switches and options whose help already says its default get nothing added
    assert "(default: True)" not in text and "(default: False)" not in text
    assert "(default 127.0.0.1)" in text and "(default: 127.0.0.1)" not in text
    assert "(default: None)" not in text


def test_install_help_says_where_it_installs_by_default():
    text = help_of("install")
    assert "Without a location flag: --" in text and sys.executable in text
