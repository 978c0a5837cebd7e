"""Each format owner's structural `check()`: a damaged file of each kind is reported by name, and
`pile verify` reports what the owner's check finds (it dispatches, it does not re-implement)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import docid, manifest
from pipeline.cli.main import main
from pipeline.shards import mmidx, split
from pipeline.shards.names import shard_set_problem
from pipeline.tokenize import sidecar

PREFIX = "t_text_document"
ROLES = ((".bin", "bin"), (".idx", "idx"), (".docs.parquet", "sidecar"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A token dataset as tokenize lays it out (.bin/.idx, sidecar, manifest), written with the
    formats' own writers: 40 documents of two input files, ids from pipeline.docid."""
    d = tmp_path_factory.mktemp("formats") / "ds"
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 60, size=40)
    with mmidx.MMIDXWriter(d / PREFIX, np.uint16) as w:
        for n in sizes:
            w.add_item(rng.integers(0, 50277, size=int(n)))
        w.finalize()
    with sidecar.SidecarWriter(d / f"{PREFIX}.docs.parquet", {"pile.format_version": "1"}) as sc:
        for f, rows in ((0, range(0, 25)), (1, range(25, 40))):
            line = np.arange(1, len(rows) + 1) * 2  # every other line (blank ones between)
            sc.append(
                docid.make(f, line),
                f"{f:02d}.jsonl",
                line,
                ["S"],
                np.zeros(len(rows), int),
                sizes[rows],
            )
        sc.finalize()
    manifest.write_manifest(
        d / "t.manifest.json",
        kind="token-dataset",
        config_fingerprint="0" * 64,
        files=[(d / f"{PREFIX}{ext}", role) for ext, role in ROLES],
        counts={"documents": len(sizes), "tokens": int(sizes.sum())},
    )
    return d


