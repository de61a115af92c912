"""Where the server's keypair comes from: arguments, else ``BACKEND_ACCESS_KEY``/
``BACKEND_SECRET_KEY``, else a keys file in the user's Jupyter data directory (mode 0600),
generated on first run.  The secret is never printed or logged."""

from __future__ import annotations

import json
import os
import secrets

from jupyter_core.paths import jupyter_data_dir

KEYS_FILE_NAME = "server_keys.json"


def keys_file_path() -> str:
    return os.path.join(jupyter_data_dir(), "remote_kernel", KEYS_FILE_NAME)


def generate() -> tuple[str, str]:
    return "AKRK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)


def load_or_create(path: str | None = None) -> tuple[str, str]:
    path = path or keys_file_path()
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if isinstance(data.get("access_key"), str) and isinstance(data.get("secret_key"), str):
            os.chmod(path, 0o600)  # repair a loosened mode
            return data["access_key"], data["secret_key"]
    except (OSError, ValueError, AttributeError):
        pass
    access, secret = generate()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    # created 0600 from the start: the secret is never readable by others, even briefly
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"access_key": access, "secret_key": secret}, handle)
    os.replace(tmp, path)
    return access, secret


def from_environment(env: dict | None = None) -> tuple[str, str] | None:
    env = os.environ if env is None else env
    access = env.get("BACKEND_ACCESS_KEY") or env.get("SORNA_ACCESS_KEY")
    secret = env.get("BACKEND_SECRET_KEY") or env.get("SORNA_SECRET_KEY")
    return (access, secret) if access and secret else None
