"""``APIProblem``: a failure the API reports as problem+json (docs/PROTOCOL.md#errors).

Every layer raises it with the API's problem slug; the base handler turns it into the answer."""

from __future__ import annotations

from remote_kernel import protocol


class APIProblem(Exception):
    def __init__(self, status: int, slug: str, title: str, msg: str | None = None, data: dict | None = None):
        super().__init__(f"{status} {slug}: {title}" + (f" ({msg})" if msg else ""))
        self.status = status
        self.slug = slug
        self.title = title
        self.msg = msg
        self.data = data

    def problem(self) -> dict:
        """The problem+json body."""
        body = {"type": protocol.PROBLEM_BASE + self.slug, "title": self.title}
        if self.msg:
            body["msg"] = self.msg
        if self.data:
            body["data"] = self.data
        return body


def bad_params(msg: str, title: str = "Missing or invalid API parameters.") -> APIProblem:
    return APIProblem(400, "invalid-api-params", title, msg)


def session_not_found(name: str, family: str = "/session") -> APIProblem:
    slug = "kernel-not-found" if family == "/kernel" else "session-not-found"
    return APIProblem(404, slug, "No such session.", f"session {name!r} not found")
