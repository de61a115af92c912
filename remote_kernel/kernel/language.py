"""Pure: the remote language's ``language_info`` derived from the image name.

papermill picks its parameter translator from ``language_info.name`` and frontends pick
highlighting from ``codemirror_mode``/``pygments_lexer``, so these must describe the *remote*
language.  Every field can be overridden from configuration.
"""

from __future__ import annotations

import re

# image base name → language_info (version filled from the image tag when it looks like one)
_LANGUAGES: dict[str, dict] = {
    "python": {"name": "python", "version": "3", "mimetype": "text/x-python", "file_extension": ".py",
               "codemirror_mode": {"name": "ipython", "version": 3}, "pygments_lexer": "ipython3",
               "nbconvert_exporter": "python"},
    "r": {"name": "R", "version": "", "mimetype": "text/x-r-source", "file_extension": ".r",
          "codemirror_mode": "r", "pygments_lexer": "r"},
    "julia": {"name": "julia", "version": "", "mimetype": "application/julia", "file_extension": ".jl",
              "codemirror_mode": "julia", "pygments_lexer": "julia"},
    "lua": {"name": "lua", "version": "", "mimetype": "text/x-lua", "file_extension": ".lua",
            "codemirror_mode": "lua", "pygments_lexer": "lua"},
    "javascript": {"name": "javascript", "version": "", "mimetype": "application/javascript",
                   "file_extension": ".js", "codemirror_mode": "javascript", "pygments_lexer": "javascript"},
    "c": {"name": "c", "version": "", "mimetype": "text/x-csrc", "file_extension": ".c",
          "codemirror_mode": "text/x-csrc", "pygments_lexer": "c"},
    "c++": {"name": "c++", "version": "", "mimetype": "text/x-c++src", "file_extension": ".cpp",
            "codemirror_mode": "text/x-c++src", "pygments_lexer": "cpp"},
}

# (regex on the image's base name, language key) — first match wins
_IMAGE_HINTS = (
    (r"^(python|py|ipython|jupyter|tensorflow|pytorch|torch|conda)", "python"),
    (r"^(r-base|r|rstudio|tidyverse)([-_.]|$)", "r"),
    (r"^julia", "julia"),
    (r"^lua", "lua"),
    (r"^(node|nodejs|javascript|js)([-_.]|$)", "javascript"),
    (r"^(cpp|c\+\+|gcc-c\+\+|g\+\+)", "c++"),
    (r"^(c|gcc)([-_.]|$)", "c"),
)


def match_language(image: str) -> str | None:
    """The language key for an image such as ``python:3.11`` or ``cr.io/lablup/r-base:4``, or
    None when the name says nothing (the embedded server uses this too)."""
    base = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0].lower()
    if base.startswith("kernel-"):  # the older registry's names: lablup/kernel-lua
        base = base[len("kernel-"):]
    for pattern, key in _IMAGE_HINTS:
        if re.match(pattern, base):
            return key
    return None


def image_language(image: str) -> str:
    """The language key for an image (Python when the name says nothing)."""
    return match_language(image) or "python"


def image_version(image: str) -> str:
    """The tag's leading version number (``python:3.11-ubuntu`` → ``3.11``), else ``""``."""
    if ":" not in image.rsplit("/", 1)[-1]:
        return ""
    tag = image.rsplit(":", 1)[1]
    found = re.match(r"^v?(\d+(?:\.\d+)*)", tag)
    return found.group(1) if found else ""


def language_info(image: str, overrides: dict | None = None) -> dict:
    """``language_info`` for ``image``; non-empty ``overrides`` values win."""
    info = dict(_LANGUAGES[image_language(image)])
    info["version"] = image_version(image) or info["version"]
    for key, value in (overrides or {}).items():
        if value not in (None, "", {}):
            info[key] = value
    return info
