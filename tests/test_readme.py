"""The README's library example runs as written (as a script, with worker processes), on the
bundled sample instead of /data/pile, and gives the same bytes as `pile build`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pipeline.cli.main import main
from pipeline.data import sample_files

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Library use")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_library_example_runs_and_matches_pile_build(tmp_path):
    code = _example()
    train = str(Path(sample_files()[0]).parent)
    for old, new in (
        ('"/data/pile/train"', repr(train)),
        ('"out/', repr(str(tmp_path / "lib")) + ' + "/'),
        ('from_preset("pythia")', 'from_preset("sample")'),
        (".step(1000)", ".step(5)"),
    ):
        assert old in code, old
        code = code.replace(old, new)
    script = tmp_path / "example.py"
    script.write_text(code + "\n    assert step.shape == (8, 2049), step.shape\n")
    res = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert main(["-q", "build", "--out", str(tmp_path / "cli"), "--variant", "deduped"]) == 0
    for name in ("pile_0.87_deduped_text_document.bin", "pile_0.87_deduped_text_document.idx"):
        lib = (tmp_path / "lib" / "deduped" / name).read_bytes()
        assert lib == (tmp_path / "cli" / "deduped" / name).read_bytes(), name


def test_every_command_option_is_in_the_readme():
    import argparse

    from pipeline.cli.main import build_parser

    text = README.read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, parser in sub.choices.items():
        assert f"pile {name}" in text, name
        for action in parser._actions:
            for opt in action.option_strings:
                if not opt.startswith("--") or opt in ("--help", "--verbose", "--quiet"):
                    continue
                bare = opt[2:].removeprefix("no-")
                if opt not in text and f"--[no-]{bare}" not in text:
                    missing.append(f"pile {name} {opt}")
    assert not missing, missing
