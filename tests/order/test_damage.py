"""`pile inspect` on damaged files: a flipped byte is caught (exit 4 naming the file) by the cheap
checks on every read or by --verify-hashes; never different tokens with exit 0 under
--verify-hashes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import IntegrityError
from pipeline.manifest import write_manifest
from pipeline.order.config import OrderConfig
from pipeline.order.document import DocumentData
from pipeline.order.mapfiles import index_map_paths
from pipeline.order.preshuffle import run_preshuffle
from pipeline.order.stage import run_order
from tests.order.helpers import run_cli

CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=40, seed=3)
FLAGS = ["--seq-length", 16, "--global-batch", 4, "--train-iters", 40, "--seed", 3]
POSITIONS = 10  # flipped bytes per file: the first and last byte and 8 seeded ones in between


@pytest.fixture
def built(make_dataset, tmp_path):
    sizes = np.random.RandomState(7).randint(1, 30, 70)
    prefix, _ = make_dataset(sizes, directory=tmp_path / "data")
    # the token manifest `pile tokenize` writes next to the dataset
    write_manifest(
        prefix.parent / "d.manifest.json",
        kind="token-dataset",
        config_fingerprint="0" * 64,
        files=[
            (prefix.with_name(prefix.name + ".bin"), "bin"),
            (prefix.with_name(prefix.name + ".idx"), "idx"),
        ],
    )
    run_order(prefix, CFG)
    pre = tmp_path / "data" / "pre"
    run_preshuffle(prefix, CFG, pre, shard_size=1000)
    return prefix, pre


def _all_steps(capsys, tmp_path, data, *extra):
    out = tmp_path / "steps"
    rc, _, err = run_cli(
        capsys, "inspect", data, "--start-step", 0, "--end-step", 39, "--save-path", out,
        *FLAGS, *extra,
    )  # fmt: skip
    return rc, (np.load(out / "indicies.npy") if rc == 0 else None), err


def _targets(prefix, pre):
    maps = index_map_paths(prefix, CFG)
    return {
        "bin": (prefix, prefix.with_name(prefix.name + ".bin")),
        "idx": (prefix, prefix.with_name(prefix.name + ".idx")),
        "doc_idx": (prefix, maps["doc_idx"]),
        "sample_idx": (prefix, maps["sample_idx"]),
        "shuffle_idx": (prefix, maps["shuffle_idx"]),
        "shard": (pre, pre / "document-00002-of-00005.bin"),
        "document.idx": (pre, pre / "document.idx"),
    }


def _flip(path, pos):
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ 0xFF]))


@pytest.mark.parametrize(
    "target", ["bin", "idx", "doc_idx", "sample_idx", "shuffle_idx", "shard", "document.idx"]
)
def test_a_flipped_byte_is_caught_or_harmless(built, capsys, tmp_path, target):
    prefix, pre = built
    data, path = _targets(prefix, pre)[target]
    rc, want, err = _all_steps(capsys, tmp_path, data, "--verify-hashes")
    assert rc == 0, err
    size = path.stat().st_size
    rs = np.random.RandomState(len(target))
    positions = sorted({0, size - 1, *rs.randint(0, size, POSITIONS - 2).tolist()})
    caught_cheaply = 0
    for pos in positions:
        _flip(path, pos)
        try:
            rc, got, err = _all_steps(capsys, tmp_path, data, "--verify-hashes")
            assert rc == 4 and path.name in err, (pos, rc, err)
            rc, got, err = _all_steps(capsys, tmp_path, data)
            if rc == 0:
                # not visible without hashing: only a byte the reads never use, or token bytes
                if not np.array_equal(got, want):
                    assert target in ("bin", "shard", "shuffle_idx", "sample_idx", "doc_idx"), pos
            else:
                assert rc == 4 and path.name in err, (pos, rc, err)
                caught_cheaply += 1
        finally:
            _flip(path, pos)
    if target in ("idx", "document.idx"):
        assert caught_cheaply >= 1


def test_cheap_checks_name_the_map_and_what_is_wrong(built, capsys, tmp_path):
    prefix, _ = built
    maps = index_map_paths(prefix, CFG)
    shuffle = np.load(maps["shuffle_idx"])
    n = shuffle.size
    # the high byte of shuffle_idx[5]: a value far out of range
    off = maps["shuffle_idx"].stat().st_size - n * shuffle.itemsize + 5 * shuffle.itemsize + 3
    _flip(maps["shuffle_idx"], off)
    rc, _, err = _all_steps(capsys, tmp_path, prefix)
    assert rc == 4 and "shuffle_idx" in err and "is outside 0.." in err, err
    _flip(maps["shuffle_idx"], off)
    # doc_idx value out of range
    doc = np.load(maps["doc_idx"])
    off = maps["doc_idx"].stat().st_size - doc.size * 4 + 3
    _flip(maps["doc_idx"], off)
    rc, _, err = _all_steps(capsys, tmp_path, prefix)
    assert rc == 4 and "doc_idx.npy is damaged: doc_idx[0] = " in err, err
    _flip(maps["doc_idx"], off)
    # a size in the .idx that disagrees with the pointers (a small .idx is also caught by the
    # maps' quick dataset identity, which only covers the head and tail of a large one)
    idx = prefix.with_name(prefix.name + ".idx")
    _flip(idx, 34 + 4 * 9)
    data = DocumentData(prefix, CFG, check_dataset="none")
    with pytest.raises(IntegrityError, match=rf"{idx.name} is damaged: item 9: sizes\[9\] = "):
        data.steps(0, 39)
    _flip(idx, 34 + 4 * 9)
    rc, _, err = _all_steps(capsys, tmp_path, prefix)
    assert rc == 0, err


def test_size_against_the_manifest_names_the_file(built, capsys):
    _, pre = built
    # two bytes moved from shard 3 to shard 4: the total still matches the index
    s3, s4 = pre / "document-00003-of-00005.bin", pre / "document-00004-of-00005.bin"
    with open(s3, "r+b") as f:
        f.truncate(998)
    with open(s4, "ab") as f:
        f.write(b"\0\0")
    rc, _, err = run_cli(capsys, "inspect", pre, "--step", 0, "--format", "json")
    assert rc == 0, err  # step 0 lies in shard 0
    rc, _, err = run_cli(capsys, "inspect", pre, "--step", 25, "--format", "json")
    assert rc == 4 and f"{s3}: 998 bytes, but" in err and "records 1000" in err, err


def test_verify_hashes_reads_and_hashes_only_the_shards_of_the_step(built):
    from pipeline.order.data import open_data

    _, pre = built
    data = open_data(pre, CFG, verify_hashes=True)
    data.step(0)  # bytes [0, 136): shard 0 only
    assert [p.name for p in data.check.hashed] == ["document.idx", "document-00000-of-00005.bin"]
    data.step(7)  # bytes [952, 1088): shards 0 and 1
    assert [p.name for p in data.check.hashed][2:] == ["document-00001-of-00005.bin"]


def test_verify_hashes_without_a_manifest_is_refused(make_dataset, capsys, tmp_path):
    prefix, _ = make_dataset([10] * 30)
    run_order(prefix, CFG)
    # no token manifest lists the .bin/.idx: they cannot be verified
    rc, _, err = run_cli(capsys, "inspect", prefix, "--step", 0, *FLAGS, "--verify-hashes")
    assert rc == 4 and "d_text_document.idx: --verify-hashes: no manifest records" in err, err
    rc, _, err = run_cli(capsys, "inspect", prefix, "--step", 0, *FLAGS, "--format", "json")
    assert rc == 0, err


def test_damaged_manifest_is_named(built, capsys):
    _, pre = built
    m = pre / "document.manifest.json"
    text = m.read_text()
    m.write_text(text.replace('"shards": 6', '"shards": 7'))
    for extra in ([], ["--verify-hashes"]):
        rc, _, err = run_cli(capsys, "inspect", pre, "--step", 0, "--format", "json", *extra)
        assert rc == 4 and "document.manifest.json: manifest bytes do not match" in err, err
    m.write_text("{not json")
    rc, _, err = run_cli(capsys, "inspect", pre, "--step", 0, *FLAGS)
    assert rc == 4 and "document.manifest.json: manifest is not valid JSON" in err, err


@pytest.mark.parametrize("manifest", [True, False])
def test_damaged_preshuffled_index_names_the_file_and_the_field(built, capsys, manifest):
    _, pre = built
    if not manifest:  # EleutherAI's data has none: the index's own fields outvote the damage
        (pre / "document.manifest.json").unlink()
    idx = pre / "document.idx"
    _flip(idx, 34 + 1)  # sizes[0] = 17 -> 17 + 0xFF00
    rc, _, err = run_cli(capsys, "inspect", pre, "--step", 0, *FLAGS, "--format", "json")
    assert rc == 4, err
    assert f"{idx} is damaged: sizes[0] = {17 ^ 0xFF00}, but " in err, err
    assert "give 17 tokens per sample" in err and "seq_length" not in err, err
    _flip(idx, 34 + 1)
    _flip(idx, 34 + 4 * 160 + 8 * 5 + 1)  # pointers[5]
    rc, _, err = run_cli(capsys, "inspect", pre, "--step", 1, *FLAGS, "--format", "json")
    assert rc == 4 and f"{idx} is damaged: pointers[5] = " in err, err
    assert "but sample 5 of 17 tokens starts at byte 170" in err, err
    _flip(idx, 34 + 4 * 160 + 8 * 5 + 1)
    _flip(idx, 34 + 4 * 7)  # sizes[7]: a sample in the middle
    rc, _, err = run_cli(capsys, "inspect", pre, "--step", 1, *FLAGS, "--format", "json")
    assert rc == 4 and f"{idx} is damaged: sizes[7] = {17 ^ 0xFF} tokens" in err, err


def test_preshuffled_index_from_another_run_than_its_manifest(built, capsys):
    import json

    _, pre = built
    m = pre / "document.manifest.json"
    doc = json.loads(m.read_text())
    doc["counts"]["sample_tokens"] = 33
    doc.pop("manifest_sha256")
    m.write_text(json.dumps(doc))
    rc, _, err = run_cli(capsys, "inspect", pre, "--step", 0, *FLAGS, "--format", "json")
    assert rc == 4 and "samples of 17 tokens, but its manifest records 33" in err, err


def test_verify_hashes_covers_provenance_only_when_it_is_read(built, capsys, tmp_path):
    from pipeline.order.data import open_data
    from pipeline.order.provenance import table_paths

    prefix, _ = built
    data = open_data(prefix, CFG, verify_hashes=True)
    data.step(3)
    names = {p.name for p in data.check.hashed}
    assert not any("provenance" in n or "doc_epoch" in n for n in names), names
    data.provenance(np.arange(12, 16))
    names = {p.name for p in data.check.hashed}
    assert {p.name for p in table_paths(prefix).values()} <= names and any(
        n.endswith("_doc_epoch.npy") for n in names
    )
    table = table_paths(prefix)["doc_id"]
    _flip(table, table.stat().st_size - 3)
    rc, _, err = run_cli(capsys, "inspect", prefix, "--step", 3, *FLAGS, "--verify-hashes")
    assert rc == 4 and f"{table}: sha256 " in err, err
    rc, _, err = run_cli(capsys, "inspect", prefix, "--step", 3, *FLAGS, "--verify-hashes",
                         "--format", "npy", "-o", tmp_path / "s.npy")  # fmt: skip
    assert rc == 0, err  # tokens only: the table is not read
