"""Console records → Jupyter messages (pure translation), the media registry, coalescing."""

from __future__ import annotations

import base64

import pytest

from remote_kernel import protocol
from remote_kernel.kernel import outputs
from remote_kernel.kernel.outputs import OutputContext, StreamBuffer, coalesce, register_media_type, translate

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


@pytest.fixture
def ctx():
    return OutputContext(execution_count=7)


def test_streams(ctx):
    assert translate("stdout", "hi\n", ctx) == [("stream", {"name": "stdout", "text": "hi\n"})]
    assert translate("stderr", "oops", ctx) == [("stream", {"name": "stderr", "text": "oops"})]
    assert translate("stdout", "", ctx) == []


def test_png_data_uri_becomes_bare_base64_with_fallback(ctx):
    [(msg_type, content)] = translate("media", ["image/png", f"data:image/png;base64,{PNG}"], ctx)
    assert msg_type == "display_data"
    assert content["data"]["image/png"] == PNG
    assert content["data"]["text/plain"]
    assert content["metadata"] == {}


def test_svg_passes_as_text(ctx):
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    [(msg_type, content)] = translate("media", ["image/svg+xml", svg], ctx)
    assert msg_type == "display_data"
    assert content["data"]["image/svg+xml"] == svg
    assert "text/plain" in content["data"]


def test_svg_as_data_uri_is_decoded(ctx):
    svg = "<svg/>"
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    [(_, content)] = translate("media", ["image/svg+xml", uri], ctx)
    assert content["data"]["image/svg+xml"] == svg


def test_undecodable_binary_payload_is_a_text_line_not_a_crash(ctx):
    [(_, content)] = translate("media", ["image/png", "not base64 !!"], ctx)
    assert list(content["data"]) == ["text/plain"]


def test_html(ctx):
    [(msg_type, content)] = translate("html", "<b>x</b>", ctx)
    assert msg_type == "display_data"
    assert content["data"]["text/html"] == "<b>x</b>"
    assert content["data"]["text/plain"]
    assert "metadata" in content


def test_unknown_and_malformed_records_are_ignored(ctx):
    assert translate("log", ["x"], ctx) == []
    assert translate("completion", None, ctx) == []
    assert translate("media", "nonsense", ctx) == []
    assert translate("display", {"no": "data"}, ctx) == []


def test_registry_routes_media_types(ctx):
    seen = []

    def translator(data, c):
        seen.append((data, c))
        return [("display_data", {"data": {"text/plain": "custom"}, "metadata": {}, "transient": {}})]

    register_media_type("application/x-test-kind", translator)
    try:
        out = translate("media", ["application/x-test-kind", {"a": 1}], ctx)
    finally:
        outputs._MEDIA.pop("application/x-test-kind")
    assert seen == [({"a": 1}, ctx)]
    assert out[0][1]["data"]["text/plain"] == "custom"


def test_drawing_goes_to_the_drawing_translator(ctx):
    payload = [[0, "canvas", 20, 10, "#ffffffff", "#000000ff"]]
    from remote_kernel.drawing import codec

    data = codec.encode_commands(payload)
    out = translate("media", [protocol.MIME_SORNA_DRAWING, data], ctx)
    assert out and out[0][0] == "display_data"
    bundle = out[0][1]["data"]
    assert "text/plain" in bundle
    assert protocol.MIME_DRAWING_JSON in bundle


def test_translator_exception_does_not_escape(ctx):
    def broken(data, c):
        raise RuntimeError("boom")

    register_media_type("application/x-broken", broken)
    try:
        assert translate("media", ["application/x-broken", "x"], ctx) == []
    finally:
        outputs._MEDIA.pop("application/x-broken")


def test_extension_display_records(ctx):
    out = translate("display", {"output_type": "execute_result", "data": {"text/plain": "3"},
                                "metadata": {}, "execution_count": 99}, ctx)
    assert out == [("execute_result", {"data": {"text/plain": "3"}, "metadata": {}, "execution_count": 7})]
    out = translate("display", {"output_type": "display_data", "data": {"text/plain": "a"},
                                "metadata": {}, "transient": {"display_id": "d1"}}, ctx)
    assert out[0] == ("display_data", {"data": {"text/plain": "a"}, "metadata": {}, "transient": {"display_id": "d1"}})
    out = translate("display", {"output_type": "update_display_data", "data": {"text/plain": "b"},
                                "metadata": {}, "transient": {"display_id": "d1"}}, ctx)
    assert out[0][0] == "update_display_data"
    # an update without a display id cannot be applied: dropped, not sent malformed
    assert translate("display", {"output_type": "update_display_data", "data": {}, "transient": {}}, ctx) == []


def test_clear_and_error(ctx):
    assert translate("clear", {"wait": True}, ctx) == [("clear_output", {"wait": True})]
    [(msg_type, content)] = translate("error", {"ename": "ZeroDivisionError", "evalue": "division by zero",
                                                "traceback": ["tb"]}, ctx)
    assert msg_type == "error"
    assert content == {"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["tb"]}
    assert translate("error", "garbage", ctx)[0][1]["traceback"]


def test_coalesce_merges_only_consecutive_same_stream():
    msgs = [("stream", {"name": "stdout", "text": "a"}), ("stream", {"name": "stdout", "text": "b"}),
            ("stream", {"name": "stderr", "text": "c"}), ("display_data", {"data": {}}),
            ("stream", {"name": "stdout", "text": "d"})]
    assert coalesce(msgs) == [("stream", {"name": "stdout", "text": "ab"}), ("stream", {"name": "stderr", "text": "c"}),
                              ("display_data", {"data": {}}), ("stream", {"name": "stdout", "text": "d"})]


def test_stream_buffer_keeps_order_and_flushes_on_size():
    buf = StreamBuffer(max_chars=10)
    assert buf.push([("stream", {"name": "stdout", "text": "1234"})]) == []
    ready = buf.push([("display_data", {"data": {}})])
    assert ready == [("stream", {"name": "stdout", "text": "1234"}), ("display_data", {"data": {}})]
    chunks = [("stream", {"name": "stdout", "text": "x" * 4})] * 5
    ready = buf.push(chunks)
    assert ready and sum(len(c["text"]) for _, c in ready) >= 10
    assert "".join(c["text"] for _, c in ready + buf.flush()) == "x" * 20


def test_context_resets():
    ctx = OutputContext()
    ctx.cell["a"] = 1
    ctx.session["b"] = 2
    ctx.new_cell(3)
    assert ctx.cell == {} and ctx.session == {"b": 2} and ctx.execution_count == 3
    ctx.new_session()
    assert ctx.session == {}


def test_a_lossless_bundle_passes_as_the_inner_kernel_sent_it(ctx):
    out = translate("display", {"output_type": "display_data", "data": {"text/html": "<b>x</b>"},
                                "metadata": {}, "transient": {}}, ctx)
    assert out == [("display_data", {"data": {"text/html": "<b>x</b>"}, "metadata": {}, "transient": {}})]


def test_an_execute_result_keeps_its_display_id_for_later_updates(ctx):
    out = translate("display", {"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {},
                                "transient": {"display_id": "r1"}, "execution_count": 3}, ctx)
    assert out == [("execute_result", {"data": {"text/plain": "1"}, "metadata": {}, "execution_count": 7,
                                       "transient": {"display_id": "r1"}})]
