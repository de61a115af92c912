"""``remote_kernel.server.app.start``: the server started in-process (as the bridge kernel's
private server is), with ``session_cwd`` making every session run in one kept directory."""

from __future__ import annotations

import asyncio
import os

from remote_kernel.client import APIConfig, Client
from remote_kernel.server.app import start
from remote_kernel.server.config import ServerConfig

IN_SECRET = "in-process-secret-0123456789"  # the server refuses secrets under 16 characters


def test_in_process_server_with_shared_cwd(tmp_path):
    shared = tmp_path / "work"

    def use(url: str) -> str:
        with Client(APIConfig(endpoint=[url], access_key="AKIN", secret_key=IN_SECRET)) as client:
            client.create_session("python", name="inproc")
            result = client.execute("inproc", "query", "import os; print(os.getcwd())")
            client.destroy_session("inproc")
            return result["console"][0][1].strip()

    async def main() -> str:
        server = await start(ServerConfig(port=0, keys={"AKIN": IN_SECRET}, session_cwd=str(shared)))
        try:
            return await asyncio.to_thread(use, server.url)
        finally:
            await server.stop()

    cwd = asyncio.run(main())
    assert os.path.realpath(cwd) == os.path.realpath(shared)
    assert shared.is_dir()  # a shared directory is never deleted on destroy
