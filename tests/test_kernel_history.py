"""history_request through jupyter_client: the bridge keeps the cells' history itself, so a
console's up-arrow works, also after a kernel restart (a new history session, as in IPython)."""

from __future__ import annotations

import pytest

import kernel_support as ks

pytestmark = pytest.mark.slow


def history(kc, **request) -> list:
    msg_id = kc.history(raw=True, output=False, **request)
    reply = ks.shell_reply(kc, msg_id)["content"]
    assert reply["status"] == "ok", reply
    return reply["history"]


def test_the_last_cells_come_back_across_a_kernel_restart(kernelspec_root):
    with ks.start_server() as server:
        with ks.running_kernel(ks.server_env(server)) as (km, kc):
            for code in ("a = 1", "b = a + 1", "print(b)"):
                reply, _, _ = ks.execute(kc, code, timeout=90)
                assert reply["status"] == "ok", reply
            ks.execute(kc, "secret = 1", silent=True)  # silent cells are not history
            before = history(kc, hist_access_type="tail", n=3)
            assert [entry[2] for entry in before] == ["a = 1", "b = a + 1", "print(b)"]
            [(session, line, _)] = history(kc, hist_access_type="search", pattern="b = *")

            km.restart_kernel(now=False)
            kc.wait_for_ready(timeout=60)
            reply, _, _ = ks.execute(kc, "c = 3", timeout=90)
            after = history(kc, hist_access_type="tail", n=4)
            assert [entry[2] for entry in after] == ["a = 1", "b = a + 1", "print(b)", "c = 3"]
            assert after[-1][0] > session  # the restarted kernel is a new session of the same history
            assert history(kc, hist_access_type="range", session=session, start=line, stop=line + 1) == \
                [[session, line, "b = a + 1"]]
