"""Synchronous client of the Backend.AI API (docs/PROTOCOL.md), plus our extensions."""

from remote_kernel.client import errors
from remote_kernel.client.api import Client, SessionRef
from remote_kernel.client.auth import BackendAIAuth
from remote_kernel.client.config import APIConfig
from remote_kernel.client.loop import Done, InputWanted, Record, RunState
from remote_kernel.client.transport import Transport

__all__ = [
    "APIConfig", "BackendAIAuth", "Client", "Done", "InputWanted", "Record", "RunState",
    "SessionRef", "Transport", "errors",
]
