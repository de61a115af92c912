"""``GET /``: the API version and the Part B extensions this server offers (no auth)."""

from __future__ import annotations

from remote_kernel import protocol
from remote_kernel.server.base import BaseHandler

EXTENSIONS = [protocol.EXT_JUPYTER_OUTPUTS, protocol.EXT_RESUMABLE_RUNS]


class RootHandler(BaseHandler):
    authenticated = False

    def get(self) -> None:
        self.write_json({"version": protocol.SERVER_API_VERSION, "manager": "remote-kernel",
                         "extensions": EXTENSIONS})
