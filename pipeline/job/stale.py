"""Why a stage's key changed, and the variants a build leaves out that no longer match.

A build of one variant reports (never deletes) the other variant when its completed stages no
longer match the current inputs and config (`stale_variants`): they are the user's data.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.job.state import COMPLETE, load_record

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.job.plan import BuildPlan


@dataclass
class StaleVariant:
    """A variant left out of this build whose outputs describe other inputs or another config."""

    variant: str
    out: Path
    dirs: list[Path] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def message(self) -> str:
        dirs = " and ".join(f"{d.relative_to(self.out).as_posix()}/" for d in self.dirs)
        toml = shlex.quote(str(self.out / "build.toml"))
        rm = " ".join(shlex.quote(str(d)) for d in self.dirs)
        many = len(self.dirs) > 1
        is_, it = ("are", "them") if many else ("is", "it")
        return (
            f"{dirs} in {self.out} {is_} stale ({self.reason}) and this build does not update "
            f"{it} (stages {', '.join(self.stages)}). Rebuild {it} with `pile build --config "
            f"{toml} --variant both` (up-to-date stages are skipped), or remove {it}: `rm -r {rm}`."
        )


def stale_variants(plan: BuildPlan) -> list[StaleVariant]:
    """The variants this build does not update (`--variant standard|deduped`) whose completed
    stages no longer match what the current inputs and config give. They are reported, never
    deleted. A variant whose outputs were all removed is not; build-wide stages that serve no
    variant (the report) are the build's own."""
    current = {st.name for st in plan.stages}
    everything = ("standard", "deduped")
    found: dict[str, StaleVariant] = {}
    for st in plan.plan(everything):
        if st.name in current or st.variant not in everything:
            continue
        rec = load_record(plan.out, st.name)
        if not rec or rec.get("status", COMPLETE) != COMPLETE or rec.get("key") == st.key:
            continue
        outputs = [plan.out / f["name"] for f in rec.get("outputs", []) if "name" in f]
        if not any(p.exists() for p in outputs):
            continue
        item = found.setdefault(st.variant, StaleVariant(st.variant, plan.out))
        item.stages.append(st.name)
        # the variant's top directory under OUT (`deduped/`, not `deduped/preshuffled/`)
        directory = plan.out / Path(st.directory.relative_to(plan.out)).parts[0]
        if directory not in item.dirs:
            item.dirs.append(directory)
        if not item.reason:  # the first stale stage in dependency order says why
            item.reason = describe_change(rec.get("basis"), st.basis) or (
                "its inputs or config changed since it was built"
            )
    return list(found.values())


def describe_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """Why a stage key changed, from the basis stored in its record and the current one: the
    input files whose size or mtime changed, the configs that changed. None when the record has
    no basis (written by an older version) or nothing differs that it can name."""
    if not isinstance(old, dict):
        return None
    reasons = []
    if old.get("version") != new["version"]:
        reasons.append(f"pile version changed ({old.get('version')} -> {new['version']})")
    if "inputs" in new:
        reasons += input_changes(old.get("inputs") or [], new["inputs"])
        if old.get("read") != new["read"]:
            reasons.append("read config changed")
    for part, fp in new["config"].items():
        if (old.get("config") or {}).get(part) != fp:
            reasons.append(f"{part} config changed")
    for name, key in new["upstream"].items():
        if (old.get("upstream") or {}).get(name) != key:
            reasons.append(f"upstream stage {name} changed")
    return "; ".join(reasons) or None


def input_changes(old: list[Any], new: list[list[Any]], show: int = 3) -> list[str]:
    """`input train/02.jsonl.zst changed (mtime)`, `... added`, `... removed`, by (path, split)."""
    old = [o for o in old if isinstance(o, list) and len(o) == 6]
    old_by = {(o[1], o[3]): o for o in old}
    new_ids = {(n[1], n[3]) for n in new}
    msgs = []
    for n in new:
        o = old_by.get((n[1], n[3]))
        if o is None:
            msgs.append(f"input {n[0]} added")
            continue
        what = [w for w, i in (("kind", 2), ("size", 4), ("mtime", 5)) if o[i] != n[i]]
        if what:
            msgs.append(f"input {n[0]} changed ({', '.join(what)})")
    msgs += [f"input {o[0]} removed" for o in old if (o[1], o[3]) not in new_ids]
    if not msgs and [(o[1], o[3]) for o in old] != [(n[1], n[3]) for n in new]:
        msgs.append("input order changed (document ids follow it)")
    if len(msgs) > show:
        msgs = msgs[:show] + [f"{len(msgs) - show} more input change(s)"]
    return msgs
