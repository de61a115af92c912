"""APIConfig: env names, SORNA_ fallback, precedence of traitlets config (and where each value
came from, down to the kernel's error for missing keys), timeouts, secret hiding."""

from __future__ import annotations

import pytest
from traitlets.config import Config, Configurable
from traitlets.config.loader import KVArgParseConfigLoader

from remote_kernel import protocol
from remote_kernel.client.config import APIConfig
from remote_kernel.client.errors import ConfigError
from remote_kernel.kernel.__main__ import RemoteKernelApp
from remote_kernel.kernel.remote_session import MissingKeys, load_config

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


@pytest.mark.parametrize("var", ["BACKEND_READ_TIMEOUT", "BACKEND_CONNECTION_TIMEOUT"])
def test_a_timeout_of_zero_means_none_as_in_the_official_sdk(var):
    cfg = APIConfig.from_env({var: "0"})
    assert getattr(cfg, var[len("BACKEND_"):].lower()) == 0.0
    assert APIConfig(read_timeout=0, connection_timeout=0).read_timeout == 0.0


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_negative_or_endless_timeout_is_refused_naming_the_variable(value):
    with pytest.raises(ConfigError, match=r"BACKEND_READ_TIMEOUT.*0 \(no timeout\) or a positive number"):
        APIConfig.from_env({"BACKEND_READ_TIMEOUT": value})
    with pytest.raises(ConfigError, match="read_timeout must be 0"):
        APIConfig(read_timeout=float(value))


def test_each_value_says_where_it_came_from():
    cfg = APIConfig.from_env({"BACKEND_ENDPOINT": "http://env:2", "SORNA_ACCESS_KEY": "AK"},
                             config=Config({"APIConfig": {"read_timeout": 5.0}}), domain="kw")
    assert cfg.source_of("endpoint") == "BACKEND_ENDPOINT"
    assert cfg.source_of("access_key") == "SORNA_ACCESS_KEY"
    assert cfg.source_of("domain") == "a keyword argument"
    # a Config handed over directly: argv and file cannot be told apart
    assert cfg.source_of("read_timeout") == "Jupyter config (kernelspec argv or config file)"
    assert cfg.source_of("group") == "the default" == APIConfig().source_of("endpoint")


def test_local_is_an_endpoint_of_its_own():
    assert APIConfig.from_env({"BACKEND_ENDPOINT": " LOCAL "}).embedded
    assert APIConfig.from_env({}).embedded and not APIConfig(endpoint=["http://h:1"]).embedded
    with pytest.raises(ConfigError, match="'local' alone"):
        APIConfig(endpoint=["local", "http://h:1"])


# ---- the kernel's own application: kernelspec argv vs remote_kernel_config.py ----------------


def kernel_under(argv, config_dir, monkeypatch):
    """What the bridge kernel is to its APIConfig: a child of the real kernel application, which
    parsed the kernelspec's argv and loaded the Jupyter config files."""
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(config_dir))
    app = RemoteKernelApp()
    app.parse_command_line(argv)
    app.load_config_file()
    return Configurable(parent=app)


def test_missing_keys_name_the_kernelspec_when_the_endpoint_came_from_its_argv(tmp_path, monkeypatch):
    (tmp_path / "remote_kernel_config.py").write_text('c.APIConfig.endpoint = ["http://file:1"]\n')
    kernel = kernel_under(["--APIConfig.endpoint=http://argv:1"], tmp_path, monkeypatch)
    config, error, embedded = load_config(kernel, {"BACKEND_ENDPOINT": "http://env:1"})
    assert config.endpoint == ["http://argv:1"] and not embedded and isinstance(error, MissingKeys)
    assert "configured by --APIConfig.endpoint in the kernelspec/command line but" in str(error)


def test_missing_keys_name_the_config_file_when_the_endpoint_came_from_one(tmp_path, monkeypatch):
    config_file = tmp_path / "remote_kernel_config.py"
    config_file.write_text('c.APIConfig.endpoint = ["http://file:1"]\n')
    kernel = kernel_under(["--RemoteKernel.image=python"], tmp_path, monkeypatch)
    config, error, _ = load_config(kernel, {"BACKEND_ENDPOINT": "http://env:1", "BACKEND_ACCESS_KEY": "AK"})
    assert config.endpoint == ["http://file:1"]
    assert f"configured by c.APIConfig.endpoint in a Jupyter config file ({config_file}) but" in str(error)
    assert "BACKEND_SECRET_KEY is not set" in str(error)


def test_missing_keys_name_the_variable_when_the_endpoint_came_from_the_environment(tmp_path, monkeypatch):
    kernel = kernel_under([], tmp_path, monkeypatch)
    _, error, _ = load_config(kernel, {"SORNA_ENDPOINT": "http://env:1"})
    assert "configured by SORNA_ENDPOINT but" in str(error)
