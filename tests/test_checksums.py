"""pipeline.checksums: the one parser/writer of sha256sum, Pythia and `pile shard` checksum lists."""

from __future__ import annotations

import hashlib

import pytest

from pipeline import checksums
from pipeline.cli.main import main
from pipeline.errors import InputError
from pipeline.shards.split import read_hash_list

from .conftest import shared_path

H1 = hashlib.sha256(b"one").hexdigest()
H2 = hashlib.sha256(b"two").hexdigest()


def _write(tmp_path, text, name="list.txt"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_sha256sum_text_and_binary_mode(tmp_path):
    p = _write(tmp_path, f"{H1}  a.bin\n{H2.upper()} *sub/b.idx\n")
    lst = checksums.read_checksum_list(p)
    assert [(e.name, e.sha256, e.line, e.form) for e in lst.entries] == [
        ("a.bin", H1, 1, "sha256sum"),
        ("sub/b.idx", H2, 2, "sha256sum"),  # lower-cased
    ]
    assert lst.kind == "sha256sum"


def test_sha256sum_escaped_names_are_unescaped(tmp_path):
    # coreutils: a name with a backslash or a newline is escaped and the line starts with `\`
    p = _write(tmp_path, f"\\{H1}  dir\\\\odd\\nname.bin\n")
    (e,) = checksums.read_checksum_list(p).entries
    assert e.name == "dir\\odd\nname.bin" and e.sha256 == H1
    line = checksums.format_line(e.name, H1, checksums.SHA256SUM)
    assert checksums.parse_line(line) == (e.name, H1, "sha256sum")


def test_pythia_format_comments_and_blank_lines(tmp_path):
    p = _write(tmp_path, f"# shards\n\nx-00000-of-00001.bin {H1}\nx-00001-of-00001.bin\t{H2}\n")
    lst = checksums.read_checksum_list(p)
    assert [(e.name, e.line, e.form) for e in lst.entries] == [
        ("x-00000-of-00001.bin", 3, "pythia"),
        ("x-00001-of-00001.bin", 4, "pythia"),
    ]
    assert lst.kind == "pythia"


def test_lines_end_at_newline_only(tmp_path):
    # a name may hold U+0085 or U+2028 (str.splitlines would cut the line there); CRLF is fine
    p = _write(tmp_path, f"a\u2028b\u0085.bin {H1}\r\n{H2}  c.bin\r\n")
    lst = checksums.read_checksum_list(p)
    assert [(e.name, e.line) for e in lst.entries] == [("a\u2028b\u0085.bin", 1), ("c.bin", 2)]


def test_mixed_list_kind(tmp_path):
    p = _write(tmp_path, f"{H1}  a.bin\nb.bin {H2}\n")
    assert checksums.read_checksum_list(p).kind == "pythia+sha256sum"


def test_pythia_published_list_parses():
    ref = shared_path("reference", "pythia_deduped_shard_hashes.txt")
    lst = checksums.read_checksum_list(ref)
    assert lst.kind == "pythia" and len(lst.entries) == 84
    assert lst.entries[0].name == "pile_0.87_deduped_text_document-00000-of-00082.bin"
    assert all(len(e.sha256) == 64 for e in lst.entries)


def test_malformed_line_names_file_and_line(tmp_path):
    p = _write(tmp_path, f"{H1}  a.bin\n# ok\nnot a checksum\n")
    with pytest.raises(InputError) as e:
        checksums.read_checksum_list(p)
    assert f"{p}:3: 'not a checksum' is neither" in str(e.value)
    # a 63-digit hash is neither form either
    p = _write(tmp_path, f"{H1[:-1]}  a.bin\n")
    with pytest.raises(InputError, match=f"{p}:1: "):
        checksums.read_checksum_list(p)
    # the same message through unshard's reader and through `pile verify` (exit 3)
    p = _write(tmp_path, f"a.bin {H1}\nbroken\n")
    with pytest.raises(InputError, match=f"{p}:2: "):
        read_hash_list(p)
    assert main(["verify", str(p)]) == 3


def test_not_utf8_and_unreadable_are_input_errors(tmp_path):
    p = tmp_path / "bin.txt"
    p.write_bytes(b"\xff\xfe" + H1.encode())
    with pytest.raises(InputError, match="bad byte at 0"):
        checksums.read_checksum_list(p)
    with pytest.raises(InputError, match="cannot read the checksum list"):
        checksums.read_checksum_list(tmp_path / "absent.txt")


@pytest.mark.parametrize("form", checksums.FORMATS)
def test_write_read_round_trip(tmp_path, form):
    items = [("a-00000-of-00001.bin", H1), ("a.idx", H2)]
    p = checksums.write_checksum_list(tmp_path / "l.txt", items, form)
    lst = checksums.read_checksum_list(p)
    assert [(e.name, e.sha256) for e in lst.entries] == items and lst.kind == form
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="allowed: sha256sum, pythia"):
        checksums.format_line("a", H1, "md5sum")


def test_pythia_bytes_are_what_pile_shard_writes(tmp_path):
    p = checksums.write_checksum_list(tmp_path / "l.txt", [("a.bin", H1), ("a.idx", H2)])
    assert p.read_text() == f"a.bin {H1}\na.idx {H2}\n"
    assert checksums.hash_list_name("pile_text_document") == "pile_text_document.shard_hashes.txt"


def test_hashes_are_keyed_by_basename(tmp_path):
    p = _write(tmp_path, f"{H1}  sub/a.bin\n")
    assert read_hash_list(p) == {"a.bin": H1}


def test_check_reports_problems_with_file_and_line(tmp_path):
    good = _write(tmp_path, f"a.bin {H1}\nb.bin {H2}\n", "good.txt")
    assert checksums.check(good) == []
    bad = _write(tmp_path, f"a.bin {H1}\n\n???\n", "bad.txt")
    (msg,) = checksums.check(bad)
    assert msg.startswith(f"{bad}:3: ")
    empty = _write(tmp_path, "# nothing\n", "empty.txt")
    assert checksums.check(empty) == [
        f"{empty}: no checksum lines found; it is empty or not a checksum list."
    ]
    twice = _write(tmp_path, f"a.bin {H1}\n{H2}  a.bin\n{H1}  a.bin\n", "twice.txt")
    (msg,) = checksums.check(twice)
    assert msg.startswith(f"{twice}:2: a.bin is listed again with another sha256 (line 1")
    assert checksums.check(tmp_path / "nope.txt")[0].startswith(f"{tmp_path / 'nope.txt'}: ")
