"""``GET /``: the API version and the protocol extensions this server offers (no auth;
docs/PROTOCOL.md#our-extensions)."""

from __future__ import annotations

from remote_kernel import protocol
from remote_kernel.server.base import BaseHandler

EXTENSIONS = [protocol.EXT_JUPYTER_OUTPUTS, protocol.EXT_RESUMABLE_RUNS, protocol.EXT_JUPYTER_COMMS,
              protocol.EXT_IMAGE_LIST, protocol.EXT_SESSION_LIST]
# request options that belong to the extensions; a server started with --no-extensions drops
# them, so it answers exactly as a classic server does whatever a client sends
EXTENSION_OPTIONS = frozenset({"outputs", "allowStdin", "cursor", "jupyter", "msgId", "comms"})


def classic_options(options: dict) -> dict:
    return {key: value for key, value in options.items() if key not in EXTENSION_OPTIONS}


class RootHandler(BaseHandler):
    authenticated = False

    def get(self) -> None:
        self.write_json({"version": protocol.SERVER_API_VERSION, "manager": "remote-kernel",
                         "extensions": EXTENSIONS if self.state.config.extensions else []})
