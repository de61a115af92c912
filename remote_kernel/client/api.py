"""``Client``: version negotiation and every call of the remote API (docs/PROTOCOL.md).

Only request/response shaping lives here; HTTP, fail-over and retries are the transport's and
the execute loop's logic is :mod:`remote_kernel.client.loop`'s.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import os
import re
import tarfile
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, Union
from urllib.parse import quote

import requests

from remote_kernel import jsonio, protocol, signing
from remote_kernel.client import errors
from remote_kernel.client.auth import BackendAIAuth
from remote_kernel.client.config import APIConfig
from remote_kernel.client.loop import Event, InputWanted, RunState
from remote_kernel.client.transport import Transport

_NAME_RE = re.compile(protocol.SESSION_NAME_PATTERN)
# Managers up to this API version (23.09 and older) take downloads as GET with a JSON body and
# answer POST with 405; later ones take POST and refuse that GET (400 "deprecated").
LAST_GET_DOWNLOAD_VERSION = "v7.20230615"
UploadSource = Union[bytes, bytearray, str, "os.PathLike[str]"]


@dataclass
class SessionRef:
    """What ``create_session`` learnt: ``id`` (UUID on v5+, the name on v4), ``name``,
    whether it was ``created`` (False: reused), ``status``, ``service_ports`` and the ``raw`` body."""

    id: str
    name: str
    created: bool
    status: str | None = None
    service_ports: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)


def new_session_name() -> str:
    return "rk-" + uuid.uuid4().hex[:12]


def check_session_name(name: str) -> None:
    if not (protocol.SESSION_NAME_MIN <= len(name) <= protocol.SESSION_NAME_MAX) or not _NAME_RE.match(name):
        raise errors.InvalidRequestError(
            slug="invalid-api-params", title="invalid session name",
            msg=f"{name!r} must be {protocol.SESSION_NAME_MIN}-{protocol.SESSION_NAME_MAX} characters "
                "of letters, digits, '_', '.', '-', starting and ending with a letter, digit or '_'",
            hint="choose another session name",
        )


def parse_multipart_mixed(content_type: str, body: bytes) -> list[bytes]:
    """The payloads of a ``multipart/mixed`` body, in order."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise errors.BadResponse(msg=f"expected a multipart answer, got {content_type!r}")
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        parts.append(payload if payload is not None else b"")
    return parts


