"""Pure translation: inner-kernel (Jupyter) iopub/stdin messages → console records.

Classic mode is what a real Backend.AI server sends (docs/PROTOCOL.md#the-execute-loop): rich
bundles cut down to one ``media``/``html``/``stdout`` record, errors as a stderr traceback.
Jupyter mode is our lossless ``jupyter-outputs`` extension
(docs/PROTOCOL.md#our-extensions-jupyter-outputs).  A bundle holding the Backend.AI drawing type
becomes a ``media`` record in both modes: that is how remote drawing code reaches any client.
"""

from __future__ import annotations

import json
import re
from typing import Any

from remote_kernel import jsonio
from remote_kernel.protocol import MIME_SORNA_DRAWING

Record = list  # [kind, data]

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Binary image types a real server forwards as data URIs, in order of preference.
_BINARY_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
STREAMS = ("stdout", "stderr")


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def _text(value: Any) -> str:
    # nbformat allows multi-line strings as lists of lines
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)


def classic_bundle(data: dict) -> list[Record]:
    """One MIME bundle → the single record a real server would send for it."""
    if MIME_SORNA_DRAWING in data:
        return [["media", [MIME_SORNA_DRAWING, _text(data[MIME_SORNA_DRAWING])]]]
    if "image/svg+xml" in data:
        return [["media", ["image/svg+xml", _text(data["image/svg+xml"])]]]
    for mime in _BINARY_IMAGES:
        if mime in data:
            b64 = "".join(_text(data[mime]).split())  # Jupyter may wrap base64 lines
            return [["media", [mime, f"data:{mime};base64,{b64}"]]]
    if "text/html" in data:
        return [["html", _text(data["text/html"])]]
    if "text/plain" in data:
        text = _text(data["text/plain"])
        return [["stdout", text if text.endswith("\n") else text + "\n"]]
    return []


def translate(msg_type: str, content: dict, jupyter: bool) -> list[Record]:
    """Records for one iopub message of a run (``[]`` for messages that carry no output)."""
    if msg_type == "stream":
        name = content.get("name")
        text = content.get("text")
        if name in STREAMS and isinstance(text, str) and text:
            return [[name, text]]
        return []
    if msg_type in ("display_data", "execute_result", "update_display_data"):
        data = content.get("data")
        if not isinstance(data, dict):
            return []
        if MIME_SORNA_DRAWING in data:
            return [["media", [MIME_SORNA_DRAWING, _text(data[MIME_SORNA_DRAWING])]]]
        if not jupyter:
            return classic_bundle(data)
        return [["display", {
            "output_type": msg_type,
            "data": data,
            "metadata": content.get("metadata") or {},
            "transient": content.get("transient") or {},
            "execution_count": content.get("execution_count"),
        }]]
    if msg_type == "error":
        traceback = [str(t) for t in content.get("traceback") or []]
        if jupyter:
            return [["error", {"ename": str(content.get("ename", "")),
                               "evalue": str(content.get("evalue", "")), "traceback": traceback}]]
        text = strip_ansi("\n".join(traceback)) if traceback else f"{content.get('ename')}: {content.get('evalue')}"
        return [["stderr", text if text.endswith("\n") else text + "\n"]]
    if msg_type == "clear_output":
        return [["clear", {"wait": bool(content.get("wait"))}]] if jupyter else []
    return []


def reply_summary(content: dict) -> dict:
    """What of the inner kernel's execute_reply the bridge needs to reply the same: its status
    and, for an error, ename/evalue/traceback (payload and user_expressions stay local)."""
    status = content.get("status") if content.get("status") in ("ok", "error", "aborted") else "error"
    if status != "error":
        return {"status": status}
    return {"status": "error", "ename": str(content.get("ename", "")), "evalue": str(content.get("evalue", "")),
            "traceback": [str(line) for line in content.get("traceback") or []]}


def input_prompt(content: dict, jupyter: bool) -> tuple[list[Record], dict]:
    """An ``input_request`` → (records to emit, the ``waiting-input`` result's options)."""
    prompt = content.get("prompt") or ""
    prompt = prompt if isinstance(prompt, str) else str(prompt)
    password = bool(content.get("password"))
    if jupyter:
        return [], {"is_password": password, "prompt": prompt}
    # A real server echoes the prompt as stdout before asking.
    return ([["stdout", prompt]] if prompt else []), {"is_password": password}


def kernel_died_records(jupyter: bool, detail: str) -> list[Record]:
    """What a run reports when its inner kernel died under it: nothing in classic mode (a real
    server answers exit code 130 with an empty console), a named error in jupyter mode."""
    if not jupyter:
        return []
    evalue = f"the session's kernel died while running this cell ({detail}); the session is gone"
    return [["error", {"ename": "KernelDied", "evalue": evalue, "traceback": [f"KernelDied: {evalue}"]}]]


def record_size(record: Record) -> int:
    """Approximate bytes a record holds (for the per-run buffer bound)."""
    data = record[1]
    if isinstance(data, str):
        return len(data)
    if record[0] in STREAMS and isinstance(data, list):  # pending chunks of one stream record
        return sum(len(chunk) for chunk in data)
    try:
        return len(jsonio.dumps(data))
    except (TypeError, ValueError):
        return 1024


def mergeable(previous: Record, record: Record) -> bool:
    """Consecutive chunks of one stream are merged, as real servers do."""
    return previous[0] == record[0] and previous[0] in STREAMS
