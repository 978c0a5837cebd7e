"""Input and output paths of any Unicode (or a newline) make a build.toml that parses back to the
same paths; a path that is not UTF-8 at all is refused with exit 2 naming it."""

from __future__ import annotations

import os
import sys

import pytest

from pipeline.cli.main import main
from pipeline.job.config import load_config_file, resolve_build_config
from tests.read.helpers import pile_line, write_zst

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAMES = ["café 漢字 ü", "new\nline", 'quote" back\\slash\ttab\x7f\x01']


@pytest.mark.parametrize("name", NAMES, ids=["non-ascii", "newline", "quotes-controls"])
def test_dry_run_and_build_toml_round_trip(tmp_path, capsys, name):
    corpus = tmp_path / name
    write_zst(corpus / "00.jsonl.zst", [pile_line(f"document {i}") for i in range(3)])
    out = tmp_path / f"out {name}"
    assert main(["build", "--input", str(corpus), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    config = resolve_build_config(inputs=[str(corpus)], out=str(out))
    text = config.to_toml()
    parsed = tomllib.loads(text)
    assert parsed["input"] == [str(corpus)] and parsed["out"] == str(out)
    assert text.splitlines()[0] in printed  # the dry run prints the same resolved config
    # and `pile build --config OUT/build.toml` resolves it to the very same config
    cfg = tmp_path / "build.toml"
    cfg.write_text(text, encoding="utf-8")
    assert load_config_file(cfg)["input"] == [str(corpus)]
    again = resolve_build_config(config_file=str(cfg))
    assert again.inputs == config.inputs and again.out == config.out
    assert again.fingerprint() == config.fingerprint()


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses non-UTF-8 file names")
def test_path_that_is_not_utf8_is_refused(tmp_path, capsys):
    raw = os.fsencode(tmp_path) + b"/latin\xe9"
    os.makedirs(raw)
    write_zst(
        __import__("pathlib").Path(os.fsdecode(raw)) / "00.jsonl.zst", [pile_line("a document")]
    )
    rc = main(["build", "--input", os.fsdecode(raw), "--out", str(tmp_path / "o"), "--dry-run"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "latin\\xe9" in err and "not valid UTF-8" in err and "rename it" in err
