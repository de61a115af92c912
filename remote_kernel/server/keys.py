"""Where the server's keypairs come from — never the command line, which every user of the
machine can read (``ps``, ``/proc/PID/cmdline``):

* ``--access-key AK --secret-key-file PATH`` pairs (the file holds the secret alone), and
  ``--keys-file PATH``: a keys file holding one keypair or several;
* else ``BACKEND_ACCESS_KEY``/``BACKEND_SECRET_KEY`` (``SORNA_*``) in the environment;
* else the keys file in the user's Jupyter data directory (mode 0600), generated on first run.

A keys file is ``{"keys": [{"access_key": "...", "secret_key": "..."}, ...]}``, or one pair as
``{"access_key": "...", "secret_key": "..."}`` (what the server generates).  The secret is never
printed or logged, not even in an error message."""

from __future__ import annotations

import json
import os
import secrets

from jupyter_core.paths import jupyter_data_dir

KEYS_FILE_NAME = "server_keys.json"
MIN_SECRET_LENGTH = 16  # generated secrets have 40
SECRET_SOURCES = ("the environment (BACKEND_SECRET_KEY, with BACKEND_ACCESS_KEY), a file "
                  "(--access-key AK --secret-key-file PATH), or a keys file (--keys-file PATH)")


class KeysError(ValueError):
    """Keys that cannot be used; the message names no secret."""


def keys_file_path() -> str:
    return os.path.join(jupyter_data_dir(), "remote_kernel", KEYS_FILE_NAME)


def generate() -> tuple[str, str]:
    return "AKRK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)


def parse_keys_file(data: object) -> dict[str, str]:
    """The keypairs of a keys file's JSON; KeysError when it holds none or a malformed one."""
    if isinstance(data, dict) and "keys" in data:
        pairs = data["keys"]
        if not isinstance(pairs, list) or not pairs:
            raise KeysError('"keys" must be a non-empty list of {"access_key", "secret_key"} objects')
    else:
        pairs = [data]
    keys: dict[str, str] = {}
    for pair in pairs:
        if not (isinstance(pair, dict) and isinstance(pair.get("access_key"), str)
                and isinstance(pair.get("secret_key"), str)):
            raise KeysError('each keypair must be an object with string "access_key" and "secret_key"')
        if pair["access_key"] in keys:
            raise KeysError(f"access key {pair['access_key']!r} appears twice")
        keys[pair["access_key"]] = pair["secret_key"]
    return keys


def read_keys_file(path: str) -> dict[str, str]:
    """A keys file the user names (``--keys-file``): it must exist and hold keypairs."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise KeysError(f"cannot read the keys file {path}: {exc.strerror}") from None
    except ValueError:
        raise KeysError(f"the keys file {path} is not valid JSON") from None  # no excerpt: it holds secrets
    try:
        return parse_keys_file(data)
    except KeysError as exc:
        raise KeysError(f"the keys file {path}: {exc}") from None


def read_secret_file(path: str) -> str:
    """The secret in a file of its own (``--secret-key-file``), surrounding whitespace removed."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise KeysError(f"cannot read the secret key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeysError(f"the secret key file {path} is not UTF-8 text") from None


def load_or_create(path: str | None = None) -> dict[str, str]:
    """The keypairs of the default keys file, generating a one-pair file when there is none."""
    path = path or keys_file_path()
    if os.path.exists(path):  # never overwritten: it may hold keypairs someone wrote
        keys = read_keys_file(path)
        os.chmod(path, 0o600)  # repair a loosened mode
        return keys
    access, secret = generate()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    # created 0600 from the start: the secret is never readable by others, even briefly
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"access_key": access, "secret_key": secret}, handle)
    os.replace(tmp, path)
    return {access: secret}


def from_environment(env: dict | None = None) -> tuple[str, str] | None:
    """The environment's keypair; one that is set but empty is returned as it is (and refused by
    ``check_keys``), never silently replaced by the keys file."""
    env = os.environ if env is None else env
    names = ("BACKEND_ACCESS_KEY", "SORNA_ACCESS_KEY", "BACKEND_SECRET_KEY", "SORNA_SECRET_KEY")
    if all(env.get(name) is None for name in names):
        return None
    access = env.get("BACKEND_ACCESS_KEY") or env.get("SORNA_ACCESS_KEY") or ""
    secret = env.get("BACKEND_SECRET_KEY") or env.get("SORNA_SECRET_KEY") or ""
    return access, secret


def check_keys(keys: dict[str, str]) -> None:
    """KeysError unless every keypair is usable: an access key a credential can carry, and a
    secret of at least MIN_SECRET_LENGTH characters (an empty or short one is guessed)."""
    if not keys:
        raise KeysError("no keypair configured")
    for access, secret in keys.items():
        if not access or any(c.isspace() or c == ":" for c in access):
            raise KeysError(f"access key {access!r} must be non-empty, without spaces or ':'")
        if len(secret) < MIN_SECRET_LENGTH:
            raise KeysError(
                f"the secret key of access key {access!r} is {'empty' if not secret else 'too short'}: secrets "
                f"need at least {MIN_SECRET_LENGTH} characters (make one with: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')")
