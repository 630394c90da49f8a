"""The secrets this process holds, and their removal from everything it writes.

Every token, API key and URL password the process reads is registered here. Text the tool
prints or writes to a file passes through `redact`; bytes that must stay exact (an API's
payload in a bundle or the spool) are checked with `holds_secret` and refused, never altered.
"""

from __future__ import annotations

import json
import re

_REDACTED = "***"
_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember `value` so that `redact` removes it from output."""
    # Very short values would redact ordinary words; no real service token is this short.
    if len(value) >= 4:
        _known_secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def holds_secret(data: bytes) -> bool:
    """True when `data` holds a registered secret (as UTF-8, or JSON-escaped: `\\/` for `/`,
    or any character written as a `\\uXXXX` escape, as a hostile server may echo it)."""
    if not _known_secrets:
        return False
    if b"\\u" in data and _holds_literally(_unescaped(data)):
        return True
    return _holds_literally(data)


# A `\uXXXX` escape (a surrogate pair as one): what a JSON reader turns into one character.
_UNICODE_ESCAPE = re.compile(
    rb"\\u([dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|[0-9a-fA-F]{4})"
)


def _unescaped(data: bytes) -> bytes:
    """`data` with its `\\uXXXX` escapes written as the UTF-8 of their characters (an
    escaped backslash before a `u` is read as an escape too: that can only find more)."""

    def decoded(match: re.Match[bytes]) -> bytes:
        character: str = json.loads(b'"' + match.group(0) + b'"')
        return character.encode("utf-8", "surrogatepass")

    return _UNICODE_ESCAPE.sub(decoded, data)


def _holds_literally(data: bytes) -> bool:
    """True when `data` holds a registered secret as UTF-8, or with `/` written `\\/`."""
    for secret in _known_secrets:
        if secret.encode("utf-8", "surrogatepass") in data:
            return True
        escaped = secret.replace("/", "\\/").encode("utf-8", "surrogatepass")
        if escaped != secret.encode("utf-8", "surrogatepass") and escaped in data:
            return True
    return False
