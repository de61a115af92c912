"""The bridge kernel through the Jupyter messaging protocol (jupyter_kernel_test), with the
embedded server as its real peer: the kernelspec lives in a temporary JUPYTER_PATH, the server
is started in setUpClass, endpoint and keys reach the kernel through the environment."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

import jupyter_kernel_test
from jupyter_client.manager import start_new_kernel

import kernel_support as ks
from remote_kernel.install import install

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


class BridgeKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "remote-protocol-test"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    code_display_data = [
        {"code": f"from IPython.display import Image, display; display(Image(data=__import__('base64').b64decode('{PNG}'), format='png'))",
         "mime": "image/png"},
        {"code": "from IPython.display import SVG, display; "
                 "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"/>'))",
         "mime": "image/svg+xml"},
        {"code": "from IPython.display import HTML, display; display(HTML('<b>bold</b>'))", "mime": "text/html"},
    ]
    code_execute_result = [{"code": "6*7", "result": "42"}, {"code": "'a' + 'b'", "result": "'ab'"}]
    code_generate_error = "raise ValueError('boom')"
    completion_samples = [{"text": "zi", "matches": {"zip"}}, {"text": "impor", "matches": {"import"}}]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]
    code_inspect_sample = "print"
    code_clear_output = "from IPython.display import clear_output; print('x'); clear_output()"
    # history: kept by the bridge itself (remote_kernel/kernel/history.py)
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "6[*]7"  # exactly the execute_result sample: other tests share the history

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = Path(tempfile.mkdtemp(prefix="rk-proto-"))
        cls._server_cm = ks.start_server()
        cls.server = cls._server_cm.__enter__()
        cls._saved_env = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "BACKEND_ENDPOINT",
                                                          "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY")}
        # The kernelspec as a user gets it: `remote-kernel install --prefix DIR --image python
        # --endpoint URL`; the keys come from the environment at run time only.
        spec_dir = install(name=cls.kernel_name, image="python", endpoint=cls.server.url, prefix=str(cls._tmp))
        spec = json.loads((Path(spec_dir) / "kernel.json").read_text())
        assert cls.server.secret_key not in json.dumps(spec) and spec["interrupt_mode"] == "message"
        ks.prepend_jupyter_path(cls._tmp / "share" / "jupyter")
        os.environ.update(ks.server_env(cls.server))
        os.environ.pop("BACKEND_ENDPOINT")  # the endpoint comes from the kernelspec's argv
        try:
            cls.km, cls.kc = start_new_kernel(kernel_name=cls.kernel_name)
        except BaseException:
            cls._cleanup()
            raise
        # The first cell waits for the remote session; take that wait out of the 15 s budgets.
        cls.kc.execute_interactive("pass", timeout=60)
        # The remote completer's first call imports and indexes for seconds on a loaded machine,
        # past the bridge's short completion timeout (which answers empty rather than block).
        cls.kc.execute_interactive("_ = get_ipython().complete('zi')", timeout=60)

    @classmethod
    def _cleanup(cls) -> None:
        for key, value in cls._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cls._server_cm.__exit__(None, None, None)
        shutil.rmtree(cls._tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()
        finally:
            cls._cleanup()

    # Beyond the standard samples: the error is reported once on iopub, with the real fields.
    def test_error_fields_come_from_the_remote(self) -> None:
        self.flush_channels()
        reply, outputs = self.execute_helper("raise KeyError('nope')")
        content = reply["content"]
        self.assertEqual((content["status"], content["ename"]), ("error", "KeyError"))
        self.assertEqual([m["msg_type"] for m in outputs], ["error"])
        self.assertEqual(outputs[0]["content"]["ename"], "KeyError")

    def test_execute_result_counts_like_the_bridge(self) -> None:
        self.flush_channels()
        reply, outputs = self.execute_helper("1 + 1")
        results = [m for m in outputs if m["msg_type"] == "execute_result"]
        self.assertEqual(results[0]["content"]["execution_count"], reply["content"]["execution_count"])

    def test_kernel_info_tells_the_truth(self) -> None:
        self.flush_channels()
        self.kc.kernel_info()
        content = self.kc.get_shell_msg(timeout=15)["content"]
        self.assertEqual(content["implementation"], "remote_kernel")
        self.assertEqual(content["supported_features"], [])
        self.assertIn(self.server.url, content["banner"])
        self.assertEqual(content["language_info"]["pygments_lexer"], "ipython3")


if __name__ == "__main__":
    unittest.main()
