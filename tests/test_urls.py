"""URL policy: one key per target, loopback parsed properly, credentials and bad ports refused."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from migrate.cli import app
from migrate.connection import ConnectionPolicy, canonical_url, check_url, is_loopback, target_key
from migrate.errors import InsecureURLError, LockHeldError, PlanError
from migrate.lock import TargetLock
from migrate.models import Endpoint
from migrate.plan import load_plan
from migrate.runner import RunOptions, run_apply

cli = CliRunner()
PASSWORD = "hunter2-s3cret"


def _plan(tmp_path: Path, target_url: str, source_url: str = "sandbox://demo") -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "version: 1\n"
        f"source: {{url: '{source_url}', workspace: Sales Dev}}\n"
        f"target: {{url: '{target_url}', workspace: Sales Prod, token_env: T_TOKEN}}\n"
        "dashboards:\n  - id: kpi-core\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://127.0.0.1:8787", "http://localhost:8787/"),
        ("http://127.0.0.1:8787", "http://127.1:8787"),
        ("http://[::1]:8787", "http://LOCALHOST.:8787//"),
        ("https://api.example.com", "HTTPS://API.Example.com:443/"),
        ("http://localhost", "http://localhost:80"),
        ("https://h.example/base", "https://h.example/base/"),
        ("sandbox://demo", "sandbox://demo/"),
    ],
)
def test_spellings_of_one_target_share_a_key(one: str, other: str) -> None:
    """Case, loopback spelling, default port and trailing slash do not make another target."""
    assert canonical_url(one) == canonical_url(other)
    assert target_key(Endpoint(one, "W")) == target_key(Endpoint(other, "W"))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://localhost:8787", "http://localhost:8788"),
        ("http://localhost:443", "https://localhost"),
        ("https://a.example", "https://b.example"),
        ("https://h.example/one", "https://h.example/two"),
    ],
)
def test_different_targets_keep_different_keys(one: str, other: str) -> None:
    """Another port, scheme, host or base path is another target."""
    assert canonical_url(one) != canonical_url(other)


def test_the_key_never_holds_user_info() -> None:
    """Even a URL that does not parse leaves no password in the key (it is written to disk)."""
    for url in (f"https://u:{PASSWORD}@h.example", f"https://u:{PASSWORD}@h.example:99999"):
        assert PASSWORD not in canonical_url(url)


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    host=st.sampled_from(["localhost", "127.0.0.1", "127.1", "[::1]", "api.example.com"]),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=st.sampled_from(["", "/", "/base", "/base/", "//"]),
)
def test_canonical_url_is_idempotent(scheme: str, host: str, port: int | None, path: str) -> None:
    """Normalizing twice changes nothing, and the key still passes the URL policy."""
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
    once = canonical_url(url)
    assert canonical_url(once) == once
    check_url(once, allow_insecure_http=True)


@pytest.mark.parametrize(
    "host", ["127.1", "127.0.0.1", "0x7f.1", "2130706433", "127.255.0.9", "::1", "::ffff:127.0.0.1"]
)
def test_every_loopback_spelling_is_loopback(host: str) -> None:
    """Hosts the resolver reads as 127.0.0.0/8 or ::1 are loopback, so plain http is allowed."""
    assert is_loopback(host)
    shown = f"[{host}]" if ":" in host else host
    check_url(f"http://{shown}:8787", allow_insecure_http=False)


@pytest.mark.parametrize("host", ["127.1.example.com", "128.0.0.1", "0.0.0.0", "example.com"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    """A name that merely starts with 127, or another address, is refused for plain http."""
    assert not is_loopback(host)
    with pytest.raises(InsecureURLError):
        check_url(f"http://{host}/", allow_insecure_http=False)


def test_two_spellings_of_one_target_take_one_lock(tmp_path: Path) -> None:
    """While a run holds `http://127.0.0.1:P` a run against `http://localhost:P/` is refused
    (exit 7), before it connects anywhere."""
    state = tmp_path / "state"
    plan = load_plan(_plan(tmp_path, "http://localhost:9/"))
    held = TargetLock(state, target_key(Endpoint("http://127.0.0.1:9", "Sales Prod")))
    with held:
        with pytest.raises(LockHeldError) as caught:
            asyncio.run(run_apply(plan, RunOptions(policy=ConnectionPolicy(state_dir=state))))
        assert caught.value.exit_code == 7
        result = cli.invoke(
            app, ["--state-dir", str(state), "apply", str(tmp_path / "plan.yaml")], env={}
        )
        assert result.exit_code == 7, result.output
        assert held.info.lock_id in result.output


def test_user_info_in_a_plan_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """`user:pass@` in the plan: exit 3, the password in no output."""
    plan = _plan(tmp_path, f"https://deploy:{PASSWORD}@api.example.com")
    result = cli.invoke(
        app, ["--state-dir", str(tmp_path / "s"), "apply", str(plan)], env={"T_TOKEN": "tok-123"}
    )
    assert result.exit_code == 3, result.output
    assert "user name and password" in result.output
    assert PASSWORD not in result.output


def test_user_info_in_a_url_flag_is_a_usage_error() -> None:
    """`--url https://u:p@host`: exit 2, the password in no output."""
    result = cli.invoke(
        app,
        ["inventory", "--url", f"https://u:{PASSWORD}@api.example.com", "--workspace", "W"],
        env={"DATABRAIN_TOKEN": "tok-123"},
    )
    assert result.exit_code == 2, result.output
    assert PASSWORD not in result.output


def test_out_of_range_port_is_refused_cleanly(tmp_path: Path) -> None:
    """Port 99999: exit 3 from a plan, 2 from a flag, each saying so (not a traceback)."""
    plan = _plan(tmp_path, "https://api.example.com:99999")
    from_plan = cli.invoke(
        app, ["--state-dir", str(tmp_path / "s"), "apply", str(plan)], env={"T_TOKEN": "tok-123"}
    )
    assert from_plan.exit_code == 3, from_plan.output
    assert "1-65535" in from_plan.output
    from_flag = cli.invoke(
        app,
        ["inventory", "--url", "https://api.example.com:99999", "--workspace", "W"],
        env={"DATABRAIN_TOKEN": "tok-123"},
    )
    assert from_flag.exit_code == 2, from_flag.output
    assert "1-65535" in from_flag.output


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "x" * 65, "demo.db"])
def test_a_sandbox_name_that_is_not_a_plain_name_is_refused(tmp_path: Path, name: str) -> None:
    """`sandbox://../../x` is exit 3 with the fix, and no database appears anywhere."""
    plan = _plan(tmp_path, "sandbox://demo", source_url=f"sandbox://{name}")
    state = tmp_path / "deep" / "state"
    result = cli.invoke(app, ["--state-dir", str(state), "plan", str(plan)], env={})
    assert result.exit_code == 3, result.output
    assert "letters, digits" in result.output
    assert not list(tmp_path.rglob("*.db"))
    with pytest.raises(PlanError):
        check_url(f"sandbox://{name}", allow_insecure_http=False)


def test_a_ca_bundle_flag_that_holds_no_certificate_is_a_usage_error(tmp_path: Path) -> None:
    """`--ca-bundle` on a file that is not PEM: exit 2 naming it, not a traceback."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    result = cli.invoke(
        app,
        ["--ca-bundle", str(bogus), "inventory", "--workspace", "W", "--url", "https://x.invalid"],
        env={"DATABRAIN_TOKEN": "tok-123"},
    )
    assert result.exit_code == 2, result.output
    assert str(bogus) in result.output


