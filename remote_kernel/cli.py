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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # not built yet
        register = getattr(module, "register_" + name, None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
