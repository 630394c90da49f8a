"""Tokens are checked when read: a clear exit 5 naming the variable or file, never the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from migrate.cli import app
from migrate.credentials import read_token
from migrate.errors import AuthError
from migrate.models import Endpoint

cli = CliRunner()
SECRET = "tok-7f3a9c"
BAD_TOKENS = {
    "newline": f"{SECRET}\nsecond-line",
    "carriage return": f"{SECRET}\rx",
    "tab": f"{SECRET}\tx",
    "space": f"{SECRET} x",
    "NUL": f"{SECRET}\x00x",
    "escape": f"{SECRET}\x1b[31m",
    "DEL": f"{SECRET}\x7f",
    "non-ASCII": f"{SECRET}é",
    "zero-width space": f"{SECRET}\u200b",
}


def _endpoint(**where: str) -> Endpoint:
    return Endpoint("https://example.invalid", "W", **where)


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_a_token_no_header_can_carry_is_refused_naming_the_variable(kind: str) -> None:
    """A control, space or non-ASCII character inside the token: AuthError naming the variable,
    without the value."""
    with pytest.raises(AuthError) as caught:
        read_token(_endpoint(token_env="MY_TOKEN"), environ={"MY_TOKEN": BAD_TOKENS[kind]})
    text = str(caught.value)
    assert caught.value.exit_code == 5
    assert "MY_TOKEN" in text
    assert SECRET not in text
    assert "second-line" not in text


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_an_empty_token_variable_is_refused_as_empty(value: str) -> None:
    """A variable that is set but blank is 'empty', exit 5, naming it."""
    with pytest.raises(AuthError, match="MY_TOKEN is empty") as caught:
        read_token(_endpoint(token_env="MY_TOKEN"), environ={"MY_TOKEN": value})
    assert caught.value.exit_code == 5


def test_surrounding_whitespace_is_stripped() -> None:
    """A trailing newline (what `echo` leaves) is not part of the token."""
    token = read_token(_endpoint(token_env="T"), environ={"T": f"  {SECRET}\n"})
    assert token.value == SECRET


def test_a_token_file_with_a_control_character_is_refused(tmp_path: Path) -> None:
    """The file's token is checked like a variable's: the message names the file only."""
    path = tmp_path / "token"
    path.write_text(f"{SECRET}\nmore\n")
    path.chmod(0o600)
    with pytest.raises(AuthError) as caught:
        read_token(_endpoint(token_file=str(path)), environ={})
    assert str(path) in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_token_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    """Invalid UTF-8 in a token file is exit 5, not a traceback."""
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfe" + SECRET.encode())
    path.chmod(0o600)
    with pytest.raises(AuthError, match="not text"):
        read_token(_endpoint(token_file=str(path)), environ={})


def test_a_huge_token_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    """A token file past the cap is refused: it cannot be a token."""
    path = tmp_path / "token"
    path.write_bytes(b"a" * (1 << 20))
    path.chmod(0o600)
    with pytest.raises(AuthError, match="more than"):
        read_token(_endpoint(token_file=str(path)), environ={})


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_accepted_token_fits_an_http_header(value: str) -> None:
    """Whatever read_token accepts is printable ASCII without spaces; it never echoes a value
    it refuses."""
    try:
        token = read_token(_endpoint(token_env="T"), environ={"T": value})
    except AuthError as exc:
        stripped = value.strip()
        assert len(stripped) < 4 or stripped not in str(exc)
        return
    assert token.value.isascii()
    assert all(0x21 <= ord(c) <= 0x7E for c in token.value)


@pytest.mark.parametrize("kind", ["newline", "non-ASCII"])
def test_cli_exits_5_naming_the_variable(kind: str) -> None:
    """`migrate inventory` with a sloppy token: exit 5, the variable named, the value absent."""
    result = cli.invoke(
        app,
        ["inventory", "--url", "https://example.invalid", "--workspace", "W"],
        env={"DATABRAIN_TOKEN": BAD_TOKENS[kind]},
    )
    assert result.exit_code == 5, result.output
    assert "DATABRAIN_TOKEN" in result.output
    assert SECRET not in result.output
