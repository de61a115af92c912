"""``GET /images``: the images this server runs and how, and the languages it knows but lacks the
tools for (our image-list extension, docs/PROTOCOL.md#our-extensions-image-list)."""

from __future__ import annotations

from remote_kernel.server import images
from remote_kernel.server.base import BaseHandler


class ImagesHandler(BaseHandler):
    def get(self) -> None:
        self.write_json(images.catalogue(self.state.manager.kernel_specs))