def untar_single(archive: bytes) -> bytes:
    """The content of the only regular file in a tar archive; the archive itself otherwise
    (a directory, or a server that sent the raw file)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            members = [m for m in tar.getmembers() if not m.isdir()]
            if len(members) == 1 and members[0].isfile():
                extracted = tar.extractfile(members[0])
                if extracted is not None:
                    return extracted.read()
    except (tarfile.TarError, EOFError, OSError):
        pass
    return archive


class Client:
    """A synchronous client of one Backend.AI-compatible API (docs/DESIGN.md#client-interface)."""

    def __init__(self, config: APIConfig | None = None, transport: Transport | None = None):
        self.config = config if config is not None else APIConfig.from_env()
        if not self.config.access_key or not self.config.secret_key:
            raise errors.ConfigError("access key and secret key are required (BACKEND_ACCESS_KEY / BACKEND_SECRET_KEY)")
        self.auth = BackendAIAuth(self.config.access_key, self.config.secret_key, self.config.api_version)
        if transport is None:
            transport = Transport.from_config(self.config, self.auth)
        elif transport.auth is None:
            transport.auth = self.auth
        else:
            self.auth = transport.auth  # type: ignore[assignment]
        self.transport = transport
        self._server_info: dict | None = None
        self._api_version: str | None = None
        self._download_methods: dict[str, str] = {}  # "/download", "/download_single" → what the server took

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- discovery -------------------------------------------------------------------------

    @property
    def server_info(self) -> dict:
        """``GET /`` (no auth), fetched once."""
        if self._server_info is None:
            response = self.transport.request("GET", "/", authenticated=False)
            info = self._json(response, "GET /")
            if not isinstance(info, dict) or not isinstance(info.get("version"), str):
                raise errors.BadResponse(self.transport.endpoint, response.status_code,
                                         msg="GET / did not report an API version", request="GET /")
            self._server_info = info
        return self._server_info

    @property
    def api_version(self) -> str:
        """min(server's version, ours) — the version every signed request carries."""
        if self._api_version is None:
            server = self.server_info["version"]
            try:
                version = protocol.older_version(server, self.config.api_version)
            except ValueError:
                raise errors.BadResponse(self.transport.endpoint,
                                         msg=f"server reports a malformed API version {server!r}",
                                         request="GET /") from None
            self._api_version = version
            if hasattr(self.auth, "version"):
                self.auth.version = version
        return self._api_version

    @property
    def extensions(self) -> frozenset[str]:
        found = self.server_info.get("extensions") or []
        return frozenset(x for x in found if isinstance(x, str)) if isinstance(found, list) else frozenset()

    def images(self) -> dict | None:
        """Our image-list extension (``GET /images``): ``{"images": [{"image", "language", "runs",
        ...}], "unavailable": [{"image", "language", "install"}]}``; None from a server without it
        (a real Backend.AI manager lists its images through its GraphQL API)."""
        if protocol.EXT_IMAGE_LIST not in self.extensions:
            return None
        return self._json_object(self._call("GET", "/images"), "GET /images")

    @property
    def prefix(self) -> str:
        """``/kernel`` (v4) or ``/session`` (v5+)."""
        return protocol.path_family(self.api_version)

    def _path(self, name: str, suffix: str = "") -> str:
        return f"{self.prefix}/{quote(name, safe='')}{suffix}"

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self.api_version  # negotiate before signing anything
        return self.transport.request(method, path, **kwargs)

    def _json(self, response: requests.Response, call: str) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            # straight from the bytes: response.json() decodes the whole body to str first
            return jsonio.loads(response.content)
        except ValueError:
            raise errors.BadResponse(self.transport.endpoint, response.status_code,
                                     msg=f"answer is not JSON: {response.text[:200]!r}", request=call) from None

    def _json_object(self, response: requests.Response, call: str) -> dict:
        body = self._json(response, call)
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise errors.BadResponse(self.transport.endpoint, response.status_code,
                                     msg="answer is not a JSON object", request=call)
        return body

    # -- sessions --------------------------------------------------------------------------

    def create_session(
        self,
        image: str,
        name: str | None = None,
        resources: dict | None = None,
        environ: dict | None = None,
        mounts: Sequence[str] | None = None,
        reuse: bool = True,
        *,
        session_type: str = "interactive",
        enqueue_only: bool = False,
        max_wait_seconds: int = 0,
        tag: str | None = None,
    ) -> SessionRef:
        """Create (or, with ``reuse``, reuse) a session running ``image``."""
        name = name or new_session_name()
        check_session_name(name)
        if not image:
            raise errors.InvalidRequestError(msg="an image is required", hint="choose an image, e.g. 'python'")
        config: dict[str, Any] = {}
        if resources:
            config["resources"] = dict(resources)
        if environ:
            config["environ"] = {str(k): str(v) for k, v in environ.items()}
        mounts = list(mounts) if mounts is not None else list(self.config.vfolder_mounts)
        if mounts:
            config["mounts"] = mounts
        if self.prefix == "/kernel":
            body: dict[str, Any] = {"clientSessionToken": name, "lang": image, "image": image, "config": config}
            if tag is not None:
                body["tag"] = tag
        else:
            body = {
                "name": name, "image": image, "config": config, "type": session_type,
                "enqueueOnly": enqueue_only, "maxWaitSeconds": max_wait_seconds,
                "reuseIfExists": reuse, "tag": tag,
            }
        if self.config.domain:
            body["domain"] = self.config.domain
        if self.config.group:
            body["group"] = self.config.group
        call = f"POST {self.prefix}"
        response = self._call("POST", self.prefix, json=body, creating_session=True)
        return self._session_ref(self._json_object(response, call), name, response)

    def _session_ref(self, body: dict, name: str, response: requests.Response) -> SessionRef:
        session_id = body.get("sessionId") or body.get("kernelId") or body.get("sessionName")
        if not isinstance(session_id, str) or not session_id:
            raise errors.BadResponse(self.transport.endpoint, response.status_code,
                                     msg="session creation answer has no sessionId/kernelId",
                                     request=f"POST {self.prefix}")
        ports = body.get("servicePorts", body.get("service_ports")) or []
        created = body.get("created")
        return SessionRef(
            id=session_id,
            name=body.get("sessionName") or body.get("kernelId") or name,
            created=bool(created) if created is not None else response.status_code == 201,
            status=body.get("status"),
            service_ports=list(ports) if isinstance(ports, list) else [],
            raw=body,
        )

    def get_session(self, name: str) -> dict:
        path = self._path(name)
        return self._json_object(self._call("GET", path), f"GET {path}")

    def list_sessions(self) -> list[dict]:
        """Our session-list extension: this key's sessions (``GET /sessions``), each as
        ``get_session`` describes it plus ``activeRun``."""
        body = self._json_object(self._call("GET", "/sessions"), "GET /sessions")
        sessions = body.get("sessions")
        return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []

    def destroy_session(self, name: str, forced: bool = False) -> dict:
        """Destroy; returns the ``stats`` (200) or ``{}`` (204).  ``forced``: also a session a
        real manager is still scheduling or preparing (it refuses those with 403 otherwise)."""
        path = self._path(name)
        response = self._call("DELETE", path, params={"forced": "true"} if forced else None)
        body = self._json(response, f"DELETE {path}")
        if isinstance(body, dict):
            return body.get("stats", body) or {}
        return {}

    def restart_session(self, name: str) -> None:
        self._call("PATCH", self._path(name))

    def interrupt(self, name: str) -> None:
        self._call("POST", self._path(name, "/interrupt"))

    # -- execution -------------------------------------------------------------------------

    def execute(
        self,
        name: str,
        mode: str,
        code: str = "",
        run_id: str | None = None,
        options: dict | None = None,
        idempotent: bool = False,
    ) -> dict:
        """One execute call; returns the ``result`` object.  ``idempotent=True`` allows the
        transport to re-send it (only for resumable runs, whose server dedups)."""
        path = self._path(name)
        body = {"mode": mode, "code": code or "", "runId": run_id, "options": options or {}}
        response = self._call("POST", path, json=body, idempotent=idempotent)
        answer = self._json_object(response, f"POST {path}")
        result = answer.get("result")
        if not isinstance(result, dict):
            raise errors.BadResponse(self.transport.endpoint, response.status_code,
                                     msg="execute answer has no 'result' object", request=f"POST {path}")
        return result

    def run(
        self,
        name: str,
        code: str,
        mode: str = protocol.MODE_QUERY,
        options: dict | None = None,
        on_input: Callable[[InputWanted], str] | None = None,
        resumable: bool | None = None,
    ) -> Iterator[Event]:
        """Drive one run to its end, yielding events.  Input requests are answered with
        ``on_input(event)`` (empty line when not given)."""
        if resumable is None:
            resumable = protocol.EXT_RESUMABLE_RUNS in self.extensions
        state = RunState(mode=mode, code=code, options=options, resumable=resumable)
        while not state.finished:
            body = state.request()
            result = self.execute(name, body["mode"], body["code"], body["runId"], body["options"],
                                  idempotent=state.idempotent)
            for event in state.handle(result):
                yield event
                if isinstance(event, InputWanted):
                    state.reply(on_input(event) if on_input is not None else "")

    def complete(self, name: str, code: str, options: dict | None = None) -> dict:
        """Code completion: the ``result`` (``{"status", "completions"}``, or with the
        jupyter-outputs option ``{"jupyter": true, "cursor_pos": n}`` a ``complete_reply``)."""
        return self._forward(name, "/complete", {"code": code, "options": options or {}})

    def inspect(self, name: str, code: str, cursor_pos: int, detail_level: int = 0) -> dict:
        """Our ``jupyter-outputs`` extension: the inner kernel's ``inspect_reply`` content."""
        return self._forward(name, "/inspect", {"code": code, "cursor_pos": cursor_pos, "detail_level": detail_level})

    def is_complete(self, name: str, code: str) -> dict:
        """Our ``jupyter-outputs`` extension: the inner kernel's ``is_complete_reply`` content."""
        return self._forward(name, "/is_complete", {"code": code})

    # -- comms (our jupyter-comms extension) ------------------------------------------------

    def send_comm(self, name: str, message: dict, wait: bool = False) -> dict | None:
        """A frontend's ``comm_open``/``comm_msg``/``comm_close`` to the inner kernel:
        ``{"msg_type", "msgId", "content", "metadata", "buffers": [base64]}``.  ``wait``: answer
        once the kernel is idle after it, with ``{"cursor"}``: its handler's events end there."""
        path = self._path(name, "/comm")
        response = self._call("POST", path, json={**message, "wait": True} if wait else message)
        return self._json_object(response, f"POST {path}") if wait else None

    def comm_info(self, name: str, target_name: str | None = None) -> dict:
        """The inner kernel's ``comm_info_reply`` content."""
        path = self._path(name, "/comm_info")
        return self._json_object(self._call("POST", path, json={"target_name": target_name}), f"POST {path}")

    def events(self, name: str, cursor: int, wait: float) -> dict:
        """The session's events from ``cursor`` on (a long poll of up to ``wait`` seconds):
        ``{"events": [...], "cursor": next, "dropped": n}``.  Safe to repeat."""
        path = self._path(name, "/events")
        connect = self.transport.timeout[0] if isinstance(self.transport.timeout, tuple) else self.transport.timeout
        response = self._call("GET", path, params={"cursor": int(cursor), "wait": f"{wait:g}"},
                              idempotent=True, timeout=(connect, wait + 10.0))
        return self._json_object(response, f"GET {path}")

    def _forward(self, name: str, suffix: str, payload: dict) -> dict:
        path = self._path(name, suffix)
        body = self._json_object(self._call("POST", path, json=payload), f"POST {path}")
        result = body.get("result", body)
        return result if isinstance(result, dict) else {}

    # -- files -----------------------------------------------------------------------------

    def upload(self, name: str, files: Sequence[tuple[str, UploadSource]]) -> None:
        """Upload ``(destination relative path, bytes or local file path)`` pairs.

        The server's limits (≤ 20 files, each < 1 MiB) are checked before anything is sent."""
        files = list(files)
        if not files:
            return
        if len(files) > protocol.MAX_UPLOAD_FILES:
            raise errors.InvalidRequestError(
                slug="invalid-api-params", title="too many files",
                msg=f"{len(files)} files; at most {protocol.MAX_UPLOAD_FILES} per upload",
                hint="upload in several batches",
            )
        parts = []
        for dest, source in files:
            if not isinstance(dest, str) or not dest.strip():
                raise errors.InvalidRequestError(msg="every upload needs a destination path")
            data = _read_upload(dest, source)
            parts.append(("src", (dest, data, "application/octet-stream")))
        self._call("POST", self._path(name, "/upload"), files=parts)

    def download(self, name: str, paths: Sequence[str], extract: bool = True) -> dict[str, bytes]:
        """Fetch up to 5 files: ``{path: content}``.  The server sends one tar archive per path;
        with ``extract`` a single-file archive is unpacked (directories stay tar archives)."""
        paths = list(paths)
        if not paths:
            return {}
        if len(paths) > protocol.MAX_DOWNLOAD_FILES:
            raise errors.InvalidRequestError(
                slug="invalid-api-params", title="too many files",
                msg=f"{len(paths)} paths; at most {protocol.MAX_DOWNLOAD_FILES} per download",
                hint="download in several batches",
            )
        path = self._path(name, "/download")
        response = self._download("/download", path, {"files": paths})
        content_type = response.headers.get("Content-Type", "")
        archives = parse_multipart_mixed(content_type, response.content)
        if len(archives) != len(paths):
            raise errors.BadResponse(self.transport.endpoint, response.status_code,
                                     msg=f"asked for {len(paths)} files, got {len(archives)} parts",
                                     request=f"{self._download_methods['/download']} {path}")
        return {p: (untar_single(a) if extract else a) for p, a in zip(paths, archives)}

    def download_single(self, name: str, path: str) -> bytes:
        return self._download("/download_single", self._path(name, "/download_single"), {"file": path}).content

    def _download(self, kind: str, path: str, body: dict) -> requests.Response:
        """The method this server takes downloads with: chosen by API version, then what the
        server said — a 405 switches it for the rest of this client's life."""
        method = self._download_methods.get(kind)
        if method is None:
            legacy = signing.parse_version(self.api_version) <= signing.parse_version(LAST_GET_DOWNLOAD_VERSION)
            method = "GET" if legacy else "POST"
        try:
            response = self._call(method, path, json=body)
        except errors.MethodNotAllowed:
            method = "POST" if method == "GET" else "GET"
            self._download_methods[kind] = method
            response = self._call(method, path, json=body)
        self._download_methods[kind] = method
        return response

    def list_files(self, name: str, path: str = ".") -> list[dict]:
        url = self._path(name, "/files")
        body = self._json_object(self._call("GET", url, json={"path": path}), f"GET {url}")
        files = body.get("files", [])
        if isinstance(files, str):
            try:
                files = json.loads(files) if files.strip() else []
            except ValueError:
                raise errors.BadResponse(self.transport.endpoint, 200,
                                         msg="'files' is not a JSON list", request=f"GET {url}") from None
        if body.get("errors") and not files:
            raise errors.NotFoundError(self.transport.endpoint, 200, title="cannot list files",
                                       msg=str(body["errors"])[:300], request=f"GET {url}",
                                       hint="check the path inside the session")
        if not isinstance(files, list):
            raise errors.BadResponse(self.transport.endpoint, 200, msg="'files' is not a list",
                                     request=f"GET {url}")
        return files

    def logs(self, name: str) -> str:
        path = self._path(name, "/logs")
        body = self._json_object(self._call("GET", path), f"GET {path}")
        result = body.get("result", body)
        logs = result.get("logs", "") if isinstance(result, dict) else ""
        return logs if isinstance(logs, str) else str(logs)


def _too_large(dest: str) -> errors.InvalidRequestError:
    return errors.InvalidRequestError(
        slug="invalid-api-params", title="file too large",
        msg=f"{dest!r} must be smaller than {protocol.MAX_UPLOAD_FILE_SIZE} bytes",
        hint="upload smaller files",
    )


def _read_upload(dest: str, source: UploadSource) -> bytes:
    """The bytes to upload, refusing files the server would reject (≥ 1 MiB) unread."""
    if isinstance(source, (bytes, bytearray)):
        if len(source) >= protocol.MAX_UPLOAD_FILE_SIZE:
            raise _too_large(dest)
        return bytes(source)
    try:
        if os.path.getsize(source) >= protocol.MAX_UPLOAD_FILE_SIZE:
            raise _too_large(dest)
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise errors.InvalidRequestError(msg=f"cannot read {os.fspath(source)!r}: {exc.strerror}",
                                         hint="check the local file path") from None
    if len(data) >= protocol.MAX_UPLOAD_FILE_SIZE:  # grew while we looked
        raise _too_large(dest)
    return data
