"""The remote session behind one Jupyter kernel: created in the background at start, waited for
by the first cell, re-created when it vanished, destroyed within a bounded time at shutdown.

All calls here block (HTTP); the kernel runs them off its event loop.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from concurrent.futures import Future
from typing import Any

from remote_kernel import protocol
from remote_kernel.client import APIConfig, Client, SessionRef, errors

log = logging.getLogger(__name__)

# Short timeouts for calls a user waits on interactively (complete, inspect, interrupt, destroy).
QUICK_CONNECT_TIMEOUT = 2.0
QUICK_READ_TIMEOUT = 3.0


class NoEndpoint(errors.ConfigError):
    """No API endpoint is configured."""


def resolve_endpoint(config: APIConfig) -> list[str]:
    """The endpoint(s) to use.  The one place to decide it (an embedded default may come here)."""
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
                 environ: dict | None = None, mounts: list | None = None, use_extensions: bool = True):
        self.config = config
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
        self._client: Client | None = None
        self._quick: Client | None = None
        self._closed = False

    # -- clients ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return ", ".join(self.config.endpoint) or "(no endpoint configured)"

    def client(self) -> Client:
        if self._client is None:
            resolve_endpoint(self.config)
            self._client = Client(self.config)
        return self._client

    def quick_client(self) -> Client:
        """A second client with short timeouts and no connect retries, usable from another
        thread while the main one waits in a long poll."""
        if self._quick is None:
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
        """The Part B extensions to use: those the server offers (once it was asked), unless
        switched off by configuration."""
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
        with self._lock:
            if self._creation is None or (self._creation.done() and self._creation.exception() is not None):
                future: Future = Future()
                self._creation = future
                threading.Thread(target=self._create, args=(future,), name="remote-session-create",
                                 daemon=True).start()
            return self._creation

    def _create(self, future: Future) -> None:
        try:
            client = self.client()
            client.api_version  # discovery first: a wrong endpoint fails here, clearly
            ref = client.create_session(self.image, name=self.name, resources=self.resources or None,
                                        environ=self.environ or None, mounts=self.mounts, reuse=True)
            if self._closed:  # shut down while we were creating: do not leak it
                self._destroy_quietly(ref.name)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            future.set_exception(exc)
            return
        self.ref = ref
        self.generation += 1
        future.set_result(ref)

    def ensure(self, timeout: float | None = None) -> SessionRef:
        """Wait for the session; a failed or lost one is created again (raises on failure)."""
        future = self.start()
        return future.result(timeout)

    def mark_lost(self, reason: str) -> None:
        """The remote session is gone: the next ``ensure`` creates a new one, with a note."""
        with self._lock:
            self.name = session_name(self.name_prefix, self.kernel_id)
            self.ref = None
            self._creation = None
            self.lost_note = (f"[remote_kernel] {reason}; a new remote session ({self.name}) was started — "
                              "remote state (variables, imports, files) was lost.\n")

    def take_lost_note(self) -> str | None:
        note, self.lost_note = self.lost_note, None
        return note

    @property
    def ready(self) -> bool:
        future = self._creation
        return future is not None and future.done() and future.exception() is None

    def interrupt(self) -> None:
        if self.ref is not None:
            self.quick_client().interrupt(self.name)

    def destroy(self, timeout: float = 5.0) -> bool:
        """Destroy the remote session, waiting at most ``timeout`` seconds.  True when done."""
        self._closed = True
        future = self._creation
        if future is None:
            return True
        done = threading.Event()
        outcome = {"ok": False}

        def work() -> None:
            try:
                try:
                    future.result(timeout)
                except BaseException:
                    outcome["ok"] = True  # never created: nothing to destroy
                    return
                self.quick_client().destroy_session(self.name)
                outcome["ok"] = True
            except errors.SessionNotFound:
                outcome["ok"] = True
            except Exception as exc:
                log.warning("could not destroy remote session %s: %s", self.name, exc)
            finally:
                done.set()

        threading.Thread(target=work, name="remote-session-destroy", daemon=True).start()
        done.wait(timeout)
        return outcome["ok"]

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

    def info(self) -> dict[str, Any]:
        client = self._client
        return {
            "session": self.name,
            "session id": self.ref.id if self.ref else "(not created)",
            "image": self.image,
            "endpoint": self.endpoint,
            "API version": client._api_version if client is not None and client._api_version else "(unknown)",
            "extensions": ", ".join(sorted(self.extensions)) or "(none)",
        }
