"""The output directory of a build: refuse someone else's directory, create it, keep every write
inside it (no symlinked stage directory), and record the resolved config (`build.toml`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError, PipelineError
from pipeline.io import atomic_write_text
from pipeline.job.config import BuildConfig
from pipeline.job.state import STATE_DIR

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.job.plan import BuildPlan

# directories the runner itself writes in (the stages' come from their specs)
RUNNER_DIRS = (STATE_DIR, "logs", "quarantine")


def check_out_dir(out: str | Path, force: bool = False) -> None:
    """Refuse an existing non-empty directory that is not a pile build (no `build.toml`, no
    `_state/`): its files are someone's, and a build would overwrite `report.html` and the
    like. `force` builds there anyway (pile still removes only files its records name)."""
    out = Path(out)
    try:
        entries = sorted(os.listdir(out))
    except OSError:
        return  # missing, a file or unreadable: ensure_out_dir names the problem
    theirs = [e for e in entries if e not in ("logs", ".lock")]
    if not theirs or force or "build.toml" in entries or STATE_DIR in entries:
        return
    shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
    raise ConfigError(
        f"--out {out} is a non-empty directory that is not a pile build (it holds {shown}; no "
        "build.toml or _state/). Pick a new or empty --out, or pass --force to build there "
        "anyway (pile would write build.toml, report.html, report/, logs/ and its stage "
        "directories beside your files)."
    )


def ensure_out_dir(out: str | Path) -> Path:
    out = Path(out)
    if (out / "logs").is_symlink():  # the build log would be written elsewhere
        raise ConfigError(
            f"{out / 'logs'} is a symlink (to {os.readlink(out / 'logs')}); pile build writes only "
            "inside its output directory. Replace it with a real directory."
        )
    try:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(
            f"cannot create output directory {out}: {e.strerror}. Choose a writable --out."
        ) from None
    return out


def check_confined(plan: BuildPlan) -> None:
    """Every directory a stage writes in must be a real directory inside OUT: a symlinked
    `OUT/standard` would make the build write and remove files elsewhere."""
    out = plan.out
    root = out.resolve()
    dirs = set(RUNNER_DIRS)
    for st in plan.stages:
        dirs.update(str(Path(n).parent) for n in st.planned)
        dirs.update(st.spec.work_dirs(st.variant))
    for d in sorted(dirs):
        here = out
        for part in Path(d).parts:
            here = here / part
            if here.is_symlink():
                raise ConfigError(
                    f"{here} is a symlink (to {os.readlink(here)}); pile build writes and "
                    f"removes files only inside {root}. Replace it with a real directory "
                    "(move the linked data into it), or build into another --out."
                )
            if not here.exists():
                break


def write_build_toml(config: BuildConfig) -> Path:
    path = Path(config.out) / "build.toml"
    atomic_write_text(path, config.to_toml())
    return path
