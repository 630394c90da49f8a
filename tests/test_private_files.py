"""Owner-only all the way up: under umask 000 every directory the tool creates is 0700 and every
file 0600, nested parents of --state-dir, --report, --out included; and owner-only files are
created by one function that never follows a symlink or replaces what exists."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate.storage import create_private, ensure_private_dir, write_private

ROOT = Path(__file__).parent.parent


@pytest.fixture
def umask_000() -> Iterator[None]:
    """Run the test with umask 000, then restore it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_every_directory_and_file_a_run_creates_is_owner_only(tmp_path: Path) -> None:
    """apply, plan --out and export under umask 000 with nested new folders: 0700 and 0600."""
    plan = tmp_path / "p.yaml"
    plan.write_text((ROOT / "plans" / "demo.yaml").read_text())
    runs = [
        ["--state-dir", "st/inner", "plan", "p.yaml", "--out", "sp/deep/s.json"],
        ["--state-dir", "st/inner", "export", "p.yaml", "--out", "bd/deep/b"],
        ["--state-dir", "st/inner", "apply", "p.yaml", "--report", "rpt/r.json"],
        ["--state-dir", "st/inner", "apply", "p.yaml", "--plan", "sp/deep/s.json"],
    ]
    code = (
        "import os, sys; os.umask(0)\n"
        "from typer.testing import CliRunner\n"
        "from migrate.cli import app\n"
        f"for args in {runs!r}:\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    print(args, result.exit_code, result.output, file=sys.stderr)\n"
        "    assert result.exit_code in (0, 7), result.output\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    created = [p for p in tmp_path.rglob("*") if p != plan]
    for top in ("st", "st/inner", "sp", "sp/deep", "bd", "bd/deep", "rpt", "rpt/r.json"):
        assert tmp_path / top in created
    for path in created:
        wanted = 0o700 if path.is_dir() else 0o600
        assert _mode(path) == wanted, f"{path} is {oct(_mode(path))}"


def test_ensure_private_dir_makes_each_missing_parent_owner_only(
    tmp_path: Path, umask_000: None
) -> None:
    """a/b/c made from nothing: a, a/b and a/b/c are all 0700; an existing folder is untouched."""
    tmp_path.chmod(0o755)
    ensure_private_dir(tmp_path / "a" / "b" / "c")
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert _mode(path) == 0o700
    assert _mode(tmp_path) == 0o755


def test_write_private_makes_its_folders_owner_only(tmp_path: Path, umask_000: None) -> None:
    """A report written to new nested folders leaves each folder 0700 and the file 0600."""
    write_private(tmp_path / "x" / "y" / "r.json", "{}")
    assert _mode(tmp_path / "x") == _mode(tmp_path / "x" / "y") == 0o700
    assert _mode(tmp_path / "x" / "y" / "r.json") == 0o600


def test_create_private_is_0600_and_never_replaces_or_follows(
    tmp_path: Path, umask_000: None
) -> None:
    """create_private writes 0600; an existing file or a planted symlink is refused, untouched."""
    create_private(tmp_path / "f", b"data")
    assert (tmp_path / "f").read_bytes() == b"data"
    assert _mode(tmp_path / "f") == 0o600
    with pytest.raises(FileExistsError):
        create_private(tmp_path / "f", b"other")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_private(tmp_path / "link", b"other", durable=False)
    assert victim.read_bytes() == b"keep"
    assert (tmp_path / "f").read_bytes() == b"data"
