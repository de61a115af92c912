"""Property-based tests: whatever a remote sends, the kernel's translation never raises and only
ever produces outputs a notebook can store (validated against nbformat's schema)."""

from __future__ import annotations

import base64

import msgpack
import nbformat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_kernel import protocol
from remote_kernel.client.errors import BadResponse
from remote_kernel.client.loop import InputWanted, RunState
from remote_kernel.kernel.outputs import OutputContext, StreamBuffer, translate

json_scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=25)
mimes = st.sampled_from(["image/png", "image/jpeg", "image/svg+xml", "text/html", "text/plain",
                         "application/json", protocol.MIME_SORNA_DRAWING, "application/x-unknown"]) | st.text(max_size=30)
kinds = st.sampled_from(["stdout", "stderr", "media", "html", "display", "clear", "error", "log",
                         "completion"]) | st.text(max_size=12)

# records shaped like the real ones, with arbitrary insides
media_records = st.tuples(st.just("media"), st.tuples(mimes, json_values | st.text().map(
    lambda t: "data:image/png;base64," + base64.b64encode(t.encode()).decode())))
drawing_records = st.tuples(st.just("media"), st.tuples(st.just(protocol.MIME_SORNA_DRAWING), st.one_of(
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    st.lists(st.lists(json_scalars, max_size=7), max_size=6).map(
        lambda cmds: base64.b64encode(msgpack.packb(cmds, use_bin_type=True)).decode()),
    json_values.map(str))))
display_records = st.tuples(st.just("display"), st.fixed_dictionaries(
    {"output_type": st.sampled_from(["display_data", "execute_result", "update_display_data"]) | st.text(max_size=8),
     "data": st.dictionaries(mimes, json_values, max_size=3) | json_values,
     "metadata": json_values, "transient": json_values, "execution_count": json_values}))
any_record = st.one_of(st.tuples(kinds, json_values), media_records, drawing_records, display_records)

OUTPUT_TYPES = {"stream", "display_data", "update_display_data", "execute_result", "clear_output", "error"}


def assert_storable(msg_type: str, content: dict) -> None:
    assert msg_type in OUTPUT_TYPES
    assert isinstance(content, dict)
    if msg_type in ("clear_output", "update_display_data"):
        if msg_type == "update_display_data":
            assert content["transient"]["display_id"]
        return
    if msg_type == "execute_result":
        content = {**content, "execution_count": content.get("execution_count") or 1}
    output = nbformat.v4.output_from_msg({"msg_type": msg_type, "content": content, "header": {"msg_type": msg_type}})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[output])])
    nbformat.validate(nb)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_record, max_size=8))
def test_any_records_translate_to_storable_outputs(records):
    ctx = OutputContext()
    ctx.new_cell(3)
    buffer = StreamBuffer()
    for kind, data in records:
        messages = translate(kind, data, ctx)
        for msg_type, content in buffer.push(messages) + []:
            assert_storable(msg_type, content)
    for msg_type, content in buffer.flush():
        assert_storable(msg_type, content)


results = st.fixed_dictionaries({}, optional={
    "runId": st.text(max_size=40) | st.none(), "status": st.sampled_from(
        ["continued", "finished", "waiting-input", "build-finished", "clean-finished", "exec-timeout"]) | st.text(max_size=10),
    "exitCode": json_values, "options": json_values, "console": json_values | st.lists(st.tuples(kinds, json_values)),
    "cursor": json_values, "stdout": json_values, "stderr": json_values})


@settings(max_examples=300, deadline=None)
@given(st.lists(results, min_size=1, max_size=6), st.booleans())
def test_execute_loop_survives_any_result(sequence, resumable):
    state = RunState(mode="query", code="x", resumable=resumable)
    for result in sequence:
        state.request()
        try:
            events = state.handle(result)
        except BadResponse:
            return  # the one way the loop is allowed to refuse an answer: a typed error
        assert isinstance(events, list)
        if any(isinstance(e, InputWanted) for e in events):
            state.reply("an answer")
        if state.finished:
            return
