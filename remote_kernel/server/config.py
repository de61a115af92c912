"""``ServerConfig``: every tunable of the embedded server, with the real server's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from remote_kernel import protocol


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    keys: dict[str, str] = field(default_factory=dict)  # access key → secret key
    root: str | None = None  # sessions run in root/<name>; a temp dir when None
    session_cwd: str | None = None  # all sessions share this directory, never deleted
    idle_timeout: float = 3600.0  # seconds without any API call; 0 disables reaping
    max_sessions: int = 32  # in total
    max_sessions_per_key: int = 16
    hold: float = 2.5  # long-poll hold when there is no output
    coalesce: float = 0.01  # a poll waits this long after the first new record for more
    text_coalesce: float = 0.0  # the same for stdout/stderr text (printed text goes out at once)
    slow_start: float = 0.0  # seconds a new session takes to walk to RUNNING (startup.py); 0: at once
    max_json_body: int = 8 * 1024 * 1024
    max_upload_files: int = protocol.MAX_UPLOAD_FILES
    max_upload_file_size: int = protocol.MAX_UPLOAD_FILE_SIZE
    max_download_files: int = protocol.MAX_DOWNLOAD_FILES
    max_download_bytes: int = 256 * 1024 * 1024
    max_run_buffer: int = 32 * 1024 * 1024  # unacknowledged console bytes kept per run
    finished_run_ttl: float = 60.0
    kernel_start_timeout: float = 60.0
    require_body_signature: bool = False  # refuse requests without our X-RemoteKernel-Body-Signature
    replay_cache_size: int = 65536  # signatures remembered against replays (replay.py)
    body_timeout: float = 120.0  # seconds to receive a request's whole body; then the connection closes
    warm_kernels: int = 1  # spare Python kernels kept running (warm.py)
    extensions: bool = True  # offer our protocol extensions (False: exactly a classic server)
    certfile: str | None = None  # serve TLS with this certificate (chain), PEM
    keyfile: str | None = None  # and this private key (None: it is in certfile)

    @property
    def max_body_size(self) -> int:
        # uploads may carry max_upload_files files just under the size limit, plus multipart overhead
        return max(self.max_json_body, self.max_upload_files * self.max_upload_file_size + 1024 * 1024)
