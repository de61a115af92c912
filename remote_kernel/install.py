"""Install, list and uninstall the bridge's kernelspecs (``remote-kernel install|list|uninstall``).

Templates live in ``kernelspecs/<name>/`` (kernel.json + logos), shipped inside the package as
``remote_kernel/kernelspecs`` in wheels and read from the source tree otherwise. Every spec we
write is marked with ``metadata.remote_kernel`` so that ``uninstall`` and ``list`` touch only
our own specs. Keys are never written: the kernel reads them from its environment at run time.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

MARKER = "remote_kernel"
DEFAULT_TEMPLATE = "remote-python"
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")

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
    """Pure: the kernel.json content for a template with the user's overrides."""
    path = templates_dir() / template / "kernel.json"
    if not path.is_file():
        raise InstallError(f"no kernelspec template {template!r}; choose one of {', '.join(template_names())}")
    spec = json.loads(path.read_text())
    meta = spec.setdefault("metadata", {}).setdefault(MARKER, {})
    argv = [a for a in spec["argv"] if not a.startswith(("--RemoteKernel.image=", "--APIConfig.endpoint="))]
    image = image or meta.get("image")
    if image:
        argv.append(f"--RemoteKernel.image={image}")
        meta["image"] = image
    if endpoint:
        argv.append(f"--APIConfig.endpoint={endpoint}")
        meta["endpoint"] = endpoint
        if not display_name and endpoint != "local":
            spec["display_name"] = f"{spec['display_name']} @ {_host_of(endpoint)}"
    spec["argv"] = argv
    if display_name:
        spec["display_name"] = display_name
    spec["metadata"]["debugger"] = False
    spec["interrupt_mode"] = "message"
    return spec


def _host_of(endpoint: str) -> str:
    return re.sub(r"^\w+://", "", endpoint).split("/", 1)[0]


def install(*, template: str = DEFAULT_TEMPLATE, name: str | None = None, image: str | None = None,
            endpoint: str | None = None, display_name: str | None = None, user: bool = False,
            prefix: str | None = None, manager: KernelSpecManager | None = None) -> str:
    """Install one kernelspec; returns the directory it was installed into."""
    name = name or template
    if not _NAME_RE.match(name):
        raise InstallError(f"kernel name {name!r} may only hold ASCII letters, digits, '-', '.', '_'")
    spec = build_spec(template, image=image, endpoint=endpoint, display_name=display_name)
    manager = manager or KernelSpecManager()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / name
        shutil.copytree(templates_dir() / template, src)
        (src / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
        return manager.install_kernel_spec(str(src), name, user=user, prefix=prefix)


def our_specs(manager: KernelSpecManager | None = None) -> dict[str, tuple[str, dict]]:
    """name → (resource dir, kernel.json) for every installed spec that is ours."""
    manager = manager or KernelSpecManager()
    found = {}
    for name, info in manager.get_all_specs().items():
        spec = info.get("spec", {})
        if MARKER in spec.get("metadata", {}):
            found[name] = (info["resource_dir"], spec)
    return found


def uninstall(name: str, manager: KernelSpecManager | None = None) -> str:
    manager = manager or KernelSpecManager()
    ours = our_specs(manager)
    if name not in ours:
        try:
            manager.get_kernel_spec(name)
        except NoSuchKernel:
            raise InstallError(f"no kernelspec named {name!r} is installed") from None
        raise InstallError(f"kernelspec {name!r} was not installed by remote-kernel; leaving it alone")
    resource_dir = ours[name][0]
    manager.remove_kernel_spec(name)
    return resource_dir


# ---- command line ---------------------------------------------------------------------------


def _add_location_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true", help=f"install into {sys.prefix}")
    where.add_argument("--prefix", metavar="DIR", help="install into DIR/share/jupyter/kernels")


def _prefix(args) -> str | None:
    return sys.prefix if args.sys_prefix else args.prefix


def register_install(sub) -> None:
    p = sub.add_parser("install", help="install a bridge kernelspec (or every template with --all)")
    _add_location_args(p)
    p.add_argument("--name", help="kernelspec name (default: the template's name)")
    p.add_argument("--display-name", metavar="TEXT", help="name shown in JupyterLab's launcher")
    p.add_argument("--image", help="remote image the kernel runs, e.g. python:3.11")
    p.add_argument("--endpoint", metavar="URL|local",
                   help="API endpoint; 'local' = a private embedded server (default: BACKEND_ENDPOINT at run time, else local)")
    p.add_argument("--template", help="kernelspec template (default: chosen from --image)")
    p.add_argument("--all", action="store_true", help="install every template")
    p.set_defaults(run=_run_install)


def _run_install(args) -> int:
    try:
        if args.all:
            if args.name or args.image or args.display_name:
                raise InstallError("--all installs every template under its own name; drop --name/--image/--display-name")
            targets = [(t, t, None) for t in template_names()]
        else:
            template = args.template or (template_for_image(args.image) if args.image else DEFAULT_TEMPLATE)
            targets = [(template, args.name or template, args.image)]
        for template, name, image in targets:
            where = install(template=template, name=name, image=image, endpoint=args.endpoint,
                            display_name=args.display_name, user=args.user, prefix=_prefix(args))
            print(f"installed kernelspec {name} in {where}")
    except InstallError as exc:
        print(f"remote-kernel install: {exc}", file=sys.stderr)
        return 2
    return 0


def register_list(sub) -> None:
    p = sub.add_parser("list", help="list installed bridge kernelspecs and where each points")
    p.set_defaults(run=_run_list)


def _run_list(args) -> int:
    ours = our_specs()
    if not ours:
        print("no remote-kernel kernelspecs installed (try: remote-kernel install --user)")
        return 0
    rows = [("NAME", "IMAGE", "ENDPOINT", "DISPLAY NAME", "LOCATION")]
    for name, (resource_dir, spec) in sorted(ours.items()):
        meta = spec["metadata"][MARKER]
        endpoint = meta.get("endpoint") or "BACKEND_ENDPOINT, else local"
        rows.append((name, meta.get("image") or "?", endpoint, spec.get("display_name", ""), resource_dir))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def register_uninstall(sub) -> None:
    p = sub.add_parser("uninstall", help="remove a kernelspec installed by remote-kernel")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(run=_run_uninstall)


def _run_uninstall(args) -> int:
    status = 0
    for name in args.names:
        try:
            print(f"removed {uninstall(name)}")
        except InstallError as exc:
            print(f"remote-kernel uninstall: {exc}", file=sys.stderr)
            status = 2
    return status
