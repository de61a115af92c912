"""Every language we install a kernelspec for runs on the embedded server too (issue 18): C, C++,
Lua and Node.js as programs (docs/PROTOCOL.md#programs-on-the-embedded-server), through the
real server over HTTP and through real bridge kernels.

A language whose compiler or interpreter is missing here is skipped, saying what to install (the
server's own ``GET /images`` answer).
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

import psutil

import kernel_support as ks
import server_fixture
from _procs import survivors
from remote_kernel.client import Done, InputWanted, Record, errors
from remote_kernel.kernel.language import language_info, match_language
from remote_kernel.server import images, programs
from remote_kernel.server.stdin_wait import StdinWatch

REPO = Path(__file__).resolve().parent.parent


def tool(language: str) -> str | None:
    return programs.for_language(language).find_tool(images.session_path())


def needs(language: str):
    program = programs.for_language(language)
    return pytest.mark.skipif(tool(language) is None, reason=f"no {program.display} toolchain here: "
                                                             f"install {program.install}")


# -- language_info: what JupyterLab highlights with -----------------------------------------------

# image of each kernelspec we ship → (file extension, CodeMirror mode, pygments lexer)
EXPECTED_LANGUAGE_INFO = {
    "c": (".c", "text/x-csrc", "c"),
    "cpp": (".cpp", "text/x-c++src", "cpp"),
    "lua": (".lua", "lua", "lua"),
    "nodejs": (".js", "javascript", "javascript"),
    "r-base": (".r", "r", "r"),
    "julia": (".jl", "julia", "julia"),
}


def shipped_kernelspecs() -> dict[str, dict]:
    """image → kernel.json of every kernelspec template in kernelspecs/ that names an image."""
    found = {}
    for path in sorted((REPO / "kernelspecs").glob("*/kernel.json")):
        spec = json.loads(path.read_text())
        image = spec["metadata"]["remote_kernel"]["image"]
        if image:
            found[image] = spec
    return found


def test_every_shipped_language_kernelspec_is_checked_here():
    assert set(shipped_kernelspecs()) == set(EXPECTED_LANGUAGE_INFO)


@pytest.mark.parametrize("image", sorted(EXPECTED_LANGUAGE_INFO))
def test_language_info_matches_the_kernelspec_language(image):
    from pygments.lexers import get_lexer_by_name

    spec = shipped_kernelspecs()[image]
    info = language_info(image)
    extension, mode, lexer = EXPECTED_LANGUAGE_INFO[image]
    assert (info["file_extension"], info["codemirror_mode"], info["pygments_lexer"]) == (extension, mode, lexer)
    assert info["name"].lower() == spec["language"].lower()
    get_lexer_by_name(info["pygments_lexer"])  # pygments knows the lexer (nbconvert's highlighting)


@pytest.mark.parametrize("image, language", [
    ("lua", "lua"), ("lua:5.4", "lua"), ("cr.backend.ai/multiarch/lua:5.3-alpine", "lua"),
    ("lablup/kernel-lua:5.3", "lua"), ("c", "c"), ("gcc:12", "c"), ("cpp", "c++"), ("lablup/kernel-cpp", "c++"),
    ("nodejs", "javascript"), ("node:20", "javascript"), ("r-base", "r"), ("julia:1.10", "julia"),
    ("cobol:74", None),
])
def test_images_name_their_language(image, language):
    assert match_language(image) == language


# -- "blocked reading stdin", read from /proc of real programs ---------------------------------------


class Program:
    """A real process with a terminal as stdin (as program_engine.py gives it) and stdout piped."""

    def __init__(self, argv: list[str], cwd: str | None = None):
        self.terminal, self.stdin = pty.openpty()
        tty.setraw(self.stdin)
        self.proc = subprocess.Popen(argv, stdin=self.stdin, stdout=subprocess.PIPE, cwd=cwd,
                                     start_new_session=True)
        self.watch = StdinWatch(self.stdin)

    def read_line(self, timeout: float = 30) -> str:
        """The next line it prints (each is flushed whole)."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"{self.proc.args} printed nothing within {timeout} s"
        line = self.proc.stdout.readline().decode()
        assert line, f"{self.proc.args} ended without output"
        return line

    def answer(self, text: str) -> None:
        os.write(self.terminal, text.encode() + b"\n")

    def wait_blocked(self, timeout: float = 30):
        """The watch's verdict once it says blocked (polled: the kernel offers no event for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            blocked = self.watch.blocked(self.proc.pid)
            if blocked is not None:
                return blocked
            time.sleep(0.01)
        raise AssertionError(f"{self.proc.args} never seen blocked on its input")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        os.close(self.terminal)
        os.close(self.stdin)


def settled_verdicts(program: Program, count: int = 20) -> list:
    """The watch's verdicts, sampled ``count`` times."""
    return [program.watch.blocked(program.proc.pid) for _ in range(count)]


