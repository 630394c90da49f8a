"""Input files are read with a hard cap, and only when they are regular files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrate.connection import ConnectionPolicy
from migrate.errors import PlanError
from migrate.plan import load_plan
from migrate.runner import RunOptions, run_export
from migrate.storage import FileTooLargeError, NotRegularFileError, read_input, read_regular
from tests.helpers import write_plan

ROOT = Path(__file__).resolve().parent.parent
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
needs_dev_zero = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")


def migrate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m migrate ARGS` in a subprocess; the timeout only stops a regression hanging."""
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_read_regular_stops_at_the_cap_whatever_the_size_claims(tmp_path: Path) -> None:
    """A file one byte over the cap is refused; one at the cap is read whole."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 11)
    with pytest.raises(FileTooLargeError):
        read_regular(path, limit=10)
    assert read_regular(path, limit=11) == b"x" * 11


@needs_dev_zero
def test_read_input_refuses_a_device_naming_it() -> None:
    """/dev/zero (size 0, endless) is refused before a byte is read, naming the file."""
    with pytest.raises(PlanError) as caught:
        read_input(Path("/dev/zero"), what="plan")
    assert caught.value.file == "/dev/zero"
    assert "character device" in caught.value.message


@needs_fifo
def test_read_input_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no writer is refused at once (opening it for reading would block)."""
    fifo = tmp_path / "plan.yaml"
    os.mkfifo(fifo)
    with pytest.raises(PlanError, match="FIFO"):
        read_input(fifo, what="plan")


def test_read_input_refuses_a_directory(tmp_path: Path) -> None:
    """A folder is named as such, exit 3."""
    with pytest.raises(PlanError, match="directory") as caught:
        read_input(tmp_path, what="plan")
    assert caught.value.exit_code == 3


def test_read_input_follows_a_symlink_the_user_named(tmp_path: Path) -> None:
    """`plans/current.yaml -> v3.yaml` still works: the checks apply to the file pointed at."""
    (tmp_path / "v3.yaml").write_text("version: 1\n")
    (tmp_path / "current.yaml").symlink_to("v3.yaml")
    assert read_input(tmp_path / "current.yaml", what="plan") == b"version: 1\n"


def test_read_regular_without_following_refuses_a_symlink(tmp_path: Path) -> None:
    """Bundle files are read with follow_symlinks=False: a symlink is never followed."""
    (tmp_path / "real").write_text("{}")
    (tmp_path / "link").symlink_to("real")
    with pytest.raises(NotRegularFileError):
        read_regular(tmp_path / "link", limit=10, follow_symlinks=False)


@needs_dev_zero
def test_validate_dev_zero_is_refused(tmp_path: Path) -> None:
    """`migrate validate /dev/zero` exits 3 naming the file instead of reading forever."""
    done = migrate("validate", "/dev/zero", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "/dev/zero" in done.stdout + done.stderr
    assert "character device" in done.stdout + done.stderr


@needs_dev_zero
def test_payload_schema_on_a_device_is_refused(tmp_path: Path) -> None:
    """A plan whose payload_schema is /dev/zero: validate reports it unusable (exit 3)."""
    plan = write_plan(tmp_path, settings="  payload_schema: /dev/zero\n")
    done = migrate("validate", str(plan), cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "/dev/zero" in done.stdout + done.stderr


@needs_fifo
def test_fifo_in_a_bundle_is_refused_by_validate_and_apply(tmp_path: Path) -> None:
    """A bundle file swapped for a FIFO: `validate --bundle` and `apply --bundle` exit 3 naming
    it, instead of blocking on the open."""
    plan = write_plan(tmp_path, dashboards="  - id: kpi-core\n")
    policy = ConnectionPolicy(state_dir=tmp_path / "state")
    bundle = tmp_path / "bundle"
    asyncio.run(run_export(load_plan(plan), bundle, RunOptions(policy=policy)))
    (victim,) = (bundle / "dashboards").iterdir()
    victim.unlink()
    os.mkfifo(victim)
    for args in (
        ["validate", "--bundle", str(bundle)],
        ["--state-dir", str(tmp_path / "state"), "apply", str(plan), "--bundle", str(bundle)],
    ):
        done = migrate(*args, cwd=tmp_path)
        assert done.returncode == 3, (args, done.stdout, done.stderr)
        assert victim.name in done.stdout + done.stderr
