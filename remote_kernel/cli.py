"""The ``remote-kernel`` command: one subcommand per job, each implemented in its own module."""

from __future__ import annotations

import argparse
import sys

# Subcommand modules register themselves here: name → (help, add_arguments, run).
# Each module owns its arguments so this file stays a thin dispatcher.
SUBCOMMANDS = {
    "serve": "remote_kernel.server.app",
    "install": "remote_kernel.install",
    "list": "remote_kernel.install",
    "uninstall": "remote_kernel.install",
}


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="remote-kernel",
        description="Run Jupyter cells on a Backend.AI-compatible remote, or serve one locally.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_SubcommandParser)
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # A broken dependency (e.g. tornado for ``serve``) is an error of that subcommand,
            # said when it is used; never a subcommand that silently is not there.
            _register_unavailable(sub, name, module_name, exc)
            continue
        getattr(module, "register_" + name)(sub)
    return parser


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """An option's help ends with its default ("(default: 8090)") unless the help already says
    it or there is none to say (no value, a switch, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.nargs == 0 or "default" in text or default is None
                or default is argparse.SUPPRESS or default == []):
            return text
        return text + " (default: %(default)s)"


class _SubcommandParser(argparse.ArgumentParser):
    unavailable: str | None = None  # why this subcommand's module cannot be imported

    def __init__(self, *args, **kwargs):
        # every subcommand's --help shows its defaults, whichever module defines the options
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        if self.unavailable:  # any use, --help included, is that error
            self.exit(1, self.unavailable)
        return super().parse_known_args(args, namespace)


def _register_unavailable(sub, name: str, module_name: str, exc: ImportError) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    parser = sub.add_parser(name, help=f"unavailable ({reason})", add_help=False)
    parser.unavailable = (f"remote-kernel {name}: cannot import {module_name}: {reason}\n"
                          "(a dependency is missing or broken: reinstall remote_kernel)\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
