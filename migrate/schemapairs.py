"""Schema pairs: which names a dashboard's pairs rewrite, how often, and whether a copy matches.

A pair `replace → target` asks the server to rewrite schema name `replace` in SQL text and in
structured fields. `SchemaRewriter` states the matching rule; the rest counts occurrences (a
pair that matches nothing is likely a typo), proves a target copy equal to its source cheaply,
and gives comparison one canonical name per group of chained pairs. The counting walk recurses,
one frame per level, within `jsontext.MAX_DEPTH` (deeper values raise `nesting_error`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from migrate.jsontext import MAX_DEPTH, nesting_error
from migrate.models import SchemaPair

# Keys whose whole string value is a schema name (docs/databrain-api.md: inputFields.schemaName).
SCHEMA_KEYS: Final = frozenset({"schemaName", "schema", "schema_name"})


def merge_schema_pairs(
    plan_pairs: Sequence[SchemaPair], dashboard_pairs: Sequence[SchemaPair]
) -> tuple[SchemaPair, ...]:
    """The dashboard's pairs, then the plan's whose `replace` the dashboard did not override.

    Within each list the first pair for a `replace` wins; pairs with replace == target are no-ops
    and dropped.
    """
    merged: dict[str, SchemaPair] = {}
    for pair in (*dashboard_pairs, *plan_pairs):
        merged.setdefault(pair.replace, pair)
    return tuple(pair for pair in merged.values() if pair.replace != pair.target)


def _quoted_schema_regex(names: Sequence[str]) -> re.Pattern[str]:
    """The reference rule: a name, whole word, optionally quoted (same quote both sides), `.`."""
    return re.compile(
        r"(?<![\w$])(?P<q>[\"`]?)(?P<name>" + "|".join(map(re.escape, names)) + r")(?P=q)(?=\.)"
    )


def _name_first_schema_regex(names: Sequence[str]) -> re.Pattern[str]:
    """The same rule as `_quoted_schema_regex` for quote-free names, matching the name only.

    The pattern starts with the names, so the regex engine skips ahead to them instead of
    trying lookbehinds at every character (six times faster on SQL). Per name `n`, after it:
    bare (`n` not after a word character, then `.`), or between two equal quotes (the opening
    one not after a word character) then `.`. Replacing the name alone leaves the quotes as
    they were, which is what the reference rule writes back.
    """
    branches = []
    for name in names:
        e = re.escape(name)
        branches.append(
            f"{e}(?:(?<![\\w$]{e})(?=\\.)"
            f'|(?<="{e})(?<![\\w$]"{e})(?="\\.)'
            f"|(?<=`{e})(?<![\\w$]`{e})(?=`\\.))"
        )
    return re.compile("|".join(branches))


class SchemaRewriter:
    """Rewrites schema names per a name → replacement table, counting what it touched.

    A name matches inside any string when it is a whole word followed by `.`
    (`analytics_dev.orders`, `FROM analytics_dev.orders o`), also double-quoted or
    backticked (`"analytics_dev"."orders"`); and as the whole value
    of a `schemaName`/`schema`/`schema_name` key. Matching is case-sensitive: SQL folds
    unquoted case differently per database, so we do not guess.
    """

    def __init__(self, table: Mapping[str, str]) -> None:
        # Identity entries stay: they change nothing but are still counted.
        self.table = {name: new for name, new in table.items() if name}
        self.counts: dict[str, int] = dict.fromkeys(self.table, 0)
        # Longest first, so `sales_dev` wins over `sales` at the same position.
        names = sorted(self.table, key=lambda n: (-len(n), n))
        self._regex: re.Pattern[str] | None = None
        # With one name, a literal replacement and subn's count: no Python call per match.
        self._single: tuple[str, str] | None = None
        self._name_only = False
        if not names:
            return
        if any('"' in name or "`" in name for name in names):
            # A quote inside a name would let the two forms disagree: keep the reference.
            self._regex = _quoted_schema_regex(names)
            return
        self._regex = _name_first_schema_regex(names)
        self._name_only = True
        if len(names) == 1 and "\\" not in self.table[names[0]]:
            self._single = (names[0], self.table[names[0]])

    def _sub(self, match: re.Match[str]) -> str:
        name = match.group("name")
        self.counts[name] += 1
        quote = match.group("q")
        return f"{quote}{self.table[name]}{quote}"

    def _sub_name(self, match: re.Match[str]) -> str:
        name = match.group()
        self.counts[name] += 1
        return self.table[name]

    def rewrite(self, value: str, key: str | None) -> str:
        """`value` with every matching schema name replaced (and counted)."""
        if self._regex is None:
            return value
        if key in SCHEMA_KEYS and value in self.table:
            self.counts[value] += 1
            return self.table[value]
        if "." not in value:  # fast path: no qualified name can be in it
            return value
        if self._single is not None:
            name, new = self._single
            if name not in value:
                return value
            text, count = self._regex.subn(new, value)
            self.counts[name] += count
            return text
        if self._name_only:
            return self._regex.sub(self._sub_name, value)
        return self._regex.sub(self._sub, value)


def _pair_table(pairs: Sequence[SchemaPair]) -> dict[str, str]:
    table: dict[str, str] = {}
    for pair in pairs:
        table.setdefault(pair.replace, pair.target)
    return table


def count_schema_occurrences(data: Any, pairs: Sequence[SchemaPair]) -> dict[str, int]:
    """For each pair's `replace`: how many places the server is expected to rewrite (0 = typo?).

    Raises UntrustedJSONError for a value nested deeper than `MAX_DEPTH`.
    """
    rewriter = SchemaRewriter(_pair_table(pairs))
    if rewriter.table:
        _count_schemas(data, None, rewriter, tuple(rewriter.table), 1)
    return {pair.replace: rewriter.counts.get(pair.replace, 0) for pair in pairs}


def _count_schemas(
    value: Any, key: str | None, rewriter: SchemaRewriter, names: tuple[str, ...], depth: int
) -> None:
    """`rewriter.rewrite` on every string that names a schema; `depth` counts the levels of
    `value` itself (1 for a top-level container)."""
    if isinstance(value, dict):
        pairs: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        pairs = enumerate(value)
    else:
        if isinstance(value, str):
            rewriter.rewrite(value, key)
        return
    if depth > MAX_DEPTH:
        raise nesting_error()
    for part, child in pairs:
        if type(child) is str:
            # rewrite() changes nothing unless a name is in the string: whole (schema keys) or
            # before a `.`.
            if (names[0] in child) if len(names) == 1 else any(n in child for n in names):
                rewriter.rewrite(child, part if isinstance(part, str) else None)
        elif isinstance(child, dict | list | str):
            _count_schemas(
                child, part if isinstance(part, str) else None, rewriter, names, depth + 1
            )


def equals_after_schema_pairs(sent: Any, target: Any, pairs: Sequence[SchemaPair]) -> bool:
    """True when `target` is `sent` with the pairs applied (as the server is expected to), or
    with none of them applied, string by string; a fast proof of A3 equality, never a refusal.

    Walks both sides together and descends only into subtrees that differ (compared in C), so
    a payload that matches costs little more than one `==`.
    """
    rewriter = SchemaRewriter(_pair_table(pairs))
    stack: list[tuple[Any, Any, str | None]] = [(sent, target, None)]
    while stack:
        a, b, key = stack.pop()
        if a == b:
            continue
        if type(a) is dict and type(b) is dict:
            if a.keys() != b.keys():
                return False
            stack.extend((a[k], b[k], k if isinstance(k, str) else None) for k in a)
        elif type(a) is list and type(b) is list:
            if len(a) != len(b):
                return False
            stack.extend((x, y, None) for x, y in zip(a, b, strict=True))
        elif type(a) is str and type(b) is str:
            if rewriter.rewrite(a, key) != b:
                return False
        else:
            return False
    return True


def canonical_schema_table(pairs: Sequence[SchemaPair]) -> dict[str, str]:
    """Map every name in `pairs` (replace and target) to one token per connected group.

    The token is the target of the first pair of the group, so normalized text reads like the
    target. Used by comparison: whichever occurrences the server rewrote, both sides agree.
    """
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        root = parent.setdefault(name, name)
        while root != parent[root]:
            root = parent[root]
        while name != root:  # path compression
            parent[name], name = root, parent[name]
        return root

    for pair in pairs:
        a, b = find(pair.replace), find(pair.target)
        if a != b:
            parent[a] = b
    token: dict[str, str] = {}
    for pair in pairs:
        token.setdefault(find(pair.replace), pair.target)
    canonical = {name: token[find(name)] for name in parent}
    return {name: new for name, new in canonical.items() if name != new}


# -- the same rewrite on compact JSON text ------------------------------------------------------
# Characters that can stand outside strings in compact JSON (numbers, literals, punctuation): a
# name with a character beyond these can only ever occur inside a string token.
_OUTSIDE_STRINGS: Final = frozenset("0123456789+-.eEtruefalsn{}[],:")
_UNSAFE_IN_NAME: Final = re.compile(r'["\\\x00-\x1f]')
_ESCAPED_BACKSLASH: Final = "\x00"  # placeholders: raw control characters never occur in JSON
_ESCAPED_QUOTE: Final = "\x01"


def rewritten_text(sent: bytes, pairs: Sequence[SchemaPair]) -> bytes | None:
    """`sent` (compact JSON as `jsontext.dump_json` writes it) with the pairs applied to every
    string as `SchemaRewriter` applies them to parsed values, computed on the text; None when
    the text cannot be shown to give the same result (then compare parsed values instead).

    The text and the parsed strings agree when: every name has neither quote, backslash nor
    control character and has a character that cannot stand outside a string (so each
    occurrence lies inside one string token); no occurrence is inside an object key (keys are
    never rewritten); and none has an escape sequence within the characters the matching rule
    looks at (an escape's text is not the character it stands for). `schemaName`-style values
    are rewritten whole, in the same single pass as the rule.

    Computed on the bytes, in one search and one substitution: a character the rule looks at
    that is ASCII reads the same as a byte. Only when a non-ASCII character stands where the
    rule looks (is it a word character?) is the text decoded and the rule run on `str`.
    """
    plan = _text_plan(tuple((pair.replace, pair.target) for pair in pairs))
    if plan is None or not plan.table:
        return None if plan is None else sent
    text = sent
    # Placeholders for escaped backslashes and quotes (so that every `"` left delimits a
    # string), only when the text has any: most payloads have none.
    held = _ESCAPED_PAIR.search(text) is not None
    if held:
        text = text.replace(b"\\\\", _HELD_BACKSLASH).replace(b'\\"', _HELD_QUOTE)
    if text.isascii():
        if plan.unsafe.search(text):
            return None
    else:
        try:
            sent.decode("utf-8")
        except UnicodeDecodeError:
            return None
        found = plan.unsafe_or_non_ascii.search(text)
        if found is not None:
            # An unsafe occurrence on the bytes is one on the text too (its bytes are ASCII).
            return None if found.lastindex is None else _rewritten_str(sent, plan.table)
    out = plan.rule.sub(plan.replacement, text)
    if held:
        out = out.replace(_HELD_QUOTE, b'\\"').replace(_HELD_BACKSLASH, b"\\\\")
    return out


@dataclass(frozen=True)
class _TextPlan:
    """The compiled form of one pair table for `rewritten_text`, shared by every payload."""

    table: dict[str, str]
    rule: re.Pattern[bytes]  # the rule and the whole schema-key values, each name first
    unsafe: re.Pattern[bytes]  # `_unsafe_occurrence` on bytes
    # The same, or (a match with a group) a non-ASCII byte right before a name or its quote.
    unsafe_or_non_ascii: re.Pattern[bytes]
    replacement: bytes | Callable[[re.Match[bytes]], bytes]


_HELD_BACKSLASH: Final = _ESCAPED_BACKSLASH.encode()
_HELD_QUOTE: Final = _ESCAPED_QUOTE.encode()
_ESCAPED_PAIR: Final = re.compile(rb'\\[\\"]')
_NEVER: Final = re.compile(b"(?!)")


@functools.lru_cache(maxsize=32)
def _text_plan(pairs: tuple[tuple[str, str], ...]) -> _TextPlan | None:
    """`rewritten_text`'s patterns for `pairs` (replace, target), compiled once per table:
    None when the pairs cannot be applied on the text at all, no names when they change
    nothing."""
    table: dict[str, str] = {}
    for old, new in pairs:
        table.setdefault(old, new)
    table = {name: new for name, new in table.items() if name}
    if not table:
        return _TextPlan({}, _NEVER, _NEVER, _NEVER, b"")
    for name, new in table.items():
        if '"' in name or "`" in name:
            return None  # the quoted-name reference rule has no text form
        if _UNSAFE_IN_NAME.search(name) or _UNSAFE_IN_NAME.search(new):
            return None
        if set(name) <= _OUTSIDE_STRINGS:
            return None
        if any(other in new for other in table):
            return None  # a whole-value rewrite would be rewritten again by the second pass
    names = [re.escape(n.encode("utf-8")) for n in sorted(table, key=lambda n: (-len(n), n))]
    keys = [re.escape(key.encode("utf-8")) for key in sorted(SCHEMA_KEYS)]
    # Per name, first: the rule of `_name_first_schema_regex`, or the whole value of a schema
    # key (`"schemaName":"NAME"`). One pass does what the rule and the value pass did one
    # after the other: no replacement holds a name, and the two never match the same text.
    rule = re.compile(
        b"|".join(
            e + b"(?:(?<![\\w$]" + e + b")(?=\\.)"
            b'|(?<="' + e + b')(?<![\\w$]"' + e + b')(?="\\.)'
            b"|(?<=`" + e + b")(?<![\\w$]`" + e + b")(?=`\\.)"
            b"|(?:" + b"|".join(b'(?<="' + k + b'":"' + e + b")" for k in keys) + b')(?="))'
            for e in names
        )
    )
    unsafe = re.compile(_unsafe_occurrence(tuple(table)).pattern.encode("utf-8"), re.DOTALL)
    # A non-ASCII byte right before a name or before its quote, the match ending in an empty
    # group (the unsafe branches have none); every branch starts with its name, as before.
    non_ascii = b"|".join(
        e + b"(?:(?<=[\\x80-\\xff]" + e + b')|(?<=[\\x80-\\xff]["`]' + e + b"))()" for e in names
    )
    # Non-ASCII first, so that a match of an unsafe branch means the `str` rule finds it too.
    unsafe_or_non_ascii = re.compile(non_ascii + b"|" + unsafe.pattern, re.DOTALL)
    encoded = {name.encode("utf-8"): new.encode("utf-8") for name, new in table.items()}
    replacement: bytes | Callable[[re.Match[bytes]], bytes]
    if len(encoded) == 1:
        replacement = next(iter(encoded.values()))  # literal: no call per match
    else:

        def replacement(match: re.Match[bytes]) -> bytes:
            return encoded[match.group()]

    return _TextPlan(table, rule, unsafe, unsafe_or_non_ascii, replacement)


def _rewritten_str(sent: bytes, table: dict[str, str]) -> bytes | None:
    """`rewritten_text` on the decoded text, for a name after a non-ASCII character (is it a
    word character? only `str` patterns know)."""
    rewriter = SchemaRewriter(table)
    assert rewriter._regex is not None
    text = sent.decode("utf-8")
    text = text.replace("\\\\", _ESCAPED_BACKSLASH).replace('\\"', _ESCAPED_QUOTE)
    if _unsafe_occurrence(tuple(table)).search(text):
        return None
    out = _schema_value_regex(tuple(table)).sub(
        lambda m: f'"{m["key"]}":"{table[m["name"]]}"', text
    )
    if rewriter._single is not None:
        out = rewriter._regex.sub(rewriter._single[1], out)
    else:
        out = rewriter._regex.sub(lambda m: table[m.group()], out)
    out = out.replace(_ESCAPED_QUOTE, '\\"').replace(_ESCAPED_BACKSLASH, "\\\\")
    return out.encode("utf-8")


def _unsafe_occurrence(names: tuple[str, ...]) -> re.Pattern[str]:
    """An occurrence of a name whose text and string readings may differ: inside an object key,
    or with an escape sequence covering one of the two characters the rule looks at before it
    (or the name itself), or an escaped quote right after it. Text placeholders as in
    `rewritten_text`: a backslash left in the text starts an escape of 2 characters, or 6 for
    `\\uXXXX`. Each branch starts with the name, so the engine skips ahead to them."""
    quote = _ESCAPED_QUOTE
    branches = []
    for name in sorted(names, key=lambda n: (-len(n), n)):
        e = re.escape(name)
        branches.append(f'{e}[^"]*":')  # inside a key: the string ends in `":`
        branches.append(f"{e}(?={quote})")
        branches.append(f"{e}(?<=[\\\\{quote}]{e})")  # an escape (or its end) right before
        branches.append(f"{e}(?<=[\\\\{quote}].{e})")
        branches.append(f"{e}(?<=\\\\..{e})")
        branches.extend(f"{e}(?<=\\\\u.{{{k}}}{e})" for k in range(2, 6))
    return re.compile("|".join(branches), re.DOTALL)


def _schema_value_regex(names: tuple[str, ...]) -> re.Pattern[str]:
    """`"schemaName":"NAME"` (and the other schema keys): a whole value the rule rewrites."""
    keys = "|".join(map(re.escape, sorted(SCHEMA_KEYS)))
    alternatives = "|".join(map(re.escape, sorted(names, key=lambda n: (-len(n), n))))
    return re.compile(f'"(?P<key>{keys})":"(?P<name>{alternatives})"')