@pytest.fixture
def ds(built, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(built, out)
    return out


def _relist(ds):
    """Rewrite the manifest over the files as they are now: the hashes agree, so only the
    structure checks can find what is wrong."""
    m = json.loads((ds / "t.manifest.json").read_text())
    manifest.write_manifest(
        ds / "t.manifest.json",
        kind=m["kind"],
        config_fingerprint=m["config_fingerprint"],
        files=[(ds / f["name"], f["role"]) for f in m["files"]],
        counts=m["counts"],
    )


def _verify(ds, capsys):
    code = main(["verify", str(ds)])
    return code, capsys.readouterr().out


# ------------------------------------------------------------------------------------- MMIDIDX


def test_mmidx_check_clean(ds, capsys):
    assert _verify(ds, capsys)[0] == 0  # the fixture is sound: every failure below is planted
    assert mmidx.check(ds / PREFIX) == []
    assert mmidx.check(ds / PREFIX, one_doc_per_item=True) == []


@pytest.mark.parametrize(
    "offset, value, expect",
    [
        (0, b"X", "bad magic"),
        (17, bytes([9]), "dtype code 9 unknown"),
        (9, (2).to_bytes(8, "little"), "MMIDIDX version 2"),
    ],
)
def test_mmidx_header_damage_names_the_file(ds, offset, value, expect):
    idx = ds / f"{PREFIX}.idx"
    raw = bytearray(idx.read_bytes())
    raw[offset : offset + len(value)] = value
    idx.write_bytes(bytes(raw))
    (msg,) = mmidx.check(ds / PREFIX)
    assert msg.startswith(f"{idx}: ") and expect in msg


def test_mmidx_pointer_damage(ds, capsys):
    idx = ds / f"{PREFIX}.idx"
    n = len(mmidx.MMIDXIndex(idx))
    raw = bytearray(idx.read_bytes())
    at = mmidx.HEADER_SIZE + 4 * n + 8 * 3  # pointer of item 3
    raw[at : at + 8] = (int.from_bytes(raw[at : at + 8], "little") + 2).to_bytes(8, "little")
    idx.write_bytes(bytes(raw))
    (msg,) = mmidx.check(ds / PREFIX)
    assert msg.startswith(f"{idx}: pointer of item 3 is ")
    _relist(ds)
    code, out = _verify(ds, capsys)
    assert code == 4 and f"STRUCTURE {idx}: pointer of item 3" in out


def test_mmidx_bin_size(ds):
    binp = ds / f"{PREFIX}.bin"
    binp.write_bytes(binp.read_bytes() + b"\0")
    (msg,) = mmidx.check(ds / PREFIX)
    assert msg.startswith(f"{binp}: ") and "1 bytes too many" in msg
    assert mmidx.check_bin(binp, ds / f"{PREFIX}.idx") == [msg]


def test_mmidx_doc_idx(ds):
    idx = ds / f"{PREFIX}.idx"
    n = len(mmidx.MMIDXIndex(idx))
    raw = bytearray(idx.read_bytes())
    raw[-8:] = (n - 1).to_bytes(8, "little")  # the last document no longer ends at N
    idx.write_bytes(bytes(raw))
    problems = mmidx.check(ds / PREFIX, one_doc_per_item=True)
    assert any(p.startswith(f"{idx}: doc_idx ends at {n - 1}, expected N = {n}") for p in problems)


# ------------------------------------------------------------------------------------- sidecar


def _rewrite_sidecar(ds, change):
    p = ds / f"{PREFIX}.docs.parquet"
    t = pq.read_table(p)
    cols = {name: t.column(name).to_pylist() for name in t.column_names}
    change(cols)
    pq.write_table(pa.table(cols, schema=t.schema), p)
    return p


def test_sidecar_check_clean(ds):
    p = ds / f"{PREFIX}.docs.parquet"
    assert sidecar.idx_for(p) == ds / f"{PREFIX}.idx"
    assert sidecar.idx_for(ds / "other.parquet") is None
    assert sidecar.check(p, sidecar.idx_for(p)) == []
    assert sidecar.check(p) == []  # without its .idx: the rules of the sidecar alone


def test_sidecar_tokens_column(ds, capsys):
    def change(c):
        c["tokens"][5] += 1

    p = _rewrite_sidecar(ds, change)
    (msg,) = sidecar.check(p, ds / f"{PREFIX}.idx")
    assert msg.startswith(f"{p}: row 5 says ") and f"{PREFIX}.idx item 5" in msg
    assert sidecar.check(p, ds / f"{PREFIX}.idx", full=False) == []  # rows only
    _relist(ds)
    code, out = _verify(ds, capsys)
    assert code == 4 and f"STRUCTURE {p}: row 5 says" in out


def test_sidecar_doc_id_order_and_line(ds, capsys):
    def swap(c):  # two documents swapped: ids out of input order
        for k in ("doc_id", "line"):
            c[k][3], c[k][4] = c[k][4], c[k][3]

    p = _rewrite_sidecar(ds, swap)
    (msg,) = sidecar.check(p)
    assert msg.startswith(f"{p}: row 4 has doc_id ") and "strictly increasing" in msg
    _relist(ds)
    code, out = _verify(ds, capsys)
    assert code == 4 and f"STRUCTURE {p}: row 4 has doc_id" in out

    def wrong_line(c):
        c["line"][7] += 100

    p = _rewrite_sidecar(ds, wrong_line)
    problems = sidecar.check(p)
    assert any(m.startswith(f"{p}: row 7 says line ") for m in problems)


def test_sidecar_doc_id_order_across_batches(ds, monkeypatch):
    monkeypatch.setattr(sidecar, "CHECK_BATCH", 4)

    def dup(c):  # row 8 (first of the third batch) repeats row 7's id
        c["doc_id"][8] = c["doc_id"][7]
        c["line"][8] = c["line"][7]

    p = _rewrite_sidecar(ds, dup)
    (msg,) = sidecar.check(p)
    assert msg.startswith(f"{p}: row 8 has doc_id ")


def test_sidecar_schema_rows_and_unreadable(ds):
    p = ds / f"{PREFIX}.docs.parquet"
    t = pq.read_table(p)
    pq.write_table(t.drop(["line"]), p)
    assert sidecar.check(p) == [
        f"{p}: column line is missing (columns: {t.drop(['line']).schema.names})"
    ]
    pq.write_table(t.set_column(4, "tokens", t.column("tokens").cast(pa.int64())), p)
    assert sidecar.check(p) == [f"{p}: column tokens is int64, expected int32"]
    pq.write_table(t.slice(1), p)
    (msg,) = sidecar.check(p, ds / f"{PREFIX}.idx")
    assert msg == f"{p}: {t.num_rows - 1} rows but {ds / f'{PREFIX}.idx'} has {t.num_rows} items"
    p.write_bytes(b"PAR1 not parquet")
    (msg,) = sidecar.check(p)
    assert msg.startswith(f"{p}: not a readable parquet sidecar")


# ------------------------------------------------------------------------------------ manifests


def test_manifest_check(ds, capsys):
    m = ds / "t.manifest.json"
    assert manifest.check(m) == []
    raw = m.read_text()
    m.write_text(raw.replace('"kind": "token-dataset"', '"kind": "token-dataseT"'))
    (msg,) = manifest.check(m)
    assert msg.startswith(f"{m}: manifest bytes do not match its manifest_sha256")
    m.write_text("{not json")
    (msg,) = manifest.check(m)
    assert msg.startswith(f"{m}: manifest is not valid JSON")
    assert manifest.check(ds / "absent.json")[0].startswith(f"{ds / 'absent.json'}: cannot read")


def test_manifest_entries(ds, capsys):
    m = ds / "t.manifest.json"
    doc = json.loads(m.read_text())
    doc.pop("manifest_sha256")
    doc["files"][0]["bytes"] = "many"
    doc["files"][1]["sha256"] = "xyz"
    doc["files"].append(dict(doc["files"][2]))
    m.write_text(json.dumps(doc))
    problems = manifest.check(m)
    assert problems == [
        f"{m}: no manifest_sha256 (every pile manifest has one): the manifest was edited or damaged",
        f"{m}: files[0].bytes 'many' is not a non-negative integer; the manifest is corrupt",
        f"{m}: files[1].sha256 'xyz' is not 64 hex digits; the manifest is corrupt",
        f"{m}: files[3].name {doc['files'][2]['name']!r} is listed twice; the manifest was edited",
    ]
    code, out = _verify(ds, capsys)  # reported, not a crash on the bad size
    assert code == 4 and f"MANIFEST  {m}: files[0].bytes 'many'" in out


# ----------------------------------------------------------------------------------- byte shards


def test_shard_set_problem():
    assert shard_set_problem("x", [(0, 2), (1, 2), (2, 2)]) is None
    assert shard_set_problem("x", [(0, 2), (2, 2)]) == "shards of x: indices [1] of 0..2 not listed"
    assert (
        shard_set_problem("x", [(0, 1), (1, 2), (2, 2)]) == "shards of x: mixed -of- values [1, 2]"
    )


def test_shards_check(ds, tmp_path):
    out = tmp_path / "shards"
    res = split.shard_bin(ds / PREFIX, out, num_shards=3)
    assert split.check(out) == [] and split.check(res.hash_list) == []
    # the .idx beside them describes more tokens than the shards hold
    res.shards[-1].write_bytes(res.shards[-1].read_bytes()[:-2])
    (msg,) = split.check(out)
    assert msg.startswith(f"{out / PREFIX}: the 3 shards hold ") and "2 bytes too few" in msg
    # a malformed line of the hash list names list:line
    res.hash_list.write_text(res.hash_list.read_text() + "garbage\n")
    problems = split.check(out)
    assert any(p.startswith(f"{res.hash_list}:5: ") for p in problems)
    res.shards[1].unlink()
    (msg,) = split.check(out)
    assert "missing indices [1] of 0..2" in msg and str(out) in msg
