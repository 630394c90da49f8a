"""The CLI's one error handler: MigrateErrors become their exit code and a clean message; any
other exception is a bug: exit 1, no traceback unless --debug, tokens redacted either way."""

from __future__ import annotations

import pytest
import typer

from migrate.cli.app import STATE, handled
from migrate.credentials import register_secret
from migrate.errors import LockHeldError


def test_unexpected_error_is_exit_1_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """A non-MigrateError is reported as a bug with exit 1 and no traceback by default."""
    register_secret("tok-handler-secret")

    @handled
    def boom() -> None:
        raise ValueError("failed near tok-handler-secret")

    STATE.debug = False
    with pytest.raises(typer.Exit) as info:
        boom()
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "--debug" in err
    assert "Traceback" not in err and "tok-handler-secret" not in err


def test_debug_shows_a_redacted_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """With --debug the traceback is printed, with every known token redacted."""
    register_secret("tok-handler-secret")

    @handled
    def boom() -> None:
        raise ValueError("failed near tok-handler-secret")

    STATE.debug = True
    try:
        with pytest.raises(typer.Exit) as info:
            boom()
    finally:
        STATE.debug = False
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "tok-handler-secret" not in err


def test_migrate_errors_keep_their_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """A MigrateError exits with its own code and prints its message and fix."""

    @handled
    def held() -> None:
        raise LockHeldError("another run holds it", hint="migrate unlock abc")

    with pytest.raises(typer.Exit) as info:
        held()
    assert info.value.exit_code == 7
    assert "fix: migrate unlock abc" in capsys.readouterr().err
