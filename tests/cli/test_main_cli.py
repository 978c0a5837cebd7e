from __future__ import annotations

import json
import re

import pytest

from pipeline.cli.main import main
from tests.read.helpers import pile_line, write_zst


def test_help_lists_only_real_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "stats" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: pile" in capsys.readouterr().out


def test_stats_table_and_json(tmp_path, capsys):
    p = write_zst(
        tmp_path / "s.jsonl.zst",
        [pile_line("abcd", "ArXiv"), pile_line("ef", "Github"), pile_line("", "Github")],
    )
    assert main(["stats", str(p)]) == 0
    out = capsys.readouterr().out
    assert "ArXiv" in out and "Github" in out and "empty (skipped) 1" in out
    assert main(["stats", "--json", str(p)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["documents"] == 2 and d["empty"] == 1
    assert d["sources"]["ArXiv"]["bytes"] == 4
    assert list(d["sources"]) == ["ArXiv", "Github"]  # ordered by bytes


def test_stats_errors_exit_codes(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "missing.jsonl")]) == 3
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{nope\n")
    assert main(["stats", str(bad)]) == 3
    assert f"{bad}:1" in capsys.readouterr().err
    # skipped into quarantine; nothing at all was readable, which is an input error
    assert main(["stats", "--on-error", "skip", "--quarantine", str(tmp_path / "q"), str(bad)]) == 3
    assert "rejected 1" in capsys.readouterr().out
    assert (tmp_path / "q" / "00000-bad.jsonl.rejected.jsonl").read_bytes() == b"{nope\n"
    (tmp_path / "x.txt").write_text("x")
    assert main(["stats", str(tmp_path / "x.txt")]) == 2


def test_stats_workers_same_answer(tmp_path, capsys):
    for i in range(3):
        write_zst(tmp_path / f"{i}.jsonl.zst", [pile_line("t" * (i + 1), f"S{i}")] * 5)
    assert main(["stats", "--json", str(tmp_path)]) == 0
    one = capsys.readouterr().out
    assert main(["stats", "--json", "--workers", "2", str(tmp_path)]) == 0
    assert capsys.readouterr().out == one


def test_stats_default_is_bundled_sample(capsys):
    assert main(["stats", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["sources"]) == 22 and d["files"] == 6 and d["rejected"] == 0


def _command_names() -> list[str]:
    from pipeline.cli.main import _command_modules

    return [m.NAME for m in _command_modules()]


@pytest.mark.parametrize("command", _command_names())
def test_help_shows_each_default_once_and_never_none(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert "(default: None)" not in out
    # a help text that states its default gets no second one
    assert not re.search(r"\(default:[^()]*\) \(default:", out), out
    assert "-q, --quiet" in out


def test_quiet_and_verbose_after_the_subcommand(tmp_path, capsys):
    import logging

    p = write_zst(tmp_path / "s.jsonl.zst", [pile_line("abcd", "ArXiv")])
    assert main(["stats", str(p), "-q"]) == 0
    assert logging.getLogger("pipeline").level == logging.WARNING
    assert main(["stats", str(p), "-v"]) == 0
    assert logging.getLogger("pipeline").level == logging.DEBUG
    assert main(["-q", "stats", str(p)]) == 0  # before the subcommand as well
    assert logging.getLogger("pipeline").level == logging.WARNING


def test_out_that_is_a_file_says_so(tmp_path, capsys):
    p = write_zst(tmp_path / "s.jsonl.zst", [pile_line("abcd", "ArXiv")])
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    assert main(["dedup", str(p), "--out", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert "A file is in the way" in err and "free space" not in err


def test_stats_all_rejected_exit_3_and_names_the_quarantine(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "bad.jsonl"
    p.write_text('{"content": "a"}\n{"content": "b"}\n')
    assert main(["stats", str(p), "--on-error", "skip"]) == 3
    cap = capsys.readouterr()
    assert "2 rejected record(s) kept verbatim" in cap.err and "quarantine/" in cap.err
    assert "all 2 record(s) were rejected (missing-text: 2)" in cap.err
    assert "100.00%" not in cap.out  # an empty total has no share
    assert (tmp_path / "quarantine" / "00000-bad.jsonl.rejected.jsonl").read_text().count("\n") == 2
    assert main(["stats", str(p), "--on-error", "skip", "--text-key", "content"]) == 0


def test_a_closed_pipe_ends_quietly_like_sigpipe():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import pipeline.cli.commands.stats as st\n"
        "from pipeline.cli.main import main\n"
        "def run(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "st.run = run\n"
        "sys.exit(main(['stats']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 141 and "Broken pipe" not in res.stderr, res.stderr
