"""upload, download (POST, or the older GET with a JSON body), download_single, files.

Every file call runs on its session's lane (lanes.py): one session's stuck calls never hold up
another's, nor the server's exit."""

from __future__ import annotations

from remote_kernel.server import files
from remote_kernel.server.base import BaseHandler
from remote_kernel.server.errors import bad_params
from remote_kernel.server.lanes import lane_of


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


class DownloadHandler(BaseHandler):
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
        max_bytes = self.state.config.max_download_bytes
        parts = [(p, await lane.run(files.tar_of, session.cwd, p, max_bytes)) for p in paths]
        content_type, body = files.multipart_mixed(parts)
        self.set_header("Content-Type", content_type)
        self.finish(body)

    async def post(self, _family: str, ident: str) -> None:
        await self._download(ident)

    async def get(self, _family: str, ident: str) -> None:
        await self._download(ident)


class DownloadSingleHandler(BaseHandler):
    async def _download(self, ident: str) -> None:
        path = self.json_body().get("file")
        if not isinstance(path, str):
            raise bad_params("'file' must be a path")
        session = self.session(ident)
        data = await lane_of(session).run(files.read_single, session.cwd, path, self.state.config.max_download_bytes)
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)

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
