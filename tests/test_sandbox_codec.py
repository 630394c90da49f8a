"""The sandbox's fast JSON paths give the standard library's answers: `codec` reads and writes
what `json` does, and the copy-on-write schema-pair rewrite returns what a full rebuild does
without touching its input."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.sandbox import codec
from migrate.sandbox.rewrite import SCHEMA_NAME_KEY, _substitution, apply_schema_pairs

SCHEMAS = ["analytics_dev", "dev", '"odd"']
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["analytics_dev.orders", 'x "analytics_dev"."t"', "dev.a dev.b", "\ud800"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
keys = st.one_of(st.text(max_size=6), st.just(SCHEMA_NAME_KEY), st.just("sql"))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_codec_reads_what_json_reads(value: Any) -> None:
    """Any JSON text `json` writes (big integers, lone surrogates, odd floats) parses to the
    same value through the codec, from bytes and from str."""
    text = json.dumps(value, ensure_ascii=False)
    expected = repr(json.loads(text))
    assert repr(codec.loads(text)) == expected
    assert repr(codec.loads(text.encode("utf-8", "surrogatepass"))) == expected


@settings(max_examples=300, deadline=None)
@given(values)
def test_codec_writes_what_json_reads_back(value: Any) -> None:
    """What the codec writes reads back as the same value; without floats it is the very
    text `json` writes compactly (float exponents may be spelled differently)."""
    try:
        written = codec.dumps(value)
    except UnicodeEncodeError:
        return  # a lone surrogate cannot be UTF-8, as with json + encode
    assert repr(json.loads(written)) == repr(json.loads(json.dumps(value)))
    if "float" not in repr(type(value)) and not _has_float(value):
        assert written == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


@pytest.mark.parametrize("text", ["[NaN]", '{"a": Infinity}', "[-Infinity]", "[1] x", "{"])
def test_codec_refuses_what_json_parse_refuses(text: str) -> None:
    """NaN/Infinity literals and broken texts are ValueError, as the real server's JSON.parse
    refuses them."""
    with pytest.raises(ValueError):
        codec.loads(text)


def _rebuilt(data: Any, pairs: list[tuple[str, str]]) -> Any:
    """The rewrite as a full rebuild: every container copied, every string visited."""
    subs = [(r, t, _substitution(r, t)) for r, t in pairs if r]

    def text(value: str) -> str:
        for replace, _, substitute in subs:
            if replace in value:
                value = substitute(value)
        return value

    def walk(node: Any, key: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, None) if not isinstance(v, str) else text(v) for v in node]
        if isinstance(node, str):
            if key == SCHEMA_NAME_KEY:
                for replace, target, _ in subs:
                    if node == replace:
                        return target
            return text(node)
        return node

    return walk(data, None)


@settings(max_examples=300, deadline=None)
@given(values, st.lists(st.tuples(st.sampled_from(SCHEMAS), st.sampled_from(["prod", "a$b"]))))
def test_rewrite_shares_what_it_does_not_change(value: Any, pairs: list[tuple[str, str]]) -> None:
    """The copy-on-write rewrite equals the full rebuild and leaves its input as it was."""
    before = copy.deepcopy(value)
    result = apply_schema_pairs(value, pairs)
    assert repr(result) == repr(_rebuilt(before, pairs))
    assert repr(value) == repr(before)