@needs("lua")
def test_a_lua_read_is_blocked_on_input_and_a_busy_loop_is_not():
    program = Program([tool("lua"), "-e", 'print("busy"); io.stdout:flush(); local n = 0; '
                                          'while true do n = n + 1 end'])
    try:
        assert program.read_line() == "busy\n"
        assert settled_verdicts(program) == [None] * 20  # computing, never reading
    finally:
        program.close()
    program = Program([tool("lua"), "-e", 'print("asking"); io.stdout:flush(); print("got " .. io.read())'])
    try:
        assert program.read_line() == "asking\n"
        first = program.wait_blocked()
        program.answer("yoda")
        assert program.read_line() == "got yoda\n"
        assert first.switches >= 0
    finally:
        program.close()


@needs("lua")
def test_sleeping_or_waiting_for_a_child_is_not_waiting_for_input():
    program = Program([tool("lua"), "-e", 'print("sleeping"); io.stdout:flush(); os.execute("sleep 60")'])
    try:
        assert program.read_line() == "sleeping\n"
        assert settled_verdicts(program) == [None] * 20
    finally:
        os.killpg(program.proc.pid, 9)
        program.close()


@needs("lua")
def test_a_child_reading_the_input_counts():
    program = Program([tool("lua"), "-e", 'print("spawning"); io.stdout:flush(); os.execute("head -n 1")'])
    try:
        assert program.read_line() == "spawning\n"
        program.wait_blocked()  # `head`, the child, reads the terminal
        program.answer("through")
        assert program.read_line() == "through\n"
    finally:
        os.killpg(program.proc.pid, 9)
        program.close()


@needs("javascript")
def test_node_readline_is_blocked_on_input_and_a_pending_timer_is_not():
    script = ('const rl = require("readline").createInterface({input: process.stdin});\n'
              'console.log("asking");\n'
              'rl.question("", (name) => { rl.close(); console.log("got " + name);\n'
              '  setTimeout(() => console.log("late"), 60000); });\n')
    program = Program([tool("javascript"), "-e", script])
    try:
        assert program.read_line() == "asking\n"
        program.wait_blocked()  # in epoll_wait, the terminal among what it waits for
        program.answer("yoda")
        assert program.read_line() == "got yoda\n"
        # input closed, a timer pending: the loop waits with a timeout, not for input
        assert settled_verdicts(program) == [None] * 20
    finally:
        program.close()


@needs("javascript")
def test_a_node_busy_loop_is_not_waiting_for_input():
    program = Program([tool("javascript"), "-e", 'process.stdin.on("data", () => {}); console.log("busy"); '
                                                 'for (;;) {}'])
    try:
        assert program.read_line() == "busy\n"
        assert settled_verdicts(program) == [None] * 20
    finally:
        program.close()


# -- the embedded server over HTTP -----------------------------------------------------------------


def stdout_text(console: list) -> str:
    return "".join(data for kind, data in console if kind == "stdout")


def follow(client, name: str, result: dict, console: list, until) -> dict:
    """Send ``continue`` until ``until(result)``; every record goes to ``console``."""
    while not until(result):
        assert result["status"] == "continued", result
        result = client.execute(name, "continue", run_id=result["runId"])
        console += result["console"]
    return result


@pytest.fixture(scope="module")
def listing(server):
    return server.client().images()


def program_image(listing: dict, language: str) -> str:
    """The image that runs ``language`` as programs on this server, or skip saying why not."""
    program = programs.for_language(language)
    for entry in listing["unavailable"]:
        if entry["image"] == program.image:
            pytest.skip(f"{program.display} is not installed here: install {entry['install']}")
    for entry in listing["images"]:
        if entry["image"] == program.image and entry["runs"] != images.RUNS_PROGRAM:
            pytest.skip(f"a Jupyter kernel ({entry['kernelspec']}) runs {program.display} here, not programs")
    return program.image


