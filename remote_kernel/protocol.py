"""Constants of the Backend.AI API and of our extensions to it (docs/PROTOCOL.md).

Shared by the client, the bridge kernel and the embedded server so that both ends agree.
"""

from __future__ import annotations

from remote_kernel.signing import parse_version

# Newest API version we speak; the client negotiates min(server, ours).
CLIENT_API_VERSION = "v8.20240915"
SERVER_API_VERSION = "v8.20240915"
KNOWN_API_VERSIONS = (
    "v4.20181215",
    "v4.20190115",
    "v4.20190315",
    "v4.20190615",
    "v5.20191215",
    "v6.20200815",
    "v6.20210815",
    "v6.20220315",
    "v6.20220615",
    "v6.20230315",
    "v7.20230615",
    "v8.20240315",
    "v8.20240915",
    "v9.20250722",
)
OLDEST_SUPPORTED_API_VERSION = "v4.20181215"


def path_family(version: str) -> str:
    """``/kernel`` for v4 and older, ``/session`` for v5 and newer
    (docs/PROTOCOL.md#versions-and-discovery)."""
    major, _ = parse_version(version)
    return "/kernel" if major <= 4 else "/session"


def older_version(a: str, b: str) -> str:
    return a if parse_version(a) <= parse_version(b) else b


# Execute-loop statuses (response) and modes (request).
STATUS_CONTINUED = "continued"
STATUS_BUILD_FINISHED = "build-finished"
STATUS_CLEAN_FINISHED = "clean-finished"
STATUS_WAITING_INPUT = "waiting-input"
STATUS_FINISHED = "finished"
STATUS_EXEC_TIMEOUT = "exec-timeout"
POLL_AGAIN_STATUSES = frozenset({STATUS_CONTINUED, STATUS_BUILD_FINISHED, STATUS_CLEAN_FINISHED})
TERMINAL_STATUSES = frozenset({STATUS_FINISHED, STATUS_EXEC_TIMEOUT})

# Session statuses (``status`` in session info).  DEAD: the kernel exited; the embedded server
# keeps such a session for a while so that its last run's result stays fetchable.
SESSION_PENDING = "PENDING"
SESSION_RUNNING = "RUNNING"
SESSION_DEAD = "DEAD"
SESSION_TERMINATED = "TERMINATED"

MODE_QUERY = "query"
MODE_BATCH = "batch"
MODE_CONTINUE = "continue"
MODE_INPUT = "input"
MODE_COMPLETE = "complete"

# Exit code a real server reports when the session vanished mid-run (with an empty console).
EXIT_SESSION_VANISHED = 130
EXIT_BUILD_FAILED = 127

# Problem slugs (docs/PROTOCOL.md#errors); the full type is PROBLEM_BASE + slug.
PROBLEM_BASE = "https://api.backend.ai/probs/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# Our extensions' names, advertised in GET / "extensions" (docs/PROTOCOL.md#our-extensions).
EXT_JUPYTER_OUTPUTS = "jupyter-outputs"
EXT_RESUMABLE_RUNS = "resumable-runs"
EXT_JUPYTER_COMMS = "jupyter-comms"  # comm messages both ways, and the session event stream
EXT_SESSION_LIST = "session-list"  # GET /sessions, and a session's activeRun (reattaching bridges)
EXT_IMAGE_LIST = "image-list"  # GET /images: the images the server runs, and what is missing
# Our request header signing the body (docs/PROTOCOL.md#our-extensions-body-signatures).
BODY_SIGNATURE_HEADER = "X-RemoteKernel-Body-Signature"

# Media types.
MIME_SORNA_DRAWING = "application/x-sorna-drawing"
MIME_DRAWING_JSON = "application/vnd.remote-kernel.drawing+json"

# Upload/download limits of real servers (docs/PROTOCOL.md#sessions).
MAX_UPLOAD_FILES = 20
MAX_UPLOAD_FILE_SIZE = 1024 * 1024  # a file must be smaller than this
MAX_DOWNLOAD_FILES = 5

# Session names (docs/PROTOCOL.md#sessions): 4-64 chars, ^\w[\w.-]*\w$ — the whole string:
# \Z, not $, which also matches before a final newline (so even re.match checks all of it)
SESSION_NAME_PATTERN = r"^\w[\w.-]*\w\Z"
SESSION_NAME_MIN = 4
SESSION_NAME_MAX = 64
