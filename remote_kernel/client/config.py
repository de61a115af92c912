"""Client configuration: where the API is and how to authenticate (docs/PROTOCOL.md#signing-requests).

Precedence, highest first — decided here only (:meth:`APIConfig.from_env`), which also records
where each value came from (:meth:`APIConfig.source_of`):

1. keyword arguments given to :class:`APIConfig` / :meth:`APIConfig.from_env`;
2. traitlets configuration (kernelspec argv such as ``--APIConfig.endpoint=URL``, or a Jupyter
   config file) reached through ``config=`` or ``parent=``;
3. the environment: ``BACKEND_X``, falling back to ``SORNA_X`` (the official SDK's names);
4. the trait defaults.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

from traitlets import Bool, Float, List, Unicode, validate
from traitlets.config import Application, Configurable

from remote_kernel import protocol, signing
from remote_kernel.client.errors import ConfigError
from remote_kernel.traitlets_private import my_config

# the endpoint that means "a private embedded server on this machine" (the kernel starts it)
LOCAL_ENDPOINT = "local"
DEFAULT_SOURCE = "the default"
KEYWORD_SOURCE = "a keyword argument"
JUPYTER_SOURCE = "Jupyter config (kernelspec argv or config file)"

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false, yes/no), got {value!r}")


def _parse_seconds(name: str, value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds (0: no timeout), got {value!r}") from None


# trait name → (env suffix, parser).  The secret's value is never put into an error message.
_ENV_TRAITS: dict[str, tuple[str, Any]] = {
    "endpoint": ("ENDPOINT", lambda n, v: _split_list(v)),
    "endpoint_type": ("ENDPOINT_TYPE", lambda n, v: v.strip()),
    "access_key": ("ACCESS_KEY", lambda n, v: v.strip()),
    "secret_key": ("SECRET_KEY", lambda n, v: v.strip()),
    "skip_ssl_verify": ("SKIP_SSLCERT_VALIDATION", _parse_bool),
    "ca_bundle": ("CA_BUNDLE", lambda n, v: v.strip()),
    "connection_timeout": ("CONNECTION_TIMEOUT", _parse_seconds),
    "read_timeout": ("READ_TIMEOUT", _parse_seconds),
    "vfolder_mounts": ("VFOLDER_MOUNTS", lambda n, v: _split_list(v)),
    "domain": ("DOMAIN", lambda n, v: v.strip()),
    "group": ("GROUP", lambda n, v: v.strip()),
}


def env_value(environ: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """``(variable name, value)`` of ``BACKEND_<suffix>``, else ``SORNA_<suffix>``, else None."""
    for prefix in ("BACKEND_", "SORNA_"):
        name = prefix + suffix
        if name in environ:
            return name, environ[name]
    return None


def _jupyter_source(config: Configurable, trait: str) -> str:
    """The kernelspec's argv or a config file: the Jupyter application keeps its command line's
    config apart (``cli_config``) and lists the files it loaded.  Without an application (a
    ``Config`` handed over directly) the two cannot be told apart."""
    app = config.parent
    while app is not None and not isinstance(app, Application):
        app = getattr(app, "parent", None)
    if app is not None and trait in my_config(config, app.cli_config):
        return f"--{type(config).__name__}.{trait} in the kernelspec/command line"
    if app is not None and app.loaded_config_files:
        return f"c.{type(config).__name__}.{trait} in a Jupyter config file ({', '.join(app.loaded_config_files)})"
    return JUPYTER_SOURCE


class APIConfig(Configurable):
    """How to reach and authenticate to a Backend.AI-compatible API.

    Build it with :meth:`from_env` to honour the environment; see the module docstring for
    which source wins.  ``repr()`` never shows the secret key.
    """

    endpoint = List(
        Unicode(), default_value=[],
        help="API endpoint URLs, tried in order (fail-over). Env: BACKEND_ENDPOINT (comma-separated).",
    ).tag(config=True)
    endpoint_type = Unicode(
        "api", help="'api' (keypair signing). 'session' (web-server login) is not supported.",
    ).tag(config=True)
    access_key = Unicode("", help="Access key. Env: BACKEND_ACCESS_KEY.").tag(config=True)
    secret_key = Unicode("", help="Secret key. Env: BACKEND_SECRET_KEY. Never logged.").tag(config=True)
    skip_ssl_verify = Bool(False, help="Do not verify TLS certificates.").tag(config=True)
    ca_bundle = Unicode("", help="Path of a CA bundle for TLS verification.").tag(config=True)
    connection_timeout = Float(10.0, help="Seconds to wait for a connection (0: no timeout).").tag(config=True)
    read_timeout = Float(60.0, help="Seconds to wait for an answer (0: no timeout, the official SDK's default).",
                         ).tag(config=True)
    vfolder_mounts = List(Unicode(), default_value=[], help="Virtual folders to mount.").tag(config=True)
    api_version = Unicode(
        protocol.CLIENT_API_VERSION, help="Newest API version to speak (negotiated down).",
    ).tag(config=True)
    domain = Unicode("", help="Domain name sent on session creation (empty: server default).").tag(config=True)
    group = Unicode("", help="Group (project) sent on session creation (empty: server default).").tag(config=True)

    @validate("endpoint")
    def _validate_endpoint(self, proposal: Any) -> list[str]:
        # One argv value may carry several comma-separated URLs, like the env variable.
        urls: list[str] = []
        for item in proposal["value"]:
            urls.extend(_split_list(item))
        if [url.lower() for url in urls] == [LOCAL_ENDPOINT]:
            return [LOCAL_ENDPOINT]
        for url in urls:
            if not url.lower().startswith(("http://", "https://")):
                raise ConfigError(f"endpoint {url!r} must start with http:// or https:// "
                                  f"(or be {LOCAL_ENDPOINT!r} alone: a private embedded server)")
        return [url.rstrip("/") for url in urls]

    @validate("endpoint_type")
    def _validate_endpoint_type(self, proposal: Any) -> str:
        value = proposal["value"].strip().lower() or "api"
        if value == "session":
            raise ConfigError(
                "endpoint type 'session' (web-server cookie login) is not supported; "
                "use endpoint type 'api' with an access key and a secret key"
            )
        if value != "api":
            raise ConfigError(f"unknown endpoint type {proposal['value']!r}; use 'api'")
        return value

    @validate("api_version")
    def _validate_api_version(self, proposal: Any) -> str:
        try:
            signing.parse_version(proposal["value"])
        except ValueError:
            raise ConfigError(f"api_version {proposal['value']!r} is not like 'v8.20240915'") from None
        return proposal["value"]

    @validate("connection_timeout", "read_timeout")
    def _validate_timeout(self, proposal: Any) -> float:
        if not (math.isfinite(proposal["value"]) and proposal["value"] >= 0):
            raise ConfigError(f"{proposal['trait'].name} must be 0 (no timeout) or a positive number of "
                              f"seconds, got {proposal['value']!r}")
        return proposal["value"]

    @property
    def embedded(self) -> bool:
        """No endpoint, or ``local``: the kernel runs its cells on a private embedded server."""
        return list(self.endpoint) in ([], [LOCAL_ENDPOINT])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "APIConfig":
        """Read ``BACKEND_*`` / ``SORNA_*`` variables for every trait not configured otherwise.

        ``overrides`` may hold trait values and the usual ``config=`` / ``parent=``; traits set
        there (directly or through the traitlets config) keep their value over the environment.
        """
        env = os.environ if environ is None else environ
        instance = cls(**overrides)
        sources = {name: KEYWORD_SOURCE for name in overrides if instance.has_trait(name)}
        for name in my_config(instance, instance.config):
            sources.setdefault(name, _jupyter_source(instance, name))
        for trait, (suffix, parse) in _ENV_TRAITS.items():
            if trait in sources:
                continue
            found = env_value(env, suffix)
            if found is None:
                continue
            name, raw = found
            value = parse(name, raw)
            try:
                setattr(instance, trait, value)
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
            sources[trait] = name
        instance._sources = sources
        return instance

    def source_of(self, trait: str) -> str:
        """Where ``trait``'s value came from, for messages: ``BACKEND_ENDPOINT``, "--APIConfig.endpoint
        in the kernelspec/command line", ... (the default, unless built by :meth:`from_env`)."""
        return getattr(self, "_sources", {}).get(trait, DEFAULT_SOURCE)

    def __repr__(self) -> str:
        return (
            f"APIConfig(endpoint={list(self.endpoint)!r}, endpoint_type={self.endpoint_type!r}, "
            f"access_key={self.access_key!r}, secret_key={'<set>' if self.secret_key else '<unset>'}, "
            f"api_version={self.api_version!r}, skip_ssl_verify={self.skip_ssl_verify!r}, "
            f"ca_bundle={self.ca_bundle!r}, connection_timeout={self.connection_timeout!r}, "
            f"read_timeout={self.read_timeout!r}, vfolder_mounts={list(self.vfolder_mounts)!r}, "
            f"domain={self.domain!r}, group={self.group!r})"
        )

    __str__ = __repr__
