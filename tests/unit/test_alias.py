"""Aliases on the wire: only the deployment in the path or the top-level `model` changes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.relay.alias import body_with_model, path_with_deployment


def test_path_segment_is_replaced_and_the_rest_kept() -> None:
    assert path_with_deployment("/openai/deployments/gpt-4o/chat/completions?api-version=x&a=%2F",
                                "g") == "/openai/deployments/g/chat/completions?api-version=x&a=%2F"
    assert path_with_deployment("/openai/deployments/gpt%2D4o?x", "g") == \
        "/openai/deployments/g?x"
    assert path_with_deployment("/openai/v1/chat/completions", "g") == \
        "/openai/v1/chat/completions"


def test_only_the_top_level_model_string_changes() -> None:
    body = (b'{"a": "\\"model\\": \\"x\\"", "n": [1, {"model": "x"}], "model" :"x" ,'
            b'"z": -1.5e3}')
    assert body_with_model(body, "y-global") == body.replace(b'"model" :"x"',
                                                            b'"model" :"y-global"')


def test_bodies_it_cannot_read_pass_unchanged() -> None:
    for body in (b"", b"[]", b'{"model": 5}', b'{"model": "x"', b"not json", b'{"model" "x"}',
                 "{\"model\": \"x\"}".encode("utf-16")):
        assert body_with_model(body, "y") == body


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10)


@given(st.dictionaries(st.text(), json_values, max_size=5), st.text(min_size=1),
       st.booleans(), st.booleans())
def test_any_object_gets_the_new_model_and_keeps_everything_else(
        obj: dict[str, Any], model: str, ascii_only: bool, spaced: bool) -> None:
    obj = {**{k: v for k, v in obj.items() if k != "model"}, "model": "gpt-4o"}
    separators = (" , ", " : ") if spaced else (",", ":")
    body = json.dumps(obj, ensure_ascii=ascii_only, separators=separators).encode()
    rewritten = body_with_model(body, model)
    assert json.loads(rewritten) == {**obj, "model": model}
    # Everything around the value is byte-identical (the model member is last).
    prefix, _, suffix = body.rpartition(json.dumps("gpt-4o").encode())
    assert rewritten.startswith(prefix) and rewritten.endswith(suffix)
