"""The secrets this process holds, and their removal from everything it writes.

Every token, API key and URL password the process reads is registered here. Text the tool
prints or writes to a file passes through `redact`; bytes that must stay exact (an API's
payload in a bundle or the spool) are checked with `holds_secret` and refused, never altered.
"""

from __future__ import annotations

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
    """True when `data` holds a registered secret (as UTF-8, or JSON-escaped)."""
    for secret in _known_secrets:
        if secret.encode("utf-8", "surrogatepass") in data:
            return True
        escaped = secret.replace("/", "\\/").encode("utf-8", "surrogatepass")
        if escaped != secret.encode("utf-8", "surrogatepass") and escaped in data:
            return True
    return False
