"""The one JSON path syntax: how every message, diff, report and `compare_ignore` names a place.

A path is a root followed by one step per level: `.key` for a key that is a plain identifier
(`[A-Za-z_$][A-Za-z0-9_$]*`), `["odd key"]` JSON-quoted for any other key (`["grid-margin"]`,
`["a b"]`, `["q\\""]`), `[3]` for a list index. Every key has exactly one spelling, and the
text reads the same in JavaScript. `parse_path` reads that syntax back, plus `*` (any key) and
`[*]` (any index) for `compare_ignore`; for hand-written paths it also takes a bare key with
other characters after a dot (`data.grid-margin`), as earlier plans wrote them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final

from migrate.errors import PlanError

PathPart = str | int
# A path as a cons list, (parent, part): a walk extends it at no cost per level and
# materializes the parts (`link_parts`) only for the places it reports.
PathLink = tuple[Any, PathPart] | None

_IDENTIFIER: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")


class Wildcard:
    """`*` in a `compare_ignore` path: matches any key or index."""

    def __repr__(self) -> str:
        return "*"


WILDCARD: Final = Wildcard()


def format_path(parts: Iterable[PathPart], root: str = "data") -> str:
    """`root` then `.key`, `["odd key"]` or `[index]` per part; with root "" the first key is
    written bare (`settings.id_prefix`)."""
    text = root
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def link_parts(link: PathLink) -> list[PathPart]:
    """The parts of a cons-list path, root first."""
    parts: list[PathPart] = []
    while link is not None:
        link, part = link
        parts.append(part)
    parts.reverse()
    return parts


_TOKEN: Final = re.compile(
    r"""\.(?P<key>[^.\[\]"]+)           # .key   (anything but separators and quotes)
      | \[(?P<index>\d+|\*)\]            # [3] or [*]
      | \[(?P<quoted>"(?:[^"\\]|\\.)*")\] # ["odd key"]
    """,
    re.VERBOSE,
)


def parse_path(text: str, root: str = "data") -> tuple[PathPart | Wildcard, ...]:
    """Parse a path (leading `root` optional) into keys, indices and `WILDCARD`s.

    `parse_path(format_path(parts)) == parts` for every key. Raises PlanError when the text
    is not a path, or names the whole payload.
    """
    rest = text.strip()
    if rest == root or rest.startswith((root + ".", root + "[")):
        rest = rest[len(root) :]
    elif rest and rest[0] not in ".[":
        rest = "." + rest
    parts: list[PathPart | Wildcard] = []
    pos = 0
    while pos < len(rest):
        match = _TOKEN.match(rest, pos)
        if match is None:
            raise PlanError(
                f"cannot read the JSON path {text!r} (at character {pos + 1})",
                hint='write paths like data.metrics[*].chartOptions or data["odd key"].x',
            )
        if (key := match.group("key")) is not None:
            parts.append(WILDCARD if key == "*" else key)
        elif (index := match.group("index")) is not None:
            parts.append(WILDCARD if index == "*" else int(index))
        else:
            parts.append(json.loads(match.group("quoted")))
        pos = match.end()
    if not parts:
        raise PlanError(
            f"the JSON path {text!r} names the whole payload",
            hint="name a field inside it, e.g. data.gridMargin",
        )
    return tuple(parts)
