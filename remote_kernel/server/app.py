"""The tornado application, the in-process ``start()`` and the ``remote-kernel serve`` command.

``start(config)`` returns a :class:`RunningServer` (``url``, ``stop()``) on the running loop —
the bridge kernel uses it for its private server.  ``serve`` prints the endpoint URL alone on a
line once the server answers, then ``access key: ...`` (never the secret), then ``images: ...``
(what it runs, and what it lacks the tools for), and stops every kernel on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import socket
import ssl
import sys
from dataclasses import dataclass

import tornado.httpserver
import tornado.netutil
import tornado.web

from remote_kernel import jsonio
from remote_kernel.server import images
from remote_kernel.server import keys as keys_mod
from remote_kernel.server.base import CLOCK_SKEW, NotFoundHandler
from remote_kernel.server.body_limit import BodyLimit
from remote_kernel.server.config import ServerConfig
from remote_kernel.server.replay import ReplayCache
from remote_kernel.server.handlers import comms, execute, files, image_list, root, sessions, stream
from remote_kernel.server.sessions import SessionManager

log = logging.getLogger("remote_kernel.server")

PARENT_CHECK_PERIOD = 1.0  # seconds between checks that --parent-pid still lives
STOP_DEADLINE = 8.0  # the graceful part of a shutdown; then the kernels are killed outright

_P = r"/(session|kernel)"
_ID = r"/([^/]+)"


@dataclass
class ServerState:
    config: ServerConfig
    manager: SessionManager
    replay: ReplayCache  # signatures accepted within the clock-skew window


def make_app(state: ServerState) -> tornado.web.Application:
    args = {"state": state}
    routes = [
        (r"/", root.RootHandler),
        (r"/stream" + _P + _ID + r"/execute", stream.StreamExecuteHandler),  # websocket
        (_P + r"/?", sessions.CreateHandler),
        (_P + r"/_/create", sessions.CreateHandler),
        (_P + _ID + r"/interrupt", sessions.InterruptHandler),
        (_P + _ID + r"/logs", sessions.LogsHandler),
        (_P + _ID + r"/complete", execute.CompleteHandler),
        (_P + _ID + r"/upload", files.UploadHandler),
        (_P + _ID + r"/download", files.DownloadHandler),
        (_P + _ID + r"/download_single", files.DownloadSingleHandler),
        (_P + _ID + r"/files", files.FilesHandler),
        (_P + _ID + r"/?", sessions.SessionHandler),
    ]
    if state.config.extensions:  # our extensions only: a classic server has no such endpoints
        routes[-1:-1] = [(_P + _ID + r"/inspect", execute.InspectHandler),
                         (_P + _ID + r"/is_complete", execute.IsCompleteHandler),
                         (_P + _ID + r"/events", comms.EventsHandler),
                         (_P + _ID + r"/comm", comms.CommHandler),
                         (_P + _ID + r"/comm_info", comms.CommInfoHandler),
                         (r"/images", image_list.ImagesHandler),
                         (r"/sessions", sessions.ListHandler)]
    return tornado.web.Application(
        [(pattern, handler, args) for pattern, handler in routes],
        default_handler_class=NotFoundHandler, default_handler_args=args,
        compress_response=False, xheaders=False,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The TLS context of a server given a certificate, else None (plain HTTP)."""
    if not config.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.certfile, config.keyfile)
    return context


@dataclass
class RunningServer:
    url: str
    port: int
    state: ServerState
    http: tornado.httpserver.HTTPServer

    @property
    def manager(self) -> SessionManager:
        return self.state.manager

    async def stop(self) -> None:
        """Stop accepting requests, then stop every kernel."""
        self.http.stop()
        await self.state.manager.shutdown()
        try:
            await asyncio.wait_for(self.http.close_all_connections(), 2)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort on the way out
            pass


async def start(config: ServerConfig) -> RunningServer:
    """Start the server on the running event loop."""
    keys_mod.check_keys(config.keys)  # a KeysError (ValueError): no keypair, or an empty or short secret
    manager = SessionManager(config)
    state = ServerState(config, manager, ReplayCache(CLOCK_SKEW.total_seconds(), config.replay_cache_size))
    app = make_app(state)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sockets = tornado.netutil.bind_sockets(config.port, config.host, family=family)
    # BodyLimit: a body declared over the limit gets a 413 problem+json, not tornado's bare 400
    http = tornado.httpserver.HTTPServer(BodyLimit(app, config.max_body_size, config.body_timeout),
                                         max_body_size=config.max_body_size, body_timeout=config.body_timeout,
                                         idle_connection_timeout=300, ssl_options=tls_context(config))
    http.add_sockets(sockets)
    manager.start()
    port = sockets[0].getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    scheme = "https" if config.certfile else "http"
    return RunningServer(f"{scheme}://{host}:{port}", port, state, http)


