"""Pure pieces of the bridge kernel: language_info, is_complete, completion positions, names."""

from __future__ import annotations

import re

import pytest

from remote_kernel import protocol
from remote_kernel.client import APIConfig
from remote_kernel.kernel.kernel import completion_start, python_is_complete
from remote_kernel.kernel.language import image_language, image_version, language_info
from remote_kernel.kernel.remote_session import NoEndpoint, resolve_endpoint, session_name


@pytest.mark.parametrize("image, name, version", [
    ("python", "python", "3"), ("python:3.11-ubuntu22.04", "python", "3.11"),
    ("cr.backend.ai/stable/python-tensorflow:2.15", "python", "2.15"),
    ("r-base:4.3", "R", "4.3"), ("julia:1.10", "julia", "1.10"), ("lua:5.4", "lua", "5.4"),
    ("nodejs:20", "javascript", "20"), ("cpp:gcc13", "c++", ""), ("c", "c", ""),
])
def test_language_info_from_image(image, name, version):
    info = language_info(image)
    assert info["name"] == name and info["version"] == version
    assert {"mimetype", "file_extension", "codemirror_mode", "pygments_lexer"} <= set(info)


def test_language_overrides_win_and_empty_ones_do_not():
    info = language_info("python", {"name": "", "version": "3.12", "pygments_lexer": None})
    assert info["name"] == "python" and info["version"] == "3.12" and info["pygments_lexer"] == "ipython3"
    assert image_language("unknown-image") == "python" and image_version("x:latest") == ""


@pytest.mark.parametrize("code, status", [
    ("1", "complete"), ("print('hello, world')", "complete"), ("def f(x):\n  return x*2\n\n\n", "complete"),
    ("print('''hello", "incomplete"), ("def f(x):\n  x*2", "incomplete"), ("for i in x:", "incomplete"),
    ("import = 7q", "invalid"), ("x = )", "invalid"),
])
def test_python_is_complete(code, status):
    assert python_is_complete(code)["status"] == status


def test_incomplete_suggests_indent():
    assert python_is_complete("for i in x:")["indent"] == "    "


def test_completion_start_on_classic_servers():
    before = "import os; os.pa"
    assert completion_start(before, ["os.path", "os.pardir"]) == len(before) - len("os.pa")
    assert completion_start(before, ["path", "pardir"]) == len(before) - len("pa")
    assert completion_start("x = ", []) == 4


def test_session_name_identifies_the_kernel_and_is_valid():
    name = session_name("jupyter", "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab")
    assert name.startswith("jupyter-0f1e2d3c-")
    assert re.match(protocol.SESSION_NAME_PATTERN, name) and len(name) <= protocol.SESSION_NAME_MAX
    assert session_name("jupyter", "0f1e2d3c") != session_name("jupyter", "0f1e2d3c")  # fresh per process
    assert re.match(protocol.SESSION_NAME_PATTERN, session_name("my lab/", None))


def test_no_endpoint_says_what_to_set():
    with pytest.raises(NoEndpoint, match="BACKEND_ENDPOINT"):
        resolve_endpoint(APIConfig())
    assert resolve_endpoint(APIConfig(endpoint=["http://127.0.0.1:1"])) == ["http://127.0.0.1:1"]
