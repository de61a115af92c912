"""A mistake in the user's configuration explains itself in the first cell instead of killing
the kernel before kernel_info (the bridge on its private embedded server, started by
jupyter_client with a config file of the user's)."""

from __future__ import annotations

import os

import pytest
from jupyter_client.manager import KernelManager

import kernel_support as ks

pytestmark = pytest.mark.slow


def test_a_bad_value_in_the_config_file_is_explained_in_the_first_cell(kernelspec_root, tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "remote_kernel_config.py").write_text(
        'c.RemoteKernel.streaming = "ws"\nc.RemoteKernel.interrupt_grace = 2.5\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    env["JUPYTER_CONFIG_DIR"] = str(config_dir)
    km = KernelManager(kernel_name=ks.KERNEL_NAME)
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)  # kernel_info answered: the kernel did not die
        reply, outputs, _ = ks.execute(kc, "print('ran')", timeout=90)
        assert reply["status"] == "ok", (reply, outputs)
        assert ks.stdout_of(outputs) == "ran\n"
        warning = ks.stderr_of(outputs)
        assert "remote_kernel configuration: c.RemoteKernel.streaming = 'ws' is not valid" in warning
        assert "the default is used" in warning
        reply, outputs, _ = ks.execute(kc, "print('again')", timeout=30)
        assert "configuration" not in ks.stderr_of(outputs)  # said once
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
