"""Byte shards with Pythia's names: shard/unshard identity, hash lists, and every failure path."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.manifest import write_manifest
from pipeline.shards.mmidx import MMIDXWriter
from pipeline.shards.split import (
    find_shards,
    plan_shards,
    read_hash_list,
    shard_bin,
    shard_name,
    unshard,
)


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(3)
    w = MMIDXWriter(tmp_path / "d" / "pile_text_document", np.uint16)
    for n in rng.integers(1, 50, size=100):
        w.add_item(rng.integers(0, 50277, size=int(n)))
    w.finalize()
    return tmp_path / "d" / "pile_text_document"


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_shard_name_uses_last_index():
    assert shard_name("pile_0.87_deduped_text_document", 0, 82) == (
        "pile_0.87_deduped_text_document-00000-of-00082.bin"
    )


@pytest.mark.parametrize("kw", [{"num_shards": 3}, {"shard_bytes": 1000}, {"num_shards": 1}])
def test_shard_then_unshard_is_identity(dataset, tmp_path, kw):
    bin_path = dataset.with_suffix(".bin")
    res = shard_bin(dataset, tmp_path / "shards", **kw)
    total = bin_path.stat().st_size
    last = len(res.shards) - 1
    assert [p.name for p in res.shards] == [
        f"pile_text_document-{i:05d}-of-{last:05d}.bin" for i in range(last + 1)
    ]
    assert b"".join(p.read_bytes() for p in res.shards) == bin_path.read_bytes()
    assert sum(p.stat().st_size for p in res.shards) == total
    assert res.bin_sha256 == _sha(bin_path)
    joined, digest = unshard(tmp_path / "shards", tmp_path / "joined.bin")
    assert joined.read_bytes() == bin_path.read_bytes() and digest == res.bin_sha256


def test_exact_multiple_ends_with_empty_shard_like_pythia(dataset, tmp_path):
    # Pythia's shard_memmap.py: last = total // size, so an exact multiple gets an empty last shard
    total = dataset.with_suffix(".bin").stat().st_size
    assert total % 2 == 0
    res = shard_bin(dataset, tmp_path / "s", shard_bytes=total // 2)
    assert [p.stat().st_size for p in res.shards] == [total // 2, total // 2, 0]
    assert res.shards[-1].name == "pile_text_document-00002-of-00002.bin"
    joined, _ = unshard(tmp_path / "s", tmp_path / "j.bin")
    assert joined.read_bytes() == dataset.with_suffix(".bin").read_bytes()
    # with --num-shards N there are exactly N
    res = shard_bin(dataset, tmp_path / "n", num_shards=2)
    assert [p.stat().st_size for p in res.shards] == [total // 2, total // 2]


def test_hash_list_is_pythia_format_and_verifies(dataset, tmp_path, capsys):
    res = shard_bin(dataset, tmp_path / "s", num_shards=4)
    lines = res.hash_list.read_text().splitlines()
    assert res.hash_list.name == "pile_text_document.shard_hashes.txt"
    assert len(lines) == 5 and lines[-1].startswith("pile_text_document.idx ")
    for line in lines:
        name, h = line.split(" ")
        assert _sha(tmp_path / "s" / name) == h
    assert read_hash_list(res.hash_list)[res.shards[0].name] == _sha(res.shards[0])
    # pile verify reads it, and checks the shards add up to the .idx token count
    assert main(["verify", str(res.hash_list)]) == 0
    res.shards[-1].write_bytes(res.shards[-1].read_bytes()[:-2])
    lines[-2] = f"{res.shards[-1].name} {_sha(res.shards[-1])}"
    res.hash_list.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(res.hash_list)]) == 4
    assert "the 4 shards hold" in capsys.readouterr().out


def test_unshard_detects_corrupt_shard(dataset, tmp_path, capsys):
    res = shard_bin(dataset, tmp_path / "s", num_shards=3)
    raw = bytearray(res.shards[1].read_bytes())
    raw[5] ^= 0xFF
    res.shards[1].write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="-00001-of-00002.bin: sha256 .* differs"):
        unshard(res.hash_list, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.bin.tmp").exists()
    assert main(["unshard", str(tmp_path / "s"), "--out", str(tmp_path / "o.bin")]) == 4
    assert "pile_text_document-00001-of-00002.bin" in capsys.readouterr().err


def test_unshard_expected_sha_and_missing_shard(dataset, tmp_path):
    res = shard_bin(dataset, tmp_path / "s", num_shards=3)
    with pytest.raises(IntegrityError, match="expected " + "0" * 64):
        unshard(res.shards[0], tmp_path / "o.bin", expected_sha256="0" * 64)
    res.shards[1].unlink()
    with pytest.raises(IntegrityError, match=r"missing indices \[1\] of 0..2"):
        find_shards(res.shards[0])


def test_unshard_without_hash_list(dataset, tmp_path):
    res = shard_bin(dataset, tmp_path / "s", num_shards=2)
    res.hash_list.unlink()
    with pytest.raises(IntegrityError, match="no hash list"):
        unshard(tmp_path / "s", tmp_path / "o.bin", require_hashes=True)
    p, _ = unshard(tmp_path / "s", tmp_path / "o.bin")
    assert p.read_bytes() == dataset.with_suffix(".bin").read_bytes()


def test_shard_checks_manifest_sha(dataset, tmp_path):
    d = dataset.parent
    write_manifest(
        d / "pile.manifest.json",
        kind="token-dataset",
        config_fingerprint="0" * 64,
        files=[(dataset.with_suffix(".bin"), "bin")],
    )
    shard_bin(dataset, tmp_path / "ok", num_shards=2)  # matches
    raw = bytearray(dataset.with_suffix(".bin").read_bytes())
    raw[0] ^= 1
    dataset.with_suffix(".bin").write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="differs from the manifest"):
        shard_bin(dataset, tmp_path / "bad", num_shards=2)
    assert not list((tmp_path / "bad").glob("*.bin"))


def test_reshard_removes_stale_shards(dataset, tmp_path):
    shard_bin(dataset, tmp_path / "s", num_shards=5)
    shard_bin(dataset, tmp_path / "s", num_shards=2)
    name, shards, _ = find_shards(tmp_path / "s")
    assert name == "pile_text_document" and len(shards) == 2


def test_plan_errors():
    with pytest.raises(ConfigError, match="exactly one"):
        plan_shards(10, 5, 2)
    with pytest.raises(ConfigError, match="must be in 1.."):
        plan_shards(10, None, 0)
    with pytest.raises(ConfigError, match="positive number of bytes"):
        plan_shards(10, 0, None)
    with pytest.raises(ConfigError, match="5-digit names allow"):
        plan_shards(10**6, 1, None)
    assert plan_shards(10, None, 3) == 4


def test_shard_cli(dataset, tmp_path, capsys):
    assert main(["shard", str(dataset), "--size", "1Ki", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "shard(s)" in out and "shard_hashes.txt" in out
    first = sorted((tmp_path / "s").glob("*.bin"))[0]
    assert first.stat().st_size == 1024
    (tmp_path / "j").mkdir()
    assert main(["unshard", str(first), "--out", str(tmp_path / "j")]) == 0
    joined = tmp_path / "j" / "pile_text_document.bin"
    assert joined.read_bytes() == dataset.with_suffix(".bin").read_bytes()
    assert f"sha256 {_sha(joined)}" in capsys.readouterr().out


def test_shard_cli_errors(tmp_path, capsys):
    assert main(["shard", str(tmp_path / "nothing")]) == 3
    assert "neither a .bin file nor a dataset prefix" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["shard", "x", "--size", "10", "--num-shards", "2"])
    assert e.value.code == 2
    assert main(["unshard", str(tmp_path / "none")]) == 3
    with pytest.raises(InputError, match="holds shards of 0 datasets"):
        find_shards(tmp_path)


def test_unshard_refuses_a_symlinked_shard(dataset, tmp_path, capsys):
    res = shard_bin(dataset, tmp_path / "s", num_shards=3)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(res.shards[1].read_bytes())
    res.shards[1].unlink()
    res.shards[1].symlink_to(outside)
    with pytest.raises(InputError, match=r"-00001-of-00002\.bin is a symlink"):
        unshard(tmp_path / "s", tmp_path / "o.bin")
    assert not (tmp_path / "o.bin").exists()
    assert main(["unshard", str(tmp_path / "s"), "--out", str(tmp_path / "o.bin")]) == 3
