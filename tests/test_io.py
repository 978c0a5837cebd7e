"""Atomic writes, hashing, manifests and config fingerprints (the shared stage contract)."""

from __future__ import annotations

import errno
import hashlib
import json
from dataclasses import dataclass

import pytest

import pipeline.io as pio
from pipeline.config import StageConfig, canonical_json, combine_fingerprints
from pipeline.errors import IntegrityError, PipelineError
from pipeline.manifest import read_manifest, write_manifest


def test_atomic_write_replaces_only_on_success(tmp_path):
    p = tmp_path / "a" / "f.bin"
    pio.atomic_write_bytes(p, b"one")
    assert p.read_bytes() == b"one"
    with pytest.raises(RuntimeError), pio.atomic_open(p) as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert p.read_bytes() == b"one"
    assert not (tmp_path / "a" / "f.bin.tmp").exists()


def test_disk_full_gives_clear_error_and_no_partial_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pio.os, "fsync", full)
    p = tmp_path / "out.bin"
    with pytest.raises(
        PipelineError, match=r"writing .*out\.bin failed: No space left on device.*no partial file"
    ):
        pio.atomic_write_bytes(p, b"x" * 100)
    assert not p.exists() and not (tmp_path / "out.bin.tmp").exists()


def test_unwritable_directory_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PipelineError, match="cannot create output directory"):
        pio.atomic_write_bytes(blocker / "sub" / "f", b"x")


def test_sha256_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 50000
    p = tmp_path / "d"
    p.write_bytes(data)
    assert pio.sha256_file(p, chunk=4096) == hashlib.sha256(data).hexdigest()


def test_manifest_round_trip_and_errors(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "y.npy").write_bytes(b"defg")
    m = write_manifest(
        tmp_path / "t.manifest.json",
        kind="test",
        config_fingerprint="f" * 64,
        files=[(tmp_path / "x.bin", "bin"), tmp_path / "sub" / "y.npy"],
        counts={"n": 2},
    )
    back = read_manifest(tmp_path / "t.manifest.json")
    assert back["files"] == m["files"]
    assert back["files"][0] == {
        "name": "x.bin",
        "bytes": 3,
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "role": "bin",
    }
    assert back["files"][1]["name"] == "sub/y.npy"
    with pytest.raises(IntegrityError, match="manifest not found"):
        read_manifest(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(IntegrityError, match="not valid JSON"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(IntegrityError, match="not a pile manifest"):
        read_manifest(tmp_path / "other.json")


@dataclass(frozen=True)
class _Cfg(StageConfig):
    a: int = 1
    b: str = "x"
    workers: int = 1
    _not_fingerprinted = ("workers",)


def test_fingerprint_is_canonical_and_ignores_workers():
    base = _Cfg()
    assert base.fingerprint() == _Cfg(workers=8).fingerprint()
    assert base.fingerprint() != _Cfg(a=2).fingerprint()
    expected = hashlib.sha256(
        canonical_json({"class": "_Cfg", "schema": 1, "config": {"a": 1, "b": "x"}}).encode()
    ).hexdigest()
    assert base.fingerprint() == expected
    assert canonical_json({"b": [1, 2], "a": "é"}) == '{"a":"é","b":[1,2]}'
    assert combine_fingerprints("a", "b") != combine_fingerprints("b", "a")


def test_planted_tmp_symlink_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    p = tmp_path / "d" / "out.bin"
    p.parent.mkdir()
    pio.tmp_path(p).symlink_to(victim)
    pio.atomic_write_bytes(p, b"new")
    assert victim.read_bytes() == b"keep me"
    assert p.read_bytes() == b"new" and not p.is_symlink()
    assert not pio.tmp_path(p).exists() and not pio.tmp_path(p).is_symlink()


def test_open_new_replaces_a_stale_tmp_and_refuses_a_racing_link(tmp_path, monkeypatch):
    t = tmp_path / "x.tmp"
    t.write_bytes(b"stale")
    with pio.open_new(t) as f:
        f.write(b"fresh")
    assert t.read_bytes() == b"fresh"
    # a link that appears between the unlink and the create is not followed either
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    real_unlink = pio.os.unlink

    def unlink_then_plant(path, *a, **k):
        real_unlink(path, *a, **k)
        pio.os.symlink(victim, path)

    monkeypatch.setattr(pio.os, "unlink", unlink_then_plant)
    with pytest.raises(PipelineError, match=r"cannot write .*x\.tmp"):
        pio.open_new(t)
    assert victim.read_bytes() == b"keep"


def test_sha256_file_refuses_non_regular_files(tmp_path):
    import os

    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    for p in (fifo, "/dev/zero"):
        with pytest.raises(OSError, match="not a regular file"):
            pio.sha256_file(p)


def _tmpfs(path, size):
    import subprocess

    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    return path


def test_real_disk_full_names_the_file(tmp_path):
    """On a 1 MB tmpfs: the atomic writer and the MMIDIDX writer name the file being written."""
    import subprocess

    import numpy as np

    from pipeline.shards.mmidx import MMIDXWriter

    mnt = _tmpfs(tmp_path / "mnt", "1m")
    try:
        with pytest.raises(PipelineError, match=r"writing .*mnt/a\.bin failed: No space left"):
            pio.atomic_write_bytes(mnt / "a.bin", b"x" * (2 << 20))
        assert list(mnt.iterdir()) == []
        w = MMIDXWriter(mnt / "d_text_document", np.uint16)
        with pytest.raises(PipelineError, match=r"d_text_document\.bin\.tmp failed: No space"):
            for _ in range(40):
                w.add_item(np.ones(1 << 16, dtype=np.uint16))
            w.finalize()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
