"""Install, list and uninstall the bridge's kernelspecs (``remote-kernel install|list|uninstall``).

Templates live in ``kernelspecs/<name>/`` (kernel.json + logos), shipped inside the package as
``remote_kernel/kernelspecs`` in wheels and read from the source tree otherwise.  The wheel also
ships ``remote-python`` itself as data files (``<environment>/share/jupyter/kernels``).  Every
spec of ours carries ``metadata.remote_kernel``, so that ``uninstall`` and ``list`` touch only
our own specs; the ones ``install`` writes also say ``installed_by``, which tells them from the
shipped copy.  Keys are never written: the kernel reads them from its environment at run time.

Jupyter looks for a kernel name in a list of directories (``JUPYTER_PATH``, the user's
directory, the environment's, the system's; in a virtual or conda environment the
environment's comes before the user's) and uses the first it finds.  Two specs of one name in
two of them are a trap (one silently shadows the other), so ``install`` refuses to make one
unless told ``--force``, ``list`` shows every location of a name and which one Jupyter uses,
and ``uninstall`` removes the copy ``install`` wrote (or the location asked for), never
whichever Jupyter happens to find first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.paths import jupyter_data_dir

MARKER = "remote_kernel"
INSTALLED_BY = "remote-kernel install"
DEFAULT_TEMPLATE = "remote-python"
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")

# image name (without registry/tag) → template, for `--image` without `--template`
_LANGUAGE_HINTS = (
    ("python", "remote-python"),
    ("r-base", "remote-r"),
    ("julia", "remote-julia"),
    ("lua", "remote-lua"),
    ("nodejs", "remote-nodejs"),
    ("node", "remote-nodejs"),
    ("cpp", "remote-cpp"),
    ("c++", "remote-cpp"),
    ("c", "remote-c"),
    ("r", "remote-r"),
)


class InstallError(Exception):
    """A user error in an install/uninstall request; the message says what to change."""


def templates_dir() -> Path:
    packaged = Path(__file__).parent / "kernelspecs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "kernelspecs"


def template_names() -> list[str]:
    root = templates_dir()
    return sorted(p.name for p in root.iterdir() if (p / "kernel.json").is_file())


def template_for_image(image: str) -> str:
    base = image.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    for prefix, template in _LANGUAGE_HINTS:
        if base == prefix or base.startswith(prefix + "-") or (len(prefix) > 1 and base.startswith(prefix)):
            return template
    return DEFAULT_TEMPLATE


def build_spec(template: str, *, image: str | None = None, endpoint: str | None = None,
               display_name: str | None = None) -> dict:
    """Pure: the kernel.json content ``install`` writes for a template with the user's overrides.

    The kernel runs on the interpreter that installs it (``sys.executable``, absolute): a spec
    in the user's directory is found by JupyterLab from any environment, and Jupyter would
    replace a bare ``python`` by its own interpreter, which may not have remote_kernel.
    ``remote-python`` names no image unless asked (``--image``), so that
    ``c.RemoteKernel.image`` in ``remote_kernel_config.py`` applies (argv would win over it).
    """
    path = templates_dir() / template / "kernel.json"
    if not path.is_file():
        raise InstallError(f"no kernelspec template {template!r}; choose one of {', '.join(template_names())}")
    spec = json.loads(path.read_text())
    meta = spec.setdefault("metadata", {}).setdefault(MARKER, {})
    argv = [a for a in spec["argv"] if not a.startswith(("--RemoteKernel.image=", "--APIConfig.endpoint="))]
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    image = image or meta.get("image")
    if image:
        argv.append(f"--RemoteKernel.image={image}")
        meta["image"] = image
    if endpoint:
        argv.append(f"--APIConfig.endpoint={endpoint}")
        meta["endpoint"] = endpoint
        if not display_name and endpoint != "local":
            spec["display_name"] = f"{spec['display_name']} @ {_host_of(endpoint)}"
    meta["installed_by"] = INSTALLED_BY
    spec["argv"] = argv
    if display_name:
        spec["display_name"] = display_name
    spec["metadata"]["debugger"] = False
    spec["interrupt_mode"] = "message"
    return spec


def _host_of(endpoint: str) -> str:
    return re.sub(r"^\w+://", "", endpoint).split("/", 1)[0]


# ---- where specs are ------------------------------------------------------------------------


def in_environment() -> bool:
    """A virtual or conda environment (where ``--sys-prefix`` is the natural place)."""
    return sys.prefix != sys.base_prefix or (Path(sys.prefix) / "conda-meta").is_dir()


def default_location() -> str:
    """The location flag used when none is given: the environment that holds remote_kernel
    (it goes with the environment, and the wheel's own ``remote-python`` is there), else the
    user's directory; never the system-wide one, which needs root."""
    return "--sys-prefix" if in_environment() else "--user"


def _same(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def kernel_dirs(manager: KernelSpecManager) -> list[str]:
    """The directories Jupyter (run from this environment) searches, highest priority first."""
    seen: list[str] = []
    for d in manager.kernel_dirs:
        if not any(_same(d, s) for s in seen):
            seen.append(d)
    return seen


@dataclass
class Location:
    """One kernelspec directory of a name."""

    name: str
    path: Path
    spec: dict  # kernel.json ({} if unreadable)

    @property
    def ours(self) -> bool:
        return MARKER in (self.spec.get("metadata") or {})

    @property
    def installed(self) -> bool:
        """Written by ``remote-kernel install`` (not the copy the wheel ships)."""
        return self.ours and self.spec["metadata"][MARKER].get("installed_by") == INSTALLED_BY

    @property
    def origin(self) -> str:
        if self.installed:
            return "remote-kernel install"
        if self.ours:
            return "shipped with remote_kernel"
        return "not remote-kernel's"


def _read(path: Path) -> dict:
    try:
        data = json.loads((path / "kernel.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def all_locations(manager: KernelSpecManager | None = None) -> dict[str, list[Location]]:
    """name → every directory holding a spec of that name, in Jupyter's order: the first is
    the one Jupyter uses, the others are shadowed by it."""
    manager = manager or KernelSpecManager()
    found: dict[str, list[Location]] = {}
    for d in kernel_dirs(manager):
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            continue
        for entry in entries:
            path = Path(d) / entry
            if (path / "kernel.json").is_file():
                found.setdefault(entry.lower(), []).append(Location(entry.lower(), path, _read(path)))
    return found


def locations(name: str, manager: KernelSpecManager | None = None) -> list[Location]:
    return all_locations(manager).get(name.lower(), [])


def destination(name: str, *, user: bool = False, prefix: str | None = None,
                manager: KernelSpecManager | None = None) -> Path:
    """Where ``install`` writes ``name`` for these flags (neither: ``default_location()``)."""
    manager = manager or KernelSpecManager()
    if not user and prefix is None:
        if default_location() == "--user":
            user = True
        else:
            prefix = sys.prefix
    if user:
        return Path(manager.user_kernel_dir) / name.lower()
    return Path(os.path.abspath(prefix)) / "share" / "jupyter" / "kernels" / name.lower()


def location_flag(path: Path, manager: KernelSpecManager | None = None) -> str | None:
    """The flag that addresses a spec directory (``--user``, ``--sys-prefix``, ``--prefix
    DIR``), or None for a directory those cannot name."""
    manager = manager or KernelSpecManager()
    parent = path.parent
    if _same(parent, manager.user_kernel_dir):
        return "--user"
    if _same(parent, Path(sys.prefix) / "share" / "jupyter" / "kernels"):
        return "--sys-prefix"
    if parent.parts[-3:] == ("share", "jupyter", "kernels"):
        return f"--prefix {parent.parent.parent.parent}"
    return None


def _used(path: Path, manager: KernelSpecManager) -> bool:
    """Whether Jupyter looks in the directory ``path`` would be in."""
    return any(_same(path.parent, d) for d in kernel_dirs(manager))


def _rank(path: Path, manager: KernelSpecManager) -> int:
    dirs = kernel_dirs(manager)
    return next(i for i, d in enumerate(dirs) if _same(path.parent, d))


def shadowing(name: str, dest: Path, manager: KernelSpecManager | None = None) -> tuple[list[Location], Path | None]:
    """The other locations of ``name`` a spec at ``dest`` would live beside, and which
    directory Jupyter would use once it is there (None when Jupyter does not look in
    ``dest``'s directory)."""
    manager = manager or KernelSpecManager()
    others = [loc for loc in locations(name, manager) if not _same(loc.path, dest)]
    if not _used(dest, manager):
        return others, None
    candidates = [(loc.path, _rank(loc.path, manager)) for loc in others] + [(dest, _rank(dest, manager))]
    return others, min(candidates, key=lambda c: c[1])[0]


def _os_problem(action: str, exc: OSError, path: Path) -> InstallError:
    where = exc.filename or path
    why = exc.strerror or str(exc)
    hint = ""
    if isinstance(exc, PermissionError):
        hint = ("; choose a location you may write: --user (your own Jupyter directory), "
                "--sys-prefix (this environment) or --prefix DIR")
    return InstallError(f"cannot {action} {path}: {where}: {why}{hint}")


def install(*, template: str = DEFAULT_TEMPLATE, name: str | None = None, image: str | None = None,
            endpoint: str | None = None, display_name: str | None = None, user: bool = False,
            prefix: str | None = None, manager: KernelSpecManager | None = None) -> str:
    """Write one kernelspec (neither ``user`` nor ``prefix``: ``default_location()``); returns
    the directory it was installed into.  Whatever is there is replaced; the command line
    checks first (``conflict``)."""
    name = (name or template).lower()
    if not _NAME_RE.fullmatch(name):
        raise InstallError(f"kernel name {name!r} may only hold ASCII letters, digits, '-', '.', '_'")
    spec = build_spec(template, image=image, endpoint=endpoint, display_name=display_name)
    manager = manager or KernelSpecManager()
    dest = destination(name, user=user, prefix=prefix, manager=manager)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / name
        shutil.copytree(templates_dir() / template, src)
        (src / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
        try:
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest)
        except OSError as exc:
            raise _os_problem("install the kernelspec into", exc, dest) from None
    return str(dest)


def conflict(name: str, dest: Path, manager: KernelSpecManager | None = None) -> str | None:
    """Why installing ``name`` at ``dest`` needs ``--force`` (None: it does not): ``dest``
    holds a spec that is not ours, or another directory Jupyter searches holds ``name``, so
    one of the two would shadow the other.  Reinstalling our own spec in place needs none."""
    manager = manager or KernelSpecManager()
    if (dest / "kernel.json").is_file():
        here = Location(name, dest, _read(dest))
        if not here.ours:
            return f"{dest} holds a kernelspec {name!r} that remote-kernel did not install"
        return None  # reinstalling our own spec in place: what was there stays where it was
    others, winner = shadowing(name, dest, manager)
    if not others or winner is None:
        return None
    listed = "; ".join(f"{loc.path} ({loc.origin})" for loc in others)
    if _same(winner, dest):
        effect = f"the new one would shadow it: Jupyter would use {dest}"
    else:
        effect = f"the new one would be shadowed: Jupyter would keep using {winner}"
    return (f"kernelspec {name!r} is already installed in {listed}. Installing it in {dest} "
            f"as well would make two of that name, and {effect}")


# ---- uninstall ------------------------------------------------------------------------------


def uninstall(name: str, *, user: bool = False, prefix: str | None = None,
              manager: KernelSpecManager | None = None) -> str:
    """Remove one of our specs and return its directory: the one at the location asked for
    (``user``/``prefix``), else the one ``remote-kernel install`` wrote; never another."""
    manager = manager or KernelSpecManager()
    name = name.lower()
    found = locations(name, manager)
    if user or prefix is not None:
        target = destination(name, user=user, prefix=prefix, manager=manager)
        if not (target / "kernel.json").is_file():
            elsewhere = "; it is installed in " + ", ".join(str(l.path) for l in found) if found else ""
            raise InstallError(f"no kernelspec {name!r} in {target.parent}{elsewhere}")
        here = Location(name, target, _read(target))
        if not here.ours:
            raise InstallError(f"kernelspec {name!r} in {target} was not installed by remote-kernel; leaving it alone")
    else:
        if not found:
            raise InstallError(f"no kernelspec named {name!r} is installed")
        written = [l for l in found if l.installed]
        if len(written) > 1:
            raise InstallError(f"kernelspec {name!r} was installed in several places: "
                               + "; ".join(_described(l, manager) for l in written)
                               + ". Say which to remove with its flag")
        if not written:
            shipped = [l for l in found if l.ours]
            if not shipped:
                raise InstallError(f"kernelspec {name!r} was not installed by remote-kernel; leaving it alone")
            loc = shipped[0]
            raise InstallError(
                f"kernelspec {name!r} in {loc.path} was shipped with the remote_kernel package, not "
                f"written by remote-kernel install; it goes when the package is uninstalled. To remove "
                f"it anyway: remote-kernel uninstall {name} {location_flag(loc.path, manager) or '--prefix DIR'}")
        target = written[0].path
    try:
        shutil.rmtree(target)
    except OSError as exc:
        raise _os_problem("remove", exc, target) from None
    return str(target)


def _described(loc: Location, manager: KernelSpecManager) -> str:
    flag = location_flag(loc.path, manager)
    return f"{loc.path} ({flag})" if flag else str(loc.path)


# ---- command line ---------------------------------------------------------------------------


def _add_location_args(parser: argparse.ArgumentParser, verb: str, default: str) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help=f"{verb} your own Jupyter directory ({Path(jupyter_data_dir()) / 'kernels'})")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"{verb} this environment ({Path(sys.prefix) / 'share' / 'jupyter' / 'kernels'})")
    where.add_argument("--prefix", metavar="DIR", help=f"{verb} DIR/share/jupyter/kernels")
    parser.epilog = default


def _location(args) -> tuple[bool, str | None]:
    return args.user, (sys.prefix if args.sys_prefix else args.prefix)


def register_install(sub) -> None:
    p = sub.add_parser("install", help="install a bridge kernelspec (or every template with --all)")
    _add_location_args(
        p, "install into",
        f"Without a location flag: {default_location()} ("
        + ("this is a virtual or conda environment; Jupyter run from it looks there first"
           if in_environment() else "not in a virtual or conda environment") + "). "
        "The kernel runs on this Python (" + sys.executable + "). A name already installed "
        "elsewhere is refused unless --force: Jupyter uses only one of them.")
    p.add_argument("--name", help="kernelspec name (default: the template's name)")
    p.add_argument("--display-name", metavar="TEXT", help="name shown in JupyterLab's launcher")
    p.add_argument("--image", help="remote image the kernel runs, e.g. python:3.11 (default: the "
                                   "template's; remote-python's is c.RemoteKernel.image in "
                                   "remote_kernel_config.py, else python)")
    p.add_argument("--endpoint", metavar="URL|local",
                   help="API endpoint; 'local' = a private embedded server (default: BACKEND_ENDPOINT at run time, else local)")
    p.add_argument("--template", help="kernelspec template (default: chosen from --image)")
    p.add_argument("--all", action="store_true",
                   help="install every template (one already installed elsewhere is skipped, saying where, unless --force)")
    p.add_argument("--force", action="store_true",
                   help="install even where the name is installed elsewhere (one of the two then "
                        "shadows the other) or a spec that is not ours is in the way")
    p.set_defaults(run=_run_install)


def _run_install(args) -> int:
    manager = KernelSpecManager()
    user, prefix = _location(args)
    try:
        if args.all:
            if args.name or args.image or args.display_name:
                raise InstallError("--all installs every template under its own name; drop --name/--image/--display-name")
            targets = [(t, t, None) for t in template_names()]
        else:
            template = args.template or (template_for_image(args.image) if args.image else DEFAULT_TEMPLATE)
            targets = [(template, args.name or template, args.image)]
        for template, name, image in targets:
            if not _NAME_RE.fullmatch(name):
                raise InstallError(f"kernel name {name!r} may only hold ASCII letters, digits, '-', '.', '_'")
            dest = destination(name, user=user, prefix=prefix, manager=manager)
            why = None if args.force else conflict(name, dest, manager)
            if why and not args.all:
                raise InstallError(f"{why}. Choose another name (--name NAME), or pass --force to install it anyway")
            if why:
                print(f"remote-kernel install: skipped {name}: {why}. --force installs it anyway", file=sys.stderr)
                continue
            where = install(template=template, name=name, image=image, endpoint=args.endpoint,
                            display_name=args.display_name, user=user, prefix=prefix, manager=manager)
            how = "" if (user or prefix) else f" ({default_location()}, the default here)"
            print(f"installed kernelspec {name.lower()} in {where}{how}")
            _say_what_jupyter_uses(name, Path(where), manager)
    except InstallError as exc:
        print(f"remote-kernel install: {exc}", file=sys.stderr)
        return 2
    return 0


def _say_what_jupyter_uses(name: str, where: Path, manager: KernelSpecManager) -> None:
    others, winner = shadowing(name, where, manager)
    if winner is None:
        print(f"  note: Jupyter does not look in {where.parent}; add {where.parent.parent} to "
              f"JUPYTER_PATH, or install with --user or --sys-prefix")
    elif others and _same(winner, where):
        print(f"  note: Jupyter uses this one; it shadows {', '.join(str(l.path) for l in others)}")
    elif others:
        print(f"  note: Jupyter uses {winner}; this one is shadowed by it")


def register_list(sub) -> None:
    p = sub.add_parser("list", help="list bridge kernelspecs: every location of each name, and which one Jupyter uses")
    p.set_defaults(run=_run_list)


def _run_list(args) -> int:
    found = {name: locs for name, locs in all_locations().items() if any(l.ours for l in locs)}
    if not found:
        print("no remote-kernel kernelspecs installed (try: remote-kernel install)")
        return 0
    rows = [("NAME", "JUPYTER USES", "ORIGIN", "IMAGE", "ENDPOINT", "DISPLAY NAME", "LOCATION")]
    for name, locs in sorted(found.items()):
        for i, loc in enumerate(locs):
            used = "yes" if i == 0 else "no, shadowed"
            if loc.ours:
                meta = loc.spec["metadata"][MARKER]
                image = meta.get("image") or "config file, else python"
                endpoint = meta.get("endpoint") or "BACKEND_ENDPOINT, else local"
            else:
                image = endpoint = "-"
            rows.append((name, used, loc.origin, image, endpoint, str(loc.spec.get("display_name", "")), str(loc.path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    if any(len(locs) > 1 for locs in found.values()):
        print("\nJupyter (run from this environment) uses the first location of a name; "
              "'remote-kernel uninstall NAME --user|--sys-prefix|--prefix DIR' removes one copy.")
    return 0


def register_uninstall(sub) -> None:
    p = sub.add_parser("uninstall", help="remove a kernelspec installed by remote-kernel")
    p.add_argument("names", nargs="+", metavar="NAME")
    _add_location_args(p, "remove from",
                       "Without a location flag: the copy 'remote-kernel install' wrote (if it wrote "
                       "several, say which). Specs remote-kernel did not install are never touched.")
    p.set_defaults(run=_run_uninstall)


def _run_uninstall(args) -> int:
    user, prefix = _location(args)
    status = 0
    for name in args.names:
        try:
            print(f"removed {uninstall(name, user=user, prefix=prefix)}")
        except InstallError as exc:
            print(f"remote-kernel uninstall: {exc}", file=sys.stderr)
            status = 2
    return status
