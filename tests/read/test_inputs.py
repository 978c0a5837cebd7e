"""Input resolution with links and special files: directory links are followed once (loops are
reported, not walked forever), non-regular files are never opened."""

from __future__ import annotations

import logging
import os

import pytest

from pipeline.cli.main import main
from pipeline.errors import InputError
from pipeline.read import iter_documents, resolve_inputs
from tests.read.helpers import pile_line, write_zst


def names(paths):
    return [f.name for f in resolve_inputs(paths)]


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    write_zst(root / "a" / "00.jsonl.zst", [pile_line("in a")])
    write_zst(tmp_path / "elsewhere" / "01.jsonl.zst", [pile_line("behind a link")])
    os.symlink(tmp_path / "elsewhere", root / "linked")
    return root


def test_directory_symlinks_are_followed(corpus):
    found = resolve_inputs([corpus])
    assert [f.name for f in found] == ["a/00.jsonl.zst", "linked/01.jsonl.zst"]
    assert [d.text for d in iter_documents([corpus])] == ["in a", "behind a link"]


def test_symlink_loop_is_reported_not_followed(corpus, caplog):
    os.symlink(corpus, corpus / "a" / "loop")  # back to an ancestor
    os.symlink(corpus / "a", corpus / "again")  # a second link to a walked directory
    with caplog.at_level(logging.WARNING, logger="pipeline.read"):
        assert names([corpus]) == ["a/00.jsonl.zst", "linked/01.jsonl.zst"]
    text = caplog.text
    assert f"not following {corpus / 'a' / 'loop'}: it leads to {corpus}" in text
    assert "symbolic link loop" in text
    assert f"not following {corpus / 'again'}" in text or f"not following {corpus / 'a'}" in text


def test_non_regular_files_in_a_directory_are_skipped_never_opened(corpus, caplog):
    os.mkfifo(corpus / "pipe.jsonl")
    os.symlink("self.jsonl.zst", corpus / "self.jsonl.zst")  # points at itself
    os.symlink(corpus / "missing.jsonl", corpus / "dangling.jsonl")
    with caplog.at_level(logging.WARNING, logger="pipeline.read"):
        # resolving stats, never opens: a FIFO would block this call forever
        assert names([corpus]) == ["a/00.jsonl.zst", "linked/01.jsonl.zst"]
    text = caplog.text
    assert f"skipping {corpus / 'pipe.jsonl'}: it is a FIFO (named pipe)" in text
    assert f"skipping {corpus / 'self.jsonl.zst'}: it is a symbolic link loop" in text
    assert f"skipping {corpus / 'dangling.jsonl'}: it is a broken symbolic link" in text


def test_fifo_or_link_loop_given_explicitly_is_an_input_error(tmp_path, capsys):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.jsonl.zst"
    os.symlink(loop.name, loop)
    with pytest.raises(InputError, match=r"pipe\.jsonl'?: it is a FIFO .*write the data to a file"):
        resolve_inputs([fifo])
    with pytest.raises(InputError, match=r"loop\.jsonl\.zst'?: it is a symbolic link loop"):
        resolve_inputs([loop])
    for path, what in ((fifo, "FIFO"), (loop, "symbolic link loop")):
        assert main(["stats", str(path)]) == 3
        err = capsys.readouterr().err
        assert str(path) in err and what in err and "free space" not in err
    if os.path.exists("/dev/zero"):
        with pytest.raises(InputError, match="it is a device"):
            resolve_inputs(["/dev/zero"])
