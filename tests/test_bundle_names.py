"""Bundle file names from hostile remote ids (docs/contract.md A4): inside `dashboards/`, distinct
(also case-insensitively), round-tripping; planted symlinks never followed; owner-only files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.bundle import BundleItem, BundleSource, verify_bundle, write_bundle
from migrate.errors import BundleError
from migrate.models import SourceInfo
from migrate.safename import id_from_safe_name, safe_name

HOSTILE = [
    "../../x",
    "../../../etc/passwd",
    "/abs",
    "/",
    "C:\\Windows\\x",
    "a\\b",
    "\\\\server\\share",
    "..",
    ".",
    "...",
    "CON",
    "con",
    "Con",
    "NUL",
    "nul",
    "COM1",
    "com1",
    "LPT9",
    "aux",
    "prn",
    "con.txt",
    "CONIN$",
    "a\x00b",
    "\x00",
    "\n",
    "tab\tand\rcr",
    "x" * 300,
    "X" * 300,
    "é" * 300,
    "\u0405ales",  # Cyrillic capital DZE, a look-alike of S
    "Sales",
    "sales",
    "SALES",
    "sales.",
    "sales ",
    " sales",
    "e\u0301",  # decomposed é
    "\u00e9",  # composed é
    "ﬁle",  # ligature
    "\u202eevil",  # right-to-left override
    "\ud800",  # lone surrogate (JSON allows \ud800)
    "a:b",
    'a"b<c>d|e?f*g',
    "%41",
    "%",
    "=",
    "sales=0123",
    "",
    "~1",
    "PROGRA~1",
]
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", "clock$", "conin$", "conout$"} | {
    f"{d}{n}" for d in ("com", "lpt") for n in [*range(10), "¹", "²", "³"]
}

ids = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.text(alphabet="aAbB.-_/\\%=: \x00", max_size=12),
    st.text(min_size=60, max_size=320),
)


def _assert_safe(name: str) -> None:
    """One portable path component: ASCII, lowercase, ≤200 bytes, no device name."""
    assert name.endswith(".json")
    assert len(name.encode("utf-8")) <= 200
    assert name.isascii()
    assert name == name.lower()
    assert all(ch.isprintable() for ch in name)
    assert not set(name) & set('<>:"/\\|?*')
    assert name not in (".", "..")
    assert not name.startswith(".")
    assert name.split(".", 1)[0] not in _WINDOWS_RESERVED
    assert Path(name).name == name
    assert len(Path(name).parts) == 1


@pytest.mark.parametrize("dashboard_id", HOSTILE, ids=repr)
def test_hostile_ids_get_safe_names(dashboard_id: str) -> None:
    """Each known-hostile id becomes one portable file name inside the folder."""
    name = safe_name(dashboard_id)
    _assert_safe(name)
    root = Path("/bundle/dashboards")
    assert (root / name).parent == root


def test_hostile_names_are_distinct_case_insensitively() -> None:
    """The known-hostile ids (which include case variants) give pairwise distinct names."""
    names = [safe_name(i).casefold() for i in HOSTILE]
    assert len(set(names)) == len(set(HOSTILE))


def test_readable_ids_stay_readable() -> None:
    """A short lowercase id is its own file name; uppercase and separators are escaped."""
    assert safe_name("sales-overview_2") == "sales-overview_2.json"
    assert safe_name("Sales") == "%53ales.json"
    assert safe_name("../x") == "%2e%2e%2fx.json"
    assert safe_name("con") == "%63on.json"


@given(ids)
def test_any_id_gets_a_safe_name_that_round_trips(dashboard_id: str) -> None:
    """Any id → a safe name that decodes back to it, or (too long) a digest name."""
    name = safe_name(dashboard_id)
    _assert_safe(name)
    if "=" in name:
        digest = hashlib.sha256(dashboard_id.encode("utf-8", "surrogatepass")).hexdigest()
        assert name.endswith(f"={digest}.json")
        with pytest.raises(ValueError, match="manifest"):
            id_from_safe_name(name)
    else:
        assert id_from_safe_name(name) == dashboard_id


@given(st.lists(ids, unique=True, max_size=30))
def test_distinct_ids_get_distinct_names_case_insensitively(id_list: list[str]) -> None:
    """No two distinct ids share a name, even on a case-insensitive file system."""
    names = {safe_name(i).casefold() for i in id_list}
    assert len(names) == len(id_list)


@given(st.text(min_size=1, max_size=30).filter(lambda s: s.lower() != s or s.upper() != s))
def test_case_variants_do_not_collide(dashboard_id: str) -> None:
    """An id and its upper/lower-cased variants never share a file."""
    variants = {dashboard_id, dashboard_id.lower(), dashboard_id.upper()}
    assert len({safe_name(v).casefold() for v in variants}) == len(variants)


@pytest.mark.parametrize(
    "name", ["x.txt", "A.json", "%61.json", "%2.json", "%zz.json", "a/b.json", "x=1.json"]
)
def test_non_canonical_names_are_refused(name: str) -> None:
    """A name that is not exactly some id's safe name does not decode."""
    with pytest.raises(ValueError, match=r"\S"):
        id_from_safe_name(name)


