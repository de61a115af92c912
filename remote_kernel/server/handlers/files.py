"""upload, download (POST, or the older GET with a JSON body), download_single, files.

Every file call runs on its session's lane (lanes.py): one session's stuck calls never hold up
another's, nor the server's exit.  Downloads are sent in chunks, each written out before the
next is read, so a download never sits whole in the server's memory; the download limit is per
request.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import AsyncIterator

from tornado.iostream import StreamClosedError

from remote_kernel.server import files
from remote_kernel.server.base import BaseHandler
from remote_kernel.server.errors import bad_params
from remote_kernel.server.lanes import lane_of

log = logging.getLogger("remote_kernel.server")

CHUNK = 1024 * 1024


class _Streaming(BaseHandler):
    async def stream(self, length: int, chunks: AsyncIterator[bytes]) -> None:
        """Send ``length`` bytes from ``chunks``.  Once the headers are out no error answer is
        possible: a failure (the file shrank, the lane gave up) ends the connection short of
        its Content-Length, which every client notices."""
        self.set_header("Content-Length", str(length))
        sent = 0
        try:
            async for chunk in chunks:
                self.write(chunk)
                sent += len(chunk)
                await self.flush()
        except StreamClosedError:
            return  # the client left
        except Exception as exc:  # noqa: BLE001 - too late for an error answer
            if not self._headers_written:
                raise
            log.warning("%s %s: download ended early: %s", self.request.method, self.request.path, exc)
        if sent != length:
            self.request.connection.stream.close()


class UploadHandler(BaseHandler):
    async def post(self, _family: str, ident: str) -> None:
        session = self.session(ident)
        config = self.state.config
        if not self.request.headers.get("Content-Type", "").lower().startswith("multipart/form-data"):
            raise bad_params("uploads are multipart/form-data, one part per file")
        uploads = [f for parts in self.request.files.values() for f in parts]
        if not uploads:
            raise bad_params("no files in the upload (malformed multipart body?)")
        if len(uploads) > config.max_upload_files:
            raise bad_params(f"too many files: at most {config.max_upload_files} per upload")
        for upload in uploads:
            if len(upload.body) >= config.max_upload_file_size:
                raise bad_params(f"{upload.filename!r} is too large: files must be smaller than "
                                 f"{config.max_upload_file_size} bytes")
        await lane_of(session).run(files.save_uploads, session.cwd, [(u.filename, u.body) for u in uploads])
        self.set_status(204)
        self.finish()


class DownloadHandler(_Streaming):
    async def _download(self, ident: str) -> None:
        paths = self.json_body().get("files")
        limit = self.state.config.max_download_files
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise bad_params("'files' must be a non-empty list of paths")
        if len(paths) > limit:
            raise bad_params(f"too many files: at most {limit} per download")
        session = self.session(ident)
        lane = lane_of(session)
        await lane.run(files.confine_all, session.cwd, paths)  # every path before any archive
        budget = files.Budget(self.state.config.max_download_bytes)
        archives = []
        try:
            for path in paths:  # all archives made (and the limit checked) before anything is sent
                archives.append(await lane.run(files.tar_of, session.cwd, path, budget))
            boundary = uuid.uuid4().hex
            heads = [files.part_head(boundary, path, size) for path, (_, size) in zip(paths, archives)]
            end = files.closing(boundary)
            length = sum(len(head) + size + 2 for head, (_, size) in zip(heads, archives)) + len(end)

            async def body() -> AsyncIterator[bytes]:
                for head, (archive, _) in zip(heads, archives):
                    yield head
                    while chunk := archive.read(CHUNK):
                        yield chunk
                    yield b"\r\n"
                yield end

            self.set_header("Content-Type", f"multipart/mixed; boundary={boundary}")
            await self.stream(length, body())
        finally:
            for archive, _ in archives:
                archive.close()

    async def post(self, _family: str, ident: str) -> None:
        await self._download(ident)

    async def get(self, _family: str, ident: str) -> None:
        await self._download(ident)


class DownloadSingleHandler(_Streaming):
    async def _download(self, ident: str) -> None:
        path = self.json_body().get("file")
        if not isinstance(path, str):
            raise bad_params("'file' must be a path")
        session = self.session(ident)
        lane = lane_of(session)
        fd, size = await lane.run(files.open_single, session.cwd, path, self.state.config.max_download_bytes)

        async def body() -> AsyncIterator[bytes]:
            left = size
            while left > 0:
                chunk = await lane.run(files.read_chunk, fd, min(CHUNK, left))
                if not chunk:
                    return  # the file shrank meanwhile
                left -= len(chunk)
                yield chunk

        try:
            self.set_header("Content-Type", "application/octet-stream")
            await self.stream(size, body())
        finally:
            os.close(fd)

    async def post(self, _family: str, ident: str) -> None:
        await self._download(ident)

    async def get(self, _family: str, ident: str) -> None:
        await self._download(ident)


class FilesHandler(BaseHandler):
    async def _list(self, ident: str) -> None:
        path = self.json_body(required=False).get("path", ".")
        if path is None:
            path = "."
        if not isinstance(path, str):
            raise bad_params("'path' must be a string")
        session = self.session(ident)
        self.write_json(await lane_of(session).run(files.list_dir, session.cwd, path))

    async def get(self, _family: str, ident: str) -> None:
        await self._list(ident)

    async def post(self, _family: str, ident: str) -> None:
        await self._list(ident)
