from __future__ import annotations

import json

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.relay import ratelimit
from proxy.relay.usage import RejectionMemory, read_intent, rejects_stream_options, with_usage


def test_non_stream_body_is_not_parsed_or_changed() -> None:
    intent = read_intent(b'{"messages":[]}', need_model=False)
    assert not intent.stream and with_usage(intent) is None


def test_stream_without_usage_gets_include_usage_and_keeps_other_fields() -> None:
    body = {"messages": [{"role": "user", "content": "héllo"}], "stream": True,
            "temperature": 0.7, "stream_options": {"include_obfuscation": False}}
    intent = read_intent(json.dumps(body).encode(), need_model=False)
    assert intent.stream and not intent.wants_usage
    rewritten = json.loads(with_usage(intent) or b"")
    assert rewritten == {**body, "stream_options": {"include_obfuscation": False,
                                                    "include_usage": True}}


def test_usage_is_inserted_without_re_encoding_a_single_client_byte() -> None:
    # Number formats, escapes, key order and spacing as the client wrote them.
    body = (b' {"messages": [{"role": "user", "content": "h\\u00e9llo \\"q\\""}],\n'
            b' "temperature": 1e-5, "max_tokens": 10.0, "stream": true}')
    rewritten = with_usage(read_intent(body, need_model=False)) or b""
    member = b'"stream_options":{"include_usage":true},'
    assert rewritten == b' {' + member + body[2:]
    assert json.loads(rewritten) == {**json.loads(body),
                                     "stream_options": {"include_usage": True}}


def test_bodies_not_in_plain_utf8_are_re_encoded_with_usage() -> None:
    for body in ('\ufeff{"stream":true}'.encode(), '{"stream":true}'.encode("utf-16")):
        rewritten = with_usage(read_intent(body, need_model=True)) or b""
        assert json.loads(rewritten) == {"stream": True,
                                         "stream_options": {"include_usage": True}}


def test_null_or_odd_stream_options() -> None:
    rewritten = with_usage(read_intent(b'{"stream":true,"stream_options":null}',
                                       need_model=False)) or b""
    assert json.loads(rewritten)["stream_options"] == {"include_usage": True}
    assert with_usage(read_intent(b'{"stream":true,"stream_options":[1]}',
                                  need_model=False)) is None


def test_client_that_asked_for_usage_is_left_alone() -> None:
    body = b'{"stream":true,"stream_options":{"include_usage":true},"model":"m"}'
    intent = read_intent(body, need_model=True)
    assert intent.wants_usage and intent.model == "m" and with_usage(intent) is None


def test_invalid_json_is_left_for_the_upstream_to_judge() -> None:
    intent = read_intent(b'{"stream": true,', need_model=True)
    assert not intent.stream and with_usage(intent) is None


def test_rejection_detection_and_bounded_memory() -> None:
    assert rejects_stream_options(
        400, b'{"error":{"message":"Unrecognized request argument supplied: stream_options"}}')
    assert not rejects_stream_options(400, b'{"error":{"code":"content_filter"}}')
    memory = RejectionMemory(limit=2)
    for i in range(3):
        memory.add(("u", f"d{i}", "v"))
    assert ("u", "d0", "v") not in memory and ("u", "d2", "v") in memory


def h(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def test_retry_after_prefers_milliseconds_like_openai_python() -> None:
    assert ratelimit.retry_after(h(retry_after_ms="1500", retry_after="6")) == 1.5
    assert ratelimit.retry_after(h(retry_after="6")) == 6.0
    assert ratelimit.retry_after(h(retry_after="Wed, 21 Oct 2015 07:28:10 GMT"),
                                 now=1445412480.0) == 10.0
    assert ratelimit.retry_after(h(retry_after="soon")) is None
    assert ratelimit.retry_after(h()) is None


def test_remaining_headers_parsed_and_bad_values_ignored() -> None:
    assert ratelimit.remaining(h(x_ratelimit_remaining_requests="288",
                                 x_ratelimit_remaining_tokens="-1")) == {"requests": 288}