# -- the command ---------------------------------------------------------------------------


def register_serve(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the embedded Backend.AI-compatible server on local Jupyter kernels")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port; 0 picks a free one")
    parser.add_argument("--access-key", action="append", default=[],
                        help="access key, followed by --secret-key-file (repeat the pair for several keypairs)")
    parser.add_argument("--secret-key-file", action="append", default=[], metavar="PATH",
                        help="a file holding the secret key of the preceding --access-key")
    parser.add_argument("--keys-file", default=None, metavar="PATH",
                        help='a JSON keys file: {"keys": [{"access_key": ..., "secret_key": ...}, ...]}')
    # refused with a message naming the ways that keep a secret out of the process list
    parser.add_argument("--secret-key", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--certfile", default=None, metavar="PATH",
                        help="serve HTTPS with this certificate (PEM, with its chain)")
    parser.add_argument("--keyfile", default=None, metavar="PATH",
                        help="the certificate's private key (PEM; default: in --certfile)")
    parser.add_argument("--allow-insecure-http", action="store_true",
                        help="listen beyond loopback over plain HTTP (a network you trust only: requests "
                             "and bodies cross it readable and alterable)")
    parser.add_argument("--require-body-signature", action="store_true",
                        help="refuse requests whose body is not signed (X-RemoteKernel-Body-Signature, which "
                             "remote_kernel's client sends; the official SDK does not)")
    parser.add_argument("--idle-timeout", type=float, default=3600.0,
                        help="destroy sessions unused for this many seconds (0: never)")
    parser.add_argument("--max-sessions", type=int, default=32, help="maximum number of sessions")
    parser.add_argument("--max-sessions-per-key", type=int, default=None,
                        help="maximum sessions per access key (default: --max-sessions)")
    parser.add_argument("--root", default=None, help="sessions run in ROOT/<name> (default: a temp dir)")
    parser.add_argument("--session-cwd", default=None,
                        help="run every session in this one directory (never deleted)")
    parser.add_argument("--warm-kernels", type=int, default=1, metavar="N",
                        help="keep N Python kernels started ahead of demand, so that creating a "
                             "Python session does not wait for a kernel to start (default 1; 0: none)")
    parser.add_argument("--hold", type=float, default=2.5, help="long-poll hold in seconds")
    parser.add_argument("--coalesce", type=float, default=None, metavar="SECONDS",
                        help="how long a REST poll keeps collecting output after the first record (default: "
                             "stdout/stderr text not at all, other output 0.01; a real manager collects ~2 s, "
                             "which 2 imitates)")
    parser.add_argument("--slow-start", type=float, default=0.0, metavar="SECONDS",
                        help="imitate a real manager whose sessions take time to start: every new session "
                             "walks PENDING, SCHEDULED, PREPARING, PULLING (with statusInfo) over SECONDS "
                             "and is RUNNING once its kernel has started after them; enqueueOnly creates "
                             "and the reuse of a starting session answer at once; no warm kernels "
                             "(default 0: sessions start at once)")
    parser.add_argument("--max-run-buffer", type=int, default=32 * 1024 * 1024,
                        help="unacknowledged output bytes kept per run")
    parser.add_argument("--body-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="close a connection whose request body takes longer than this to arrive "
                             "(default 120)")
    parser.add_argument("--no-extensions", dest="extensions", action="store_false",
                        help="offer none of our protocol extensions (lossless Jupyter outputs, "
                             "resumable runs, comm messages and the event stream for widgets, the "
                             "session and image lists, inspect/is_complete): behave exactly like a "
                             "classic server")
    parser.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                        help="exit (stopping every kernel) when process PID is gone")
    parser.add_argument("--log-level", default="WARNING")
    parser.set_defaults(run=run_serve)


def coalescing(seconds: float | None) -> dict:
    """``--coalesce``: one window for every kind of output; without it, the defaults."""
    return {} if seconds is None else {"coalesce": seconds, "text_coalesce": seconds}


