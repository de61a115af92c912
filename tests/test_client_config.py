"""APIConfig: env names, SORNA_ fallback, precedence of traitlets config, secret hiding."""

from __future__ import annotations

import pytest
from traitlets.config import Config
from traitlets.config.loader import KVArgParseConfigLoader

from remote_kernel import protocol
from remote_kernel.client.config import APIConfig
from remote_kernel.client.errors import ConfigError

SECRET = "s3cr3t-VALUE-never-shown"


def test_backend_env():
    cfg = APIConfig.from_env({
        "BACKEND_ENDPOINT": "http://a:8081, https://b.example/",
        "BACKEND_ACCESS_KEY": "AK", "BACKEND_SECRET_KEY": SECRET,
        "BACKEND_SKIP_SSLCERT_VALIDATION": "true", "BACKEND_CA_BUNDLE": "/etc/ca.pem",
        "BACKEND_CONNECTION_TIMEOUT": "3.5", "BACKEND_READ_TIMEOUT": "120",
        "BACKEND_VFOLDER_MOUNTS": "data,models", "BACKEND_DOMAIN": "dom", "BACKEND_GROUP": "grp",
        "BACKEND_ENDPOINT_TYPE": "api",
    })
    assert cfg.endpoint == ["http://a:8081", "https://b.example"]
    assert (cfg.access_key, cfg.secret_key) == ("AK", SECRET)
    assert cfg.skip_ssl_verify is True and cfg.ca_bundle == "/etc/ca.pem"
    assert (cfg.connection_timeout, cfg.read_timeout) == (3.5, 120.0)
    assert cfg.vfolder_mounts == ["data", "models"]
    assert (cfg.domain, cfg.group) == ("dom", "grp")


def test_defaults():
    cfg = APIConfig.from_env({})
    assert cfg.endpoint == [] and cfg.endpoint_type == "api"
    assert (cfg.connection_timeout, cfg.read_timeout) == (10.0, 60.0)
    assert cfg.api_version == protocol.CLIENT_API_VERSION


def test_sorna_fallback_and_backend_priority():
    cfg = APIConfig.from_env({
        "SORNA_ENDPOINT": "http://old:1", "SORNA_ACCESS_KEY": "OLD", "SORNA_SECRET_KEY": SECRET,
        "BACKEND_ACCESS_KEY": "NEW",
    })
    assert cfg.endpoint == ["http://old:1"]
    assert cfg.access_key == "NEW" and cfg.secret_key == SECRET


def test_traitlets_config_wins_over_env():
    config = Config({"APIConfig": {"endpoint": ["http://configured:1"], "read_timeout": 5.0}})
    cfg = APIConfig.from_env({"BACKEND_ENDPOINT": "http://env:2", "BACKEND_READ_TIMEOUT": "99",
                              "BACKEND_ACCESS_KEY": "AK"}, config=config)
    assert cfg.endpoint == ["http://configured:1"]
    assert cfg.read_timeout == 5.0
    assert cfg.access_key == "AK"  # not configured: env still applies


def test_kernelspec_argv_wins_over_env():
    argv = ["--APIConfig.endpoint=http://argv:3,http://argv:4"]
    config = KVArgParseConfigLoader(argv).load_config()
    cfg = APIConfig.from_env({"BACKEND_ENDPOINT": "http://env:2"}, config=config)
    assert cfg.endpoint == ["http://argv:3", "http://argv:4"]


def test_keyword_overrides_win():
    cfg = APIConfig.from_env({"BACKEND_ENDPOINT": "http://env:2"}, endpoint=["http://kw:5"])
    assert cfg.endpoint == ["http://kw:5"]


def test_session_endpoint_type_is_refused_clearly():
    with pytest.raises(ConfigError, match="'session'.*not supported"):
        APIConfig.from_env({"BACKEND_ENDPOINT_TYPE": "session"})
    with pytest.raises(ConfigError, match="not supported"):
        APIConfig(endpoint_type="session")


@pytest.mark.parametrize("var,value", [
    ("BACKEND_READ_TIMEOUT", "soon"), ("BACKEND_CONNECTION_TIMEOUT", "-1"),
    ("BACKEND_SKIP_SSLCERT_VALIDATION", "maybe"), ("BACKEND_ENDPOINT", "ftp://x"),
])
def test_bad_env_values_name_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        APIConfig.from_env({var: value})


def test_repr_never_shows_secret():
    cfg = APIConfig.from_env({"BACKEND_SECRET_KEY": SECRET, "BACKEND_ACCESS_KEY": "AK"})
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)
    assert "AK" in repr(cfg)
