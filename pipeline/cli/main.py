"""The `pile` command: one entry point, one subcommand per module in `pipeline.cli.commands`.

A command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`; it is
listed here automatically (sorted by name), so `pile --help` shows exactly the commands that exist.
Errors derived from `PipelineError` are printed as one clear line and mapped to their exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence

from pipeline import __version__
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows a flag's default unless its help already says it, it has none (None), or it is an
    on/off switch (whose default is plain from its name)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default is None
            or action.default is argparse.SUPPRESS
            or isinstance(action.default, bool)
            or action.nargs == 0
        ):
            return text
        return super()._get_help_string(action)


def _add_global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    # accepted before or after the subcommand (`pile -q build` and `pile build -q`); on the
    # subcommand they default to SUPPRESS so an absent flag keeps the top-level value
    kw = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "-v", "--verbose", action="count", help="more logging", **({"default": 0} if top else kw)
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only", **kw)


def _command_modules(only: str | None = None):
    """The command modules; with `only`, just that one (a command imports its stage's heavy
    dependencies, so `pile verify` does not pay for importing the dedup stage)."""
    import pipeline.cli.commands as pkg

    names = sorted(
        info.name for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_")
    )
    if only is not None and only in names:
        names = [only]
    mods = []
    for name in names:
        mod = importlib.import_module(f"{pkg.__name__}.{name}")
        if all(hasattr(mod, a) for a in ("NAME", "HELP", "add_arguments", "run")):
            mods.append(mod)
    return sorted(mods, key=lambda m: m.NAME)


def _requested_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named in argv (first token that is not a global option), if any."""
    for tok in argv or ():
        if tok in ("-h", "--help", "--version"):
            return None
        if not tok.startswith("-"):
            return tok
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pile",
        description="Pile data preparation: read, dedup, tokenize, order, inspect, verify.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pile {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules(_requested_command(argv)):
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=HelpFormatter,
        )
        mod.add_arguments(p)
        _add_global_options(p, top=False)
        p.set_defaults(_run=mod.run)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now, so repeated in-process `main()` calls with a
    redirected stderr (tests, notebooks) each get their own log lines."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    root = logging.getLogger("pipeline")
    root.setLevel(level)
    if not any(getattr(h, "_pile_cli", False) for h in root.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        h._pile_cli = True  # type: ignore[attr-defined]
        root.addHandler(h)
    for h in root.handlers:
        if getattr(h, "_pile_cli", False):
            h.setLevel(level)


def _os_error_fix(e: OSError) -> str:
    import errno

    rerun = "then rerun: finished files are intact and partial *.tmp files are never used."
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return (
            "A file is in the way where a directory is needed: pick another output location or move "
            "it away."
        )
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"Free space (or write the output to a larger disk), {rerun}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Check permissions (or pick a writable output location), {rerun}"
    return f"Check free space and permissions, {rerun}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args._run(args) or 0)
    except PipelineError as e:
        print(f"pile {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # the reader of our output went away (`pile stats --json | head`): stop quietly, as
        # Unix tools do on SIGPIPE, and keep Python from complaining when it flushes stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as e:
        # disk full, read-only or unwritable output, vanished input: say what and where; every
        # artifact is written as *.tmp and renamed when complete, so nothing half-written remains
        # a bare write() error (disk full) names no file: say at least where output goes
        out = getattr(args, "out", None) or getattr(args, "out_dir", None)
        if getattr(e, "filename", None):
            where = f" ({e.filename})"
        else:
            where = f" (while writing under {out})" if out else ""
        print(
            f"pile {args.command}: error: {e.strerror or e}{where}. {_os_error_fix(e)}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"pile {args.command}: interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()
