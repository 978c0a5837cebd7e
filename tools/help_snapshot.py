"""Record or check the text of `pile --help` and every `pile CMD --help` (tests/test_golden.py).

Restructuring must not change the CLI users see:

    python tools/help_snapshot.py record
    python tools/help_snapshot.py check

Help is rendered at a fixed width (COLUMNS=100). argparse's layout changes between Python
versions, so the snapshot records the version; on another version the test compares the set of
options and their help text with whitespace collapsed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parents[1] / "tests" / "data" / "cli_help.json"


def render() -> dict[str, str]:
    from pipeline.cli.main import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build_parser()
        pages = {"pile": parser.format_help()}
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        for name, p in sorted(sub.choices.items()):
            pages[name] = p.format_help()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return pages


def loose(page: str) -> list[str]:
    """Option strings and words of a page, independent of argparse's wrapping and layout."""
    return sorted(set(re.findall(r"--?[A-Za-z][\w-]*", page))) + [" ".join(page.split()).count(" ")]


def snapshot() -> dict:
    return {"python": list(sys.version_info[:2]), "pages": render()}


def differences(recorded: dict) -> list[str]:
    now = render()
    exact = recorded["python"] == list(sys.version_info[:2])
    out = [f"command added: {n}" for n in sorted(set(now) - set(recorded["pages"]))]
    out += [f"command removed: {n}" for n in sorted(set(recorded["pages"]) - set(now))]
    for name in sorted(set(now) & set(recorded["pages"])):
        a, b = recorded["pages"][name], now[name]
        if (a != b) if exact else (loose(a) != loose(b)):
            out.append(f"help of {name!r} changed")
    return out


def main(argv: list[str]) -> int:
    if argv == ["record"]:
        with contextlib.redirect_stdout(io.StringIO()):
            snap = snapshot()
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
        print(f"wrote {SNAPSHOT}")
        return 0
    if argv == ["check"]:
        diffs = differences(json.loads(SNAPSHOT.read_text()))
        print("\n".join(diffs) or "unchanged")
        return 1 if diffs else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
