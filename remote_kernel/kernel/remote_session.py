"""The remote session behind one Jupyter kernel: created in the background at start, waited for
by the first cell, re-created when it vanished, destroyed within a bounded time at shutdown.

Where it runs is decided here (``load_config``): a configured endpoint is used as is (and needs
its keys); no endpoint, or the endpoint ``local``, means a private embedded server on this
machine (``embedded.py``) that lives as long as the kernel.

All calls here block (HTTP); the kernel runs them off its event loop.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Mapping

from remote_kernel import protocol
from remote_kernel.client import APIConfig, Client, SessionRef, errors
from remote_kernel.client.config import LOCAL_ENDPOINT
from remote_kernel.kernel.embedded import EmbeddedServer, PrivateServerStopped
from remote_kernel.kernel.startup import REQUESTED, RUNNING, StartupStatus, poll_interval, status_of

log = logging.getLogger(__name__)

# Short timeouts for calls a user waits on interactively (complete, inspect, interrupt, destroy).
QUICK_CONNECT_TIMEOUT = 2.0
QUICK_READ_TIMEOUT = 3.0


class NoEndpoint(errors.ConfigError):
    """No API endpoint is configured."""


class MissingKeys(errors.ConfigError):
    """An endpoint is configured but its keypair is not."""


class SessionStartFailed(errors.APIError):
    """The server gave up starting the session (ERROR, CANCELLED...)."""

    hint = "see the server's logs for details, or ask the cluster's administrators"


class WaitCancelled(Exception):
    """Whoever waited for the session's start stopped waiting (an interrupt); it goes on starting."""


def load_config(parent: Any = None, environ: Mapping[str, str] | None = None
                ) -> tuple[APIConfig, errors.ConfigError | None, str | None]:
    """``(config, error, embedded)``: the one place that decides where the kernel's code runs.

    * no endpoint, or ``local`` → ``embedded`` says why, e.g. "no endpoint is configured" (a
      private server; the config is filled in once it runs, with its fresh keys — any BACKEND_*
      keys are not sent to it);
    * an endpoint → used as is; without both keys that is an ``error`` naming the variables
      and where the endpoint was set, never a silent fallback to local.
    """
    env = os.environ if environ is None else environ
    try:
        config = APIConfig.from_env(env, parent=parent)
    except errors.ConfigError as exc:
        return APIConfig(), exc, None
    if config.embedded:
        why = (f"the endpoint is {LOCAL_ENDPOINT!r} ({config.source_of('endpoint')})" if config.endpoint
               else "no remote endpoint is configured")
        return APIConfig(), None, why
    missing = [name for name, value in (("BACKEND_ACCESS_KEY", config.access_key),
                                        ("BACKEND_SECRET_KEY", config.secret_key)) if not value]
    if missing:
        return config, MissingKeys(
            f"the endpoint {', '.join(config.endpoint)} is configured by {config.source_of('endpoint')} but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set in the environment the "
            "kernel starts in; set both BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY (or remove the endpoint, "
            "or use the endpoint 'local', to run on a private server on this machine)"), None
    return config, None, None


def resolve_endpoint(config: APIConfig) -> list[str]:
    """The endpoint(s) the client uses (after ``load_config`` and, when embedded, once the
    private server runs)."""
    if not config.endpoint:
        raise NoEndpoint(
            "no remote endpoint is configured: set BACKEND_ENDPOINT (and BACKEND_ACCESS_KEY / "
            "BACKEND_SECRET_KEY) in the environment the kernel starts in, or install the kernelspec "
            "with `remote-kernel install --endpoint URL`"
        )
    return list(config.endpoint)


def session_name(prefix: str, kernel_id: str | None) -> str:
    """``<prefix>-<first 8 of the Jupyter kernel id>-<random>``: names the kernel it serves, and
    is fresh for every process (a restarted kernel never meets its predecessor's session)."""
    prefix = re.sub(r"[^\w.-]", "-", prefix or "jupyter").strip(".-") or "jupyter"
    kid = re.sub(r"[^0-9a-zA-Z]", "", kernel_id or "")[:8] or uuid.uuid4().hex[:8]
    name = f"{prefix[:40]}-{kid}-{uuid.uuid4().hex[:6]}"
    return name[: protocol.SESSION_NAME_MAX]


