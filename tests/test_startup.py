"""How a session's start is read and told (remote_kernel/kernel/startup.py, pure)."""

from __future__ import annotations

from remote_kernel.kernel.startup import REQUESTED, StartupStatus, describe, poll_interval, status_of


def test_the_status_and_the_servers_words_for_it_are_read_from_either_spelling():
    assert status_of({"status": "pulling", "statusInfo": " pulling image python: 40% "}) == \
        StartupStatus("PULLING", "pulling image python: 40%")
    assert status_of({"status": "PENDING", "status_info": "waiting for resources"}).info == "waiting for resources"
    assert status_of({"kernelId": "x"}) is None  # an older server's answer: it runs once answered
    assert status_of({"status": ""}) is None
    assert status_of({"status": "PENDING", "statusInfo": "None"}).info == ""  # a manager's str(None)


def test_running_and_ended_statuses():
    assert StartupStatus("RUNNING").running and not StartupStatus("PENDING").running
    assert all(StartupStatus(s).failed for s in ("ERROR", "CANCELLED", "TERMINATED"))
    assert not StartupStatus("PULLING").failed


def test_the_progress_line_names_the_session_the_status_and_the_wait():
    line = describe("rk-1", "python:3.11", StartupStatus("PULLING", "pulling image: 40%", started_at=100.0), 112.4)
    assert line == "remote session rk-1 (python:3.11): PULLING: pulling image: 40% — 12 s"
    assert describe("rk-1", "lua", StartupStatus(REQUESTED, "", 5.0), 5.0) == "remote session rk-1 (lua): requested — 0 s"


def test_the_status_is_asked_for_soon_at_first_then_less_often():
    assert poll_interval(0.1) < poll_interval(5) < poll_interval(60) == 2.0