def test_the_server_lists_what_it_runs(server, listing):
    runs = {entry["image"]: entry for entry in listing["images"]}
    assert runs["python"]["runs"] == images.RUNS_KERNEL
    missing = {entry["image"]: entry["install"] for entry in listing["unavailable"]}
    for program in programs.PROGRAMS:
        assert (program.image in runs) != (program.image in missing), program
        if program.image in missing:
            assert missing[program.image] == program.install
        elif runs[program.image]["runs"] == images.RUNS_PROGRAM:
            assert runs[program.image]["command"] in program.tools
    assert server.client().server_info["extensions"].count("image-list") == 1


def test_an_unknown_image_is_not_found_and_the_answer_names_what_runs(server, listing):
    with pytest.raises(errors.ImageNotFound) as info:
        server.client().create_session("cobol:74", name="cobol-session")
    for entry in listing["images"]:
        assert entry["image"] in str(info.value)


def test_the_sdk_query_example_get_or_create_lua_and_print(server, listing):
    """The official SDK's example: ``Session.get_or_create('lua')``, then the query loop."""
    image = program_image(listing, "lua")
    client = server.client()
    session = client.create_session(image, name="sdk-example-lua", reuse=True)
    try:
        again = client.create_session(image, name="sdk-example-lua", reuse=True)
        assert (again.id, again.created) == (session.id, False)
        console: list = []
        result = client.execute(session.name, "query", 'print("hello world")')
        console += result["console"]
        result = follow(client, session.name, result, console, lambda r: r["status"] == "finished")
        assert result["exitCode"] == 0
        assert console == [["stdout", "hello world\n"]]
    finally:
        client.destroy_session(session.name)


def test_the_exit_code_is_the_programs(server, listing):
    image = program_image(listing, "c")
    client = server.client()
    session = client.create_session(image, name="exit-code-c")
    try:
        code = '#include <stdio.h>\nint main(void) { printf("leaving\\n"); return 3; }\n'
        console: list = []
        result = client.execute(session.name, "query", code)
        console += result["console"]
        result = follow(client, session.name, result, console, lambda r: r["status"] == "finished")
        assert (result["exitCode"], stdout_text(console)) == (3, "leaving\n")
    finally:
        client.destroy_session(session.name)


def test_waiting_input_only_once_the_program_reads(server, listing, tmp_path):
    """A busy program is not waiting for input; the same program blocked reading is, and the
    answer reaches it."""
    image = program_image(listing, "lua")
    gate = tmp_path / "gate"
    client = server.client()
    session = client.create_session(image, name="input-lua")
    try:
        code = (f'print("busy")\nwhile not io.open("{gate}") do end\n'
                'io.write("name? ")\nprint("hello " .. io.read())\n')
        console: list = []
        result = client.execute(session.name, "query", code)
        console += result["console"]
        run_id = result["runId"]
        result = follow(client, session.name, result, console, lambda r: "busy" in stdout_text(console))
        # a whole long poll (the server holds it while nothing happens) with the program busy
        result = client.execute(session.name, "continue", run_id=run_id)
        assert (result["status"], result["console"]) == ("continued", []), result
        gate.write_text("open")
        result = follow(client, session.name, result, console, lambda r: r["status"] == "waiting-input")
        assert stdout_text(console) == "busy\nname? "  # the prompt comes before the question
        result = client.execute(session.name, "input", "yoda", run_id=run_id)
        console += result["console"]
        result = follow(client, session.name, result, console, lambda r: r["status"] == "finished")
        assert (result["exitCode"], stdout_text(console)) == (0, "busy\nname? hello yoda\n")
    finally:
        client.destroy_session(session.name)


def test_a_program_session_answers_the_comm_calls_without_comms(server, listing):
    """What a bridge asks of every session with our jupyter-comms extension."""
    image = program_image(listing, "lua")
    client = server.client()
    session = client.create_session(image, name="comms-lua")
    try:
        assert client.events(session.name, 0, 0)["events"] == []
        assert client.comm_info(session.name) == {"status": "ok", "comms": {}}
        with pytest.raises(errors.InvalidRequestError) as info:
            client.send_comm(session.name, {"msg_type": "comm_open", "content": {
                "comm_id": "c1", "target_name": "jupyter.widget", "data": {}}})
        assert "Lua programs" in str(info.value)
    finally:
        client.destroy_session(session.name)


