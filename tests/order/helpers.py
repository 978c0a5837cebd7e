"""Shared by the order CLI tests."""

from __future__ import annotations

from pipeline.cli.main import main


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `pile ARGV...` run in process."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err