def config_from_args(args: argparse.Namespace) -> tuple[ServerConfig, bool]:
    """The config, and whether keys were configured (arguments, a keys file, the environment)."""
    if args.secret_key:
        raise SystemExit("remote-kernel serve: a secret key on the command line is readable by every user "
                         "of this machine (ps, /proc/PID/cmdline); give it in " + keys_mod.SECRET_SOURCES)
    if len(args.access_key) != len(args.secret_key_file):
        raise SystemExit("remote-kernel serve: give --access-key and --secret-key-file in pairs")
    configured = True
    try:
        keys = {access: keys_mod.read_secret_file(path) for access, path in zip(args.access_key, args.secret_key_file)}
        if args.keys_file:
            keys.update(keys_mod.read_keys_file(args.keys_file))
        if not keys and keys_mod.from_environment():
            keys = dict([keys_mod.from_environment()])
        if not keys:
            configured = False
            keys = keys_mod.load_or_create()
        keys_mod.check_keys(keys)
    except keys_mod.KeysError as exc:
        raise SystemExit(f"remote-kernel serve: {exc}") from None
    if args.max_sessions < 1 or (args.max_sessions_per_key is not None and args.max_sessions_per_key < 1):
        raise SystemExit("remote-kernel serve: session limits must be at least 1")
    if args.coalesce is not None and args.coalesce < 0:
        raise SystemExit("remote-kernel serve: --coalesce must be 0 or more")
    if not 0 <= args.slow_start <= 3600:  # NaN fails too
        raise SystemExit("remote-kernel serve: --slow-start must be from 0 to 3600 seconds")
    if args.warm_kernels < 0:
        raise SystemExit("remote-kernel serve: --warm-kernels must be 0 or more")
    if not args.body_timeout > 0:
        raise SystemExit("remote-kernel serve: --body-timeout must be more than 0")
    if args.keyfile and not args.certfile:
        raise SystemExit("remote-kernel serve: --keyfile needs --certfile")
    config = ServerConfig(
        host=args.host, port=args.port, keys=keys, root=args.root, session_cwd=args.session_cwd,
        idle_timeout=args.idle_timeout, max_sessions=args.max_sessions,
        max_sessions_per_key=args.max_sessions_per_key or args.max_sessions,
        hold=args.hold, **coalescing(args.coalesce), max_run_buffer=args.max_run_buffer, extensions=args.extensions,
        slow_start=args.slow_start,
        warm_kernels=args.warm_kernels, body_timeout=args.body_timeout,
        certfile=args.certfile, keyfile=args.keyfile, require_body_signature=args.require_body_signature,
    )
    return config, configured


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    config, configured = config_from_args(args)
    if args.parent_pid is not None and parent_watch(args.parent_pid) is None:
        print(f"remote-kernel serve: --parent-pid {args.parent_pid}: no such process", file=sys.stderr)
        return 2
    if not is_loopback(config.host) and not configured:
        print(f"remote-kernel serve: refusing to listen on non-loopback {config.host!r} without "
              "configured keys: give them in " + keys_mod.SECRET_SOURCES,
              file=sys.stderr)
        return 2
    if not is_loopback(config.host) and not config.certfile and not args.allow_insecure_http:
        print(f"remote-kernel serve: refusing to listen on non-loopback {config.host!r} over plain HTTP, where "
              "requests and their bodies cross the network readable and alterable: serve TLS with --certfile "
              "PATH --keyfile PATH, or give --allow-insecure-http on a network you trust", file=sys.stderr)
        return 2
    try:
        tls_context(config)  # a certificate that cannot be used is an error now, not at the first client
    except (OSError, ssl.SSLError) as exc:
        print(f"remote-kernel serve: cannot use --certfile/--keyfile: {exc}", file=sys.stderr)
        return 2
    jsonio.keep_message_dates_as_strings()
    return asyncio.run(_serve(config, args.parent_pid))


def parent_watch(pid: int):
    """A function telling whether process ``pid`` still lives, or None if it is gone already.
    A zombie counts as gone, and so does another process that reused the pid."""
    import psutil

    try:
        process = psutil.Process(pid)
        born = process.create_time()
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.Error, ValueError):
        return None

    def lives() -> bool:
        try:
            return process.create_time() == born and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False
    return lives


async def _watch_parent(pid: int, stopping: asyncio.Event) -> None:
    lives = parent_watch(pid)
    while lives is not None and lives():
        await asyncio.sleep(PARENT_CHECK_PERIOD)
    log.warning("parent process %d is gone: stopping", pid)
    stopping.set()


async def _serve(config: ServerConfig, parent_pid: int | None = None) -> int:
    try:
        server = await start(config)
    except OSError as exc:
        print(f"remote-kernel serve: cannot listen on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    print(server.url, flush=True)
    print("access key: " + next(iter(config.keys)), flush=True)
    print(images.summary(images.catalogue(server.manager.kernel_specs)), flush=True)
    watcher = asyncio.create_task(_watch_parent(parent_pid, stopping)) if parent_pid else None
    await stopping.wait()
    if watcher is not None:
        watcher.cancel()
    try:
        await asyncio.wait_for(server.stop(), STOP_DEADLINE)
    except asyncio.TimeoutError:
        log.warning("shutdown took longer than %.0f s: killing the remaining kernels", STOP_DEADLINE)
    server.manager.kill_all()  # whatever is left, so no kernel outlives the server
    server.manager.remove_own_folders()
    return 0
