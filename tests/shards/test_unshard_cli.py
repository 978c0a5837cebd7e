"""`pile unshard` through the CLI: the fixes its errors suggest are real options."""

from __future__ import annotations

import numpy as np

from pipeline.cli.main import main
from pipeline.shards.mmidx import MMIDXDataset, MMIDXWriter
from pipeline.shards.split import shard_bin


def test_missing_hash_list_error_suggests_a_real_fix(tmp_path, capsys):
    w = MMIDXWriter(tmp_path / "d" / "pile_text_document", np.uint16)
    for n in (3, 9, 4, 7):
        w.add_item(np.arange(n))
    w.finalize()
    res = shard_bin(tmp_path / "d" / "pile_text_document", tmp_path / "s", num_shards=2)
    kept = res.hash_list.read_text()
    res.hash_list.unlink()
    assert main(["unshard", str(tmp_path / "s"), "--require-hashes"]) == 4
    err = capsys.readouterr().err
    assert "--hashes" not in err and "pile unshard path/to/list.txt" in err
    # the suggested fix works: the list given as the argument
    listed = tmp_path / "s" / "SHA256SUMS.txt"  # a list of another name, beside the shards
    listed.write_text(kept)
    assert main(["unshard", str(listed), "--require-hashes", "--out", str(tmp_path / "o.bin")]) == 0
    assert (tmp_path / "o.bin").read_bytes() == (
        tmp_path / "d" / "pile_text_document.bin"
    ).read_bytes()


def test_unshard_out_directory_gets_bin_and_idx(tmp_path, capsys):
    w = MMIDXWriter(tmp_path / "d" / "pile_text_document", np.uint16)
    for n in (3, 9, 4, 7):
        w.add_item(np.arange(n))
    w.finalize()
    shard_bin(tmp_path / "d" / "pile_text_document", tmp_path / "s", num_shards=2)
    src = tmp_path / "d" / "pile_text_document"
    # a new path without .bin is a directory; a .bin path is the file itself
    assert main(["unshard", str(tmp_path / "s"), "--out", str(tmp_path / "new")]) == 0
    assert main(["unshard", str(tmp_path / "s"), "--out", str(tmp_path / "f" / "x.bin")]) == 0
    for prefix in (tmp_path / "new" / "pile_text_document", tmp_path / "f" / "x"):
        for ext in (".bin", ".idx"):
            assert prefix.with_suffix(ext).read_bytes() == src.with_suffix(ext).read_bytes()
    joined = MMIDXDataset(tmp_path / "new" / "pile_text_document")
    assert [len(joined[i]) for i in range(len(joined))] == [3, 9, 4, 7]
