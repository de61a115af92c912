"""The frontend's "Restart kernel" through the bridge: the remote kernel restarts in the same
session where the server can (variables go, files stay), and the first output says which way
it went (jupyter_client's restart_kernel, as JupyterLab does it)."""

from __future__ import annotations

import re

import pytest

import kernel_support as ks

pytestmark = pytest.mark.slow


def session_name(kc) -> str:
    reply, outputs, _ = ks.execute(kc, "%remote info", timeout=90)
    return re.search(r"^session: (\S+)$", ks.stdout_of(outputs), re.M).group(1)


def notes(outputs) -> str:
    return "".join(o["data"].get("text/plain", "") for o in outputs if o["msg_type"] == "display_data")


CHECK = "import os\nprint(os.path.exists('kept.txt'), 'x' in dir())"


def test_a_restart_restarts_the_remote_kernel_in_the_same_session(kernelspec_root):
    with ks.start_server() as server:
        with ks.running_kernel(ks.server_env(server)) as (km, kc):
            reply, _, _ = ks.execute(kc, "x = 1\nopen('kept.txt', 'w').write('here')", timeout=90)
            assert reply["status"] == "ok", reply
            before = session_name(kc)
            km.restart_kernel(now=False)
            kc.wait_for_ready(timeout=60)
            reply, outputs, _ = ks.execute(kc, CHECK, timeout=90)
            assert reply["status"] == "ok", (reply, outputs)
            assert ks.stdout_of(outputs) == "True False\n"  # files stay, variables are gone
            assert f"restarted in the same session ({before})" in notes(outputs)
            assert session_name(kc) == before
            reply, outputs, _ = ks.execute(kc, "1")
            assert "restarted" not in notes(outputs)  # said once


def test_on_a_private_server_a_restart_says_the_session_is_new_and_files_stay(kernelspec_root, tmp_path):
    with ks.running_kernel({}, unset=("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY"),
                           cwd=str(tmp_path)) as (km, kc):
        reply, _, _ = ks.execute(kc, "x = 1\nopen('kept.txt', 'w').write('here')", timeout=90)
        assert reply["status"] == "ok", reply
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=60)
        reply, outputs, _ = ks.execute(kc, CHECK, timeout=90)
        assert ks.stdout_of(outputs) == "True False\n"
        assert "restarted with a new private server and session; files in the working directory stay" in notes(outputs)
