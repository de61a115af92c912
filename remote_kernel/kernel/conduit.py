"""How one run's bodies reach the remote: the websocket execute loop or the REST one.

Which loop a cell uses is decided by :func:`execute_loop` (pure, and shown by ``%remote info``
with its reason); :class:`Conduit` then carries the bodies :class:`~remote_kernel.client.RunState`
asks for over that loop.  Both loops exchange the same bodies, so the cell's policy
(``cell.py``) does not care which one runs.
"""

from __future__ import annotations

from typing import Any

from remote_kernel import protocol

WEBSOCKET = "websocket"


def execute_loop(setting: str, refused: bool, extensions: frozenset[str], api_version: str) -> str:
    """Which execute loop the next cell uses, and why: ``"websocket"`` or ``"REST (reason)"``.

    ``setting`` is ``RemoteKernel.streaming`` (auto, websocket, rest); ``refused``: the server
    answered an earlier upgrade with "no such endpoint"."""
    if setting == "rest":
        return "REST (RemoteKernel.streaming = rest)"
    if refused:
        return "REST (the server refused the websocket endpoint)"
    if setting == "auto" and protocol.EXT_JUPYTER_OUTPUTS in extensions:
        return "REST (lossless and resumable with this server's extensions)"
    from remote_kernel.client.stream import streaming_supported  # websocket-client: only when it may stream

    if not streaming_supported(api_version):
        return f"REST (API {api_version} predates the websocket endpoint)"
    return WEBSOCKET


class Conduit:
    """One run's transport: ``send(body)`` → the next result, over the websocket when
    ``streaming``, else REST."""

    def __init__(self, client: Any, name: str, *, streaming: bool):
        self._client = client
        self._name = name
        self._stream = None
        if streaming:
            from remote_kernel.client.stream import StreamRun

            self._stream = StreamRun(client, name)

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def send(self, body: dict, idempotent: bool) -> dict:
        if self._stream is not None:
            return self._stream.exchange(body)
        return self._client.execute(self._name, body["mode"], body["code"], body["runId"], body["options"],
                                    idempotent=idempotent)

    def use_rest(self) -> None:
        """The upgrade was refused before the code was sent: REST carries the rest of the run."""
        self.close()

    def close(self) -> None:
        """End the websocket, if any; before the run finished, the server interrupts the run."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