def _export_bytes(dashboard_id: str) -> bytes:
    document = {"_meta": {"dashboardId": dashboard_id}, "data": {"metrics": []}}
    return json.dumps(document, ensure_ascii=True).encode()


@settings(max_examples=40, deadline=None)
@given(st.lists(ids, unique=True, min_size=1, max_size=8))
def test_written_bundle_stays_inside_and_reads_back_every_id(id_list: list[str]) -> None:
    """Every file written lies in dashboards/ and the bundle reads back the same ids and bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "out" / "bundle"
        items = [BundleItem(i, f"name {n}", _export_bytes(i)) for n, i in enumerate(id_list)]
        write_bundle(out, SourceInfo("sandbox://demo", "W"), items)
        written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        expected = sorted(
            ["out/bundle/manifest.json"]
            + [f"out/bundle/dashboards/{safe_name(i)}" for i in id_list]
        )
        assert written == expected
        assert [p.name for p in verify_bundle(out)] == [safe_name(i) for i in id_list]
        source = BundleSource(out)
        listed = asyncio.run(source.inventory())
        assert [ref.id for ref in listed] == id_list
        for item in items:
            assert asyncio.run(source.export(item.id)).raw == item.content


def test_planted_symlink_as_out_dir_is_not_followed(tmp_path: Path) -> None:
    """An --out that is a symlink is refused; the folder it points to stays untouched."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "out").symlink_to(victim)
    with pytest.raises(BundleError, match="symlink"):
        write_bundle(tmp_path / "out", SourceInfo("u", "w"), [BundleItem("a", "A", b"{}")])
    assert list(victim.iterdir()) == []


def test_planted_symlink_inside_previous_bundle_is_not_followed(tmp_path: Path) -> None:
    """Replacing an earlier bundle whose dashboards/ is a planted symlink leaves its target."""
    out = tmp_path / "bundle"
    write_bundle(out, SourceInfo("u", "w"), [BundleItem("a", "A", _export_bytes("a"))])
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.json").write_text("precious")
    (victim / "a.json").write_text("precious")
    for child in (out / "dashboards").iterdir():
        child.unlink()
    (out / "dashboards").rmdir()
    (out / "dashboards").symlink_to(victim)
    write_bundle(out, SourceInfo("u", "w"), [BundleItem("a", "A", _export_bytes("a"))])
    assert (victim / "keep.json").read_text() == "precious"
    assert (victim / "a.json").read_text() == "precious"
    assert not (out / "dashboards").is_symlink()
    verify_bundle(out)


def test_verify_does_not_follow_planted_symlinks(tmp_path: Path) -> None:
    """A listed file (or dashboards/) replaced by a symlink to identical bytes is refused."""
    out = tmp_path / "bundle"
    raw = _export_bytes("a")
    write_bundle(out, SourceInfo("u", "w"), [BundleItem("a", "A", raw)])
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(raw)
    (out / "dashboards" / "a.json").unlink()
    (out / "dashboards" / "a.json").symlink_to(elsewhere)
    with pytest.raises(BundleError, match=r"a\.json"):
        verify_bundle(out)
    with pytest.raises(BundleError, match=r"a\.json"):
        BundleSource(out)

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.json").write_bytes(raw)
    (out / "dashboards" / "a.json").unlink()
    (out / "dashboards").rmdir()
    (out / "dashboards").symlink_to(folder)
    with pytest.raises(BundleError, match="symlink"):
        verify_bundle(out)


def test_umask_000_still_gives_owner_only_files(tmp_path: Path) -> None:
    """Under umask 000 every bundle folder is 0700 and every file 0600."""
    old = os.umask(0)
    try:
        out = tmp_path / "new" / "bundle"
        write_bundle(out, SourceInfo("u", "w"), [BundleItem("a", "A", _export_bytes("a"))])
        write_bundle(out, SourceInfo("u", "w"), [BundleItem("b", "B", _export_bytes("b"))])
    finally:
        os.umask(old)
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