class RemoteSession:
    """Owns the API clients and the current remote session of one kernel."""

    def __init__(self, config: APIConfig, image: str, *, name_prefix: str = "jupyter",
                 kernel_id: str | None = None, resources: dict | None = None,
                 environ: dict | None = None, mounts: list | None = None, use_extensions: bool = True,
                 embedded: EmbeddedServer | None = None, embedded_reason: str = "no remote endpoint is configured"):
        self.config = config
        self.embedded = embedded     # the private server, when no endpoint is configured
        self.embedded_reason = embedded_reason
        self._start_note_due = embedded is not None
        self.image = image
        self.name_prefix = name_prefix
        self.kernel_id = kernel_id
        self.resources = dict(resources or {})
        self.environ = dict(environ or {})
        self.mounts = list(mounts) if mounts else None
        self.use_extensions = use_extensions
        self.name = session_name(name_prefix, kernel_id)
        self.ref: SessionRef | None = None
        self.generation = 0          # bumps every time a new remote session is created
        self.lost_note: str | None = None
        self._lock = threading.Lock()
        self._creation: Future | None = None
        self.startup: StartupStatus | None = None  # while the session is being started
        self._asked_for: str | None = None  # the name a create call was sent for (destroyed at shutdown)
        self._stop_following = threading.Event()
        self._client: Client | None = None
        self._quick: Client | None = None
        self._closed = False

    # -- clients ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self.embedded is not None:
            return f"the private embedded server on this machine ({self.embedded.url or 'starting'})"
        return ", ".join(self.config.endpoint) or "(no endpoint configured)"

    def _embedded_config(self) -> None:
        """Wait for the private server and point the config at it (fresh keys, in memory only)."""
        if self.embedded is not None and not self.config.endpoint:
            url, access_key, secret_key = self.embedded.wait()
            self.config = APIConfig(endpoint=[url], access_key=access_key, secret_key=secret_key)

    def client(self) -> Client:
        if self._client is None:
            self._embedded_config()
            resolve_endpoint(self.config)
            self._client = Client(self.config)
        return self._client

    def quick_client(self) -> Client:
        """A second client with short timeouts and no connect retries, usable from another
        thread while the main one waits in a long poll."""
        if self._quick is None:
            self._embedded_config()
            resolve_endpoint(self.config)
            quick = Client(self.config)
            quick.transport.timeout = (QUICK_CONNECT_TIMEOUT, QUICK_READ_TIMEOUT)
            quick.transport.connect_retries = 0
            quick.transport.idempotent_retries = 0
            quick.transport.max_wait = 2.0
            self._quick = quick
        return self._quick

    @property
    def extensions(self) -> frozenset[str]:
        """Our protocol extensions to use (docs/PROTOCOL.md#our-extensions): those the server
        offers (once it was asked), unless switched off by configuration."""
        client = self._client
        if not self.use_extensions or client is None or client._server_info is None:
            return frozenset()
        try:
            return client.extensions
        except Exception:
            return frozenset()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Future:
        """Begin creating the session in a background thread (idempotent while one runs)."""
        self._replace_stopped_server()
        if self.embedded is not None:
            self.embedded.start()  # spawn now; the creation thread waits for its endpoint
        with self._lock:
            if self._creation is None or (self._creation.done() and self._creation.exception() is not None):
                future: Future = Future()
                self._creation = future
                threading.Thread(target=self._create, args=(future,), name="remote-session-create",
                                 daemon=True).start()
            return self._creation

    def _create(self, future: Future) -> None:
        started = time.monotonic()
        try:
            client = self.client()
            client.api_version  # discovery first: a wrong endpoint fails here, clearly
            self.startup = StartupStatus(REQUESTED, "", started)
            with self._lock:  # against destroy(): either it sees this name, or no call goes out
                if self._closed:
                    raise errors.ConfigError("the kernel shut down before its session was asked for")
                self._asked_for = self.name
            try:
                # enqueueOnly: real managers otherwise hold the call until the session runs
                # (minutes of queueing or image pulls); we follow its status instead
                ref = client.create_session(self.image, name=self.name, resources=self.resources or None,
                                            environ=self.environ or None, mounts=self.mounts, reuse=True,
                                            enqueue_only=client.prefix == "/session")
            except errors.RequestTimeout as exc:
                raise self._timeout_with_status(client, exc) from None
            status = status_of(ref.raw)
            if status is not None and not status.running:
                self._follow_start(client, StartupStatus(status.status, status.info, started))
            if self._closed:  # shut down while we were creating: do not leak it
                self._destroy_quietly(ref.name)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self.startup = None
            future.set_exception(exc)
            return
        self.startup = None
        self.ref = ref
        self.generation += 1
        future.set_result(ref)

    def _follow_start(self, client: Client, status: StartupStatus) -> None:
        """Poll the session's status until it runs: never execute on a session still starting."""
        while not status.running:
            self.startup = status
            if status.failed:
                raise SessionStartFailed(self.endpoint, msg=f"the session {self.name} ended as {status.status}"
                                         + (f" ({status.info})" if status.info else "") + " before it ran",
                                         request=f"GET {client.prefix}/{self.name}")
            if self._stop_following.wait(poll_interval(time.monotonic() - status.started_at)):
                return  # shutting down
            try:
                answer = client.get_session(self.name)
            except (errors.RequestTimeout, errors.ConnectionFailed, errors.ServerBusy) as exc:
                # a manager busy starting kernels may not answer for a while: ask again (the
                # cell's wait has no limit of its own; an interrupt ends it)
                log.info("status of %s not answered (%s); asking again", self.name, type(exc).__name__)
                status = StartupStatus(status.status, "the server did not answer; asking again", status.started_at)
                continue
            now = status_of(answer) or StartupStatus(RUNNING)  # no status: the server says no more
            status = StartupStatus(now.status, now.info, status.started_at)
        self.startup = status

    def _timeout_with_status(self, client: Client, exc: errors.RequestTimeout) -> errors.RequestTimeout:
        """A create call that got no answer in time: say what the server made of it meanwhile."""
        try:
            status = status_of(client.get_session(self.name))
        except errors.APIError:
            status = None
        where = (f"; the session is {status.status} on the server (queued, or its image being pulled): the "
                 "next cell waits for it") if status is not None else ""
        return errors.RequestTimeout(exc.endpoint, msg=f"{exc.msg}{where}", request=exc.request)

    def ensure(self, timeout: float | None = None,
               on_wait: Callable[[StartupStatus | None], None] | None = None) -> SessionRef:
        """Wait for the session; a failed or lost one is created again (raises on failure).
        ``on_wait(startup status)`` is called about four times a second while it is being made;
        it may raise (e.g. :class:`WaitCancelled`) to stop waiting."""
        future = self.start()
        if on_wait is None:
            return future.result(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return future.result(0.25)
            except FutureTimeout:
                if deadline is not None and time.monotonic() > deadline:
                    raise
                on_wait(self.startup)

    def attach(self, name: str, info: dict) -> str | None:
        """Use the existing session ``name`` from now on (``%remote attach``); it is this
        kernel's from then on (destroyed at shutdown unless kept).  Returns the name of the
        session this kernel had made for itself, if any, for the caller to end."""
        ref = SessionRef(id=str(info.get("sessionId") or name), name=name, created=False,
                         status=info.get("status"), raw=info)
        future: Future = Future()
        future.set_result(ref)
        with self._lock:
            own = self._asked_for if self.ref is not None and self._asked_for != name else None
            self.name, self.ref, self._creation, self._asked_for = name, ref, future, name
            self.generation += 1
        return own

    def destroy_other(self, name: str) -> None:
        """End a session of ours that is no longer this kernel's (in the background)."""
        threading.Thread(target=self._destroy_quietly, args=(name,), name="remote-session-end",
                         daemon=True).start()

    def restart_in_place(self, timeout: float) -> bool:
        """Restart the remote kernel in its session (PATCH: variables go, files stay) for the
        process that replaces this one; False where the server cannot (then destroy it)."""
        if self.ref is None or self.embedded is not None:
            return False

        def restart() -> bool:
            try:
                self.quick_client().restart_session(self.name)
                return True
            except Exception as exc:  # noqa: BLE001 - the caller falls back to a new session
                log.info("remote session %s not restarted in place: %s", self.name, exc)
                return False

        return _within(timeout, restart, "remote-session-restart")

    def keep(self) -> None:
        """Shut down without destroying the session (it stays on the server for a later kernel)."""
        self._closed = True
        self._stop_following.set()

    def _replace_stopped_server(self) -> None:
        """The private server ended on its own (killed, out of memory): the next session is made
        on a new one, with the lost-state note.  (Its files are the kernel's own: they stay.)"""
        stopped = self.embedded
        how = stopped.stopped if stopped is not None else None
        if how is None:
            return
        for client in (self._client, self._quick):
            if client is not None:
                client.close()
        self._client = self._quick = None
        self.config = APIConfig()
        self.embedded = EmbeddedServer(cwd=stopped.cwd, parent_pid=stopped.parent_pid)
        self.mark_lost(f"the private embedded server {how}")

    def explain_failure(self, exc: Exception, wait: float = 1.0) -> Exception:
        """A failed call, told as what happened when the private server died under it (its
        connection breaks as the process ends: give the end a moment to be seen)."""
        if self.embedded is None or not isinstance(exc, errors.ConnectionFailed):
            return exc
        how = self.embedded.ended(wait)
        if how is None:
            return exc
        return PrivateServerStopped(
            f"the private embedded server on this machine {how}; the next cell starts a new one "
            f"(the session's variables and imports are lost, its files in {self.embedded.cwd} stay)")

    def mark_lost(self, reason: str) -> None:
        """The remote session is gone: the next ``ensure`` creates a new one, with a note."""
        lost = ("remote state (variables, imports) was lost; files stay in the working directory"
                if self.embedded is not None else "remote state (variables, imports, files) was lost")
        with self._lock:
            old, self.name = self.name, session_name(self.name_prefix, self.kernel_id)
            self.ref = None
            self._creation = None
            self.lost_note = (f"[remote_kernel] {reason}; a new remote session ({self.name}, was {old}) was "
                              f"started — {lost}.\n")

    def take_lost_note(self) -> str | None:
        note, self.lost_note = self.lost_note, None
        return note

    def take_start_note(self) -> str | None:
        """Once per kernel, on a private server: say that the code runs on this machine."""
        if not self._start_note_due or self.embedded is None or self.embedded.url is None:
            return None
        self._start_note_due = False
        return f"remote_kernel: {self.embedded_reason}; cells run on this machine, in {self.embedded.cwd}"

    @property
    def ready(self) -> bool:
        future = self._creation
        return future is not None and future.done() and future.exception() is None

    def interrupt(self) -> None:
        if self.ref is not None:
            self.quick_client().interrupt(self.name)

    def destroy(self, timeout: float = 5.0) -> bool:
        """Destroy the remote session, waiting at most ``timeout`` seconds.  True when done."""
        with self._lock:
            self._closed = True
        self._stop_following.set()
        future = self._creation
        if future is None or self.embedded is not None:
            return True  # a private server ends its sessions itself when it stops (close())

        def destroy() -> bool:
            # By name, at once: not after the creation thread, which may wait on a create or a
            # status call a stalled manager does not answer (the process would be gone before
            # any DELETE).  Once a create call went out the server may make the session even if
            # it never answers (real managers do): it is destroyed by name all the same.  A
            # creation thread that has not sent its call yet sees ``_closed`` and sends none.
            if self._asked_for is None:
                return True  # never asked for (and, closed now, never will be): nothing to destroy
            try:
                try:
                    self.quick_client().destroy_session(self._asked_for or self.name)
                except errors.Forbidden:
                    # a real manager refuses to destroy a session it is still scheduling or
                    # preparing unless forced; a forced destroy may be held long: it is enough
                    # that the manager got it
                    try:
                        self.quick_client().destroy_session(self._asked_for or self.name, forced=True)
                    except errors.RequestTimeout:
                        log.info("forced destroy of %s sent; the server ends it later", self.name)
                return True
            except errors.SessionNotFound:
                return True
            except Exception as exc:
                log.warning("could not destroy remote session %s: %s", self.name, exc)
                return False

        return _within(timeout, destroy, "remote-session-destroy")

    def _destroy_quietly(self, name: str) -> None:
        try:
            self.quick_client().destroy_session(name)
        except Exception:
            log.debug("destroying %s after shutdown failed", name, exc_info=True)

    def close(self) -> None:
        for client in (self._client, self._quick):
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass
        if self.embedded is not None:
            self.embedded.stop()

    def info(self) -> dict[str, Any]:
        client = self._client
        info = {
            "session": self.name,
            "session id": self.ref.id if self.ref else "(not created)",
            "image": self.image,
            "endpoint": self.endpoint,
            "API version": client._api_version if client is not None and client._api_version else "(unknown)",
            "extensions": ", ".join(sorted(self.extensions)) or "(none)",
        }
        startup = self.startup
        if startup is not None:  # still being started
            info["status"] = startup.status + (f": {startup.info}" if startup.info else "")
            info["waiting for"] = f"{time.monotonic() - startup.started_at:.0f} s"
        if self.embedded is not None:
            info["embedded server pid"] = self.embedded.pid if self.embedded.pid is not None else "(not started)"
            info["working directory"] = self.embedded.cwd
        return info


def _within(timeout: float, call: Callable[[], bool], thread_name: str) -> bool:
    """``call()`` on a thread of its own, waiting for it at most ``timeout`` seconds (a call
    that does not finish in time counts as failed; the thread is a daemon: it never holds up
    the process's exit)."""
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(call()), name=thread_name, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(outcome and outcome[0])