def test_a_missing_toolchain_is_image_not_found_saying_what_to_install(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    srv = server_fixture.start_server(str(tmp_path / "root"), env={"PATH": str(empty)})
    try:
        line = srv.proc.stdout.readline()  # after the URL and the access key
        assert line.startswith("images: python") and "lua (install lua5.4" in line, line
        client = srv.client()
        missing = {entry["image"]: entry["install"] for entry in client.images()["unavailable"]}
        assert {"c", "cpp", "lua", "nodejs"} <= set(missing)
        with pytest.raises(errors.ImageNotFound) as info:
            client.create_session("lua", name="lua-missing")
        assert "install lua5.4" in str(info.value)
        assert client.images()["unavailable"]  # and it keeps serving
    finally:
        assert srv.stop() == 0


# -- through the bridge ----------------------------------------------------------------------------


class Case:
    def __init__(self, language: str, hello: str, error: str, ename: str, error_says: str, ask: str, spin: str,
                 batch_files: dict[str, str], batch_says: str):
        self.language, self.hello, self.error, self.ename, self.error_says = language, hello, error, ename, error_says
        self.ask, self.spin, self.batch_files, self.batch_says = ask, spin, batch_files, batch_says

    @property
    def image(self) -> str:
        return programs.for_language(self.language).image


def compiled_case(language: str, compiler: str, extension: str, hello: str, ask: str, spin: str) -> Case:
    return Case(
        language, hello=hello, error="int main(void) { return undefined_name; }\n", ename="CompileError",
        error_says="undefined_name", ask=ask, spin=spin,
        batch_files={"Makefile": f"main: main{extension}\n\t{compiler} -O2 -o main main{extension}\n",
                     f"main{extension}": hello.replace("hello world", "built by make")},
        batch_says=f"{compiler} -O2 -o main main{extension}\nbuilt by make\n")  # make's echo, then ./main


CASES = {
    "c": compiled_case(
        "c", "gcc", ".c",
        hello='#include <stdio.h>\nint main(void) { printf("hello world\\n"); return 0; }\n',
        ask='#include <stdio.h>\nint main(void) {\n  char name[64];\n  printf("name? ");\n'
            '  if (scanf("%63s", name) != 1) return 2;\n  printf("hello %s\\n", name);\n  return 0;\n}\n',
        spin='#include <stdio.h>\nint main(void) {\n  volatile unsigned long n = 0;\n  printf("spinning\\n");\n'
             '  for (;;) n++;\n}\n'),
    "c++": compiled_case(
        "c++", "g++", ".cpp",
        hello='#include <iostream>\nint main() { std::cout << "hello world" << std::endl; }\n',
        ask='#include <iostream>\n#include <string>\nint main() {\n  std::string name;\n'
            '  std::cout << "name? ";\n  std::cin >> name;\n  std::cout << "hello " << name << std::endl;\n}\n',
        spin='#include <iostream>\nint main() {\n  volatile unsigned long n = 0;\n'
             '  std::cout << "spinning" << std::endl;\n  for (;;) n++;\n}\n'),
    "lua": Case(
        "lua", hello='print("hello world")\n', error="undefined_function()\n", ename="RuntimeError",
        error_says="attempt to call a nil value (global 'undefined_function')",
        ask='io.write("name? ")\nprint("hello " .. io.read())\n', spin='print("spinning")\nwhile true do end\n',
        batch_files={"Makefile": "all:\n\t@echo made by make\n", "main.lua": 'print("batch lua")\n'},
        batch_says="made by make\nbatch lua\n"),
    "javascript": Case(
        "javascript", hello='console.log("hello world");\n', error="undefinedFunction();\n", ename="ReferenceError",
        error_says="undefinedFunction is not defined",
        ask='const rl = require("readline").createInterface({input: process.stdin, output: process.stdout});\n'
            'rl.question("name? ", (name) => { console.log("hello " + name); rl.close(); });\n',
        spin='console.log("spinning");\nfor (;;) {}\n',
        batch_files={"Makefile": "all:\n\t@echo made by make\n", "main.js": 'console.log("batch node");\n'},
        batch_says="made by make\nbatch node\n"),
}


@pytest.fixture(scope="module")
def bridge_kernelspecs(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("language-kernelspecs")
    for case in CASES.values():
        ks.write_kernelspec(root, name=f"remote-test-{case.image}", image=case.image, endpoint=server.url)
    with ks.on_jupyter_path(root):
        yield root


@pytest.fixture(scope="module", params=sorted(CASES))
def bridge(request, server, listing, bridge_kernelspecs):
    """(case, client) of a bridge kernel running the language's image on the embedded server."""
    case = CASES[request.param]
    program_image(listing, case.language)
    with ks.running_kernel(ks.server_env(server), name=f"remote-test-{case.image}") as (_km, kc):
        yield case, kc


@pytest.mark.slow
def test_hello_world(bridge):
    case, kc = bridge
    reply, outputs, _ = ks.execute(kc, case.hello)
    assert reply["status"] == "ok", reply
    assert ks.stdout_of(outputs) == "hello world\n"


@pytest.mark.slow
def test_an_error_replies_with_the_compilers_or_runtimes_message(bridge):
    case, kc = bridge
    reply, outputs, _ = ks.execute(kc, case.error)
    assert reply["status"] == "error" and reply["ename"] == case.ename, reply
    assert case.error_says in ks.stderr_of(outputs)
    assert case.error_says in reply["evalue"]


@pytest.mark.slow
def test_a_line_of_input_is_asked_of_the_frontend(bridge):
    case, kc = bridge
    reply, outputs, requests = ks.execute(kc, case.ask, allow_stdin=True, stdin_answers=["yoda"])
    assert reply["status"] == "ok", reply
    assert len(requests) == 1, requests
    assert ks.stdout_of(outputs) == "name? hello yoda\n"


@pytest.mark.slow
def test_interrupt_stops_an_endless_loop(bridge):
    case, kc = bridge
    msg_id = kc.execute(case.spin)
    ks.wait_for_output(kc, msg_id, "spinning", timeout=60)  # it runs, and its output streamed
    ks.interrupt_request(kc)
    reply, _, _ = ks.collect(kc, msg_id, timeout=60)
    assert reply is not None, "the cell did not end after the interrupt"
    assert (reply["status"], reply["ename"]) == ("error", "KeyboardInterrupt"), reply
    reply, outputs, _ = ks.execute(kc, case.hello)  # the session goes on
    assert reply["status"] == "ok" and ks.stdout_of(outputs) == "hello world\n"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="no make here: install make")
def test_a_batch_run_builds_with_the_makefile_and_runs(bridge, tmp_path):
    case, kc = bridge
    for name, text in case.batch_files.items():
        (tmp_path / name).write_text(text)
    upload = "\n".join(f"%remote upload {tmp_path / name} {name}" for name in case.batch_files)
    reply, _, _ = ks.execute(kc, upload)
    assert reply["status"] == "ok", reply
    reply, outputs, _ = ks.execute(kc, "%%remote batch")  # build and exec "*": the language's defaults
    assert reply["status"] == "ok", (reply, outputs)
    assert ks.stdout_of(outputs).endswith(case.batch_says), outputs


@pytest.mark.slow
def test_a_bridge_without_an_endpoint_runs_lua_on_its_private_server(tmp_path):
    """The issue's case: ``remote-kernel install --all`` then a Lua cell, with nothing configured."""
    if tool("lua") is None:
        pytest.skip(f"no Lua interpreter here: install {programs.for_language('lua').install}")
    ks.write_kernelspec(tmp_path, name="remote-test-private-lua", image="lua")
    with ks.on_jupyter_path(tmp_path), ks.running_kernel({}, name="remote-test-private-lua",
                                                         unset=("BACKEND_ENDPOINT",)) as (_km, kc):
        reply, outputs, _ = ks.execute(kc, 'print("hello from lua")')
        assert reply["status"] == "ok", (reply, outputs)
        assert ks.stdout_of(outputs).endswith("hello from lua\n"), outputs


def test_what_a_program_leaves_running_ends_with_it(server, listing, tmp_path):
    image = program_image(listing, "lua")
    pid_file = tmp_path / "pid"
    client = server.client()
    session = client.create_session(image, name="leftover-lua")
    try:
        # a child in the background that outlives the program
        code = f'os.execute("sleep 600 & echo $! > {pid_file}")\nprint("left")\n'
        console: list = []
        result = client.execute(session.name, "query", code)
        console += result["console"]
        follow(client, session.name, result, console, lambda r: r["status"] == "finished")
        child = psutil.Process(int(pid_file.read_text()))
        assert survivors([child], timeout=30) == [], "the program's background child outlived it"
    finally:
        client.destroy_session(session.name)