def test_ssl_cert_file_naming_a_missing_file_is_exit_5(tmp_path: Path) -> None:
    """SSL_CERT_FILE on a missing file: the endpoint is unusable (exit 5), the variable named."""
    missing = tmp_path / "missing.pem"
    result = cli.invoke(
        app,
        ["inventory", "--url", "https://example.invalid", "--workspace", "W"],
        env={"DATABRAIN_TOKEN": "tok-123", "SSL_CERT_FILE": str(missing)},
    )
    assert result.exit_code == 5, result.output
    assert "SSL_CERT_FILE" in result.output
    assert str(missing) in result.output


@pytest.mark.parametrize("pid", [0, -1, 2**31, 10**30])
def test_a_lock_naming_no_possible_process_is_taken_over(tmp_path: Path, pid: int) -> None:
    """pid 0 and -1 (process groups to kill()) and absurd pids are dead holders: the lock is
    taken over with a warning instead of counted alive or crashing."""
    lock = TargetLock(tmp_path, "sandbox://demo#W")
    lock.path.parent.mkdir(parents=True)
    forged = {"lock_id": "forged", "pid": pid, "host": socket.gethostname()}
    lock.path.write_text(json.dumps({**forged, "started_at": 0, "target": "sandbox://demo#W"}))
    warnings: list[str] = []
    lock = TargetLock(tmp_path, "sandbox://demo#W", warn=warnings.append)
    with lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert warnings
    assert "forged" in warnings[0]
