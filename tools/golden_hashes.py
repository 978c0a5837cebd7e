"""Record or check the sha256 of every deterministic artifact of `pile build` on the bundled sample.

The restructuring issues promise byte-identical outputs; tests/test_golden.py checks a fresh
build against tests/data/golden_sample_hashes.json, which this script writes:

    python tools/golden_hashes.py record         # builds into a temporary directory
    python tools/golden_hashes.py check [DIR]    # DIR: a tree `produce` made (kept for diffing)

`produce(root)` runs `pile build` on the sample into root/build and the stage commands one by one
(dedup, tokenize of both variants, order, preshuffle, shard) into root/stages.

Files that hold times or the worker count (`_state/`, `logs/`, `build.toml`, `timings.json`) are
left out.
Parquet files and PNGs embed their writer's version, and manifests hash them: those are checked
byte for byte only when pyarrow and matplotlib are the versions the hashes were recorded with;
otherwise parquet tables are compared by content and the rest is skipped with a note.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden_sample_hashes.json"
VOLATILE_DIRS = ("_state", "logs")
VOLATILE_FILES = ("build.toml", "timings.json")
# bytes that depend on nothing but this project's code (numpy's .npy header is fixed by format)
EXACT_SUFFIXES = (".bin", ".idx", ".npy")


def _versions() -> dict[str, str]:
    import matplotlib
    import numpy
    import pyarrow

    return {
        "pyarrow": pyarrow.__version__,
        "matplotlib": matplotlib.__version__,
        "numpy": numpy.__version__,
    }


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _parquet_content(p: Path) -> str:
    import pyarrow.parquet as pq

    t = pq.read_table(p)
    doc = {"schema": [f"{f.name}:{f.type}" for f in t.schema], "rows": t.to_pydict()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def artifacts(out: Path) -> list[str]:
    names = []
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        parts = rel.split("/")
        if set(parts[:-1]) & set(VOLATILE_DIRS) or parts[-1] in VOLATILE_FILES:
            continue
        names.append(rel)
    return names


def record(out: Path) -> dict:
    files = {rel: _sha256(out / rel) for rel in artifacts(out)}
    parquet = {rel: _parquet_content(out / rel) for rel in files if rel.endswith(".parquet")}
    return {"versions": _versions(), "files": files, "parquet_content": parquet}


def check(out: Path, golden: dict) -> tuple[list[str], list[str]]:
    """(differences, notes): an empty first list means the build matches."""
    diffs, notes = [], []
    same_versions = golden["versions"] == _versions()
    if not same_versions:
        notes.append(
            f"library versions {_versions()} differ from the recorded {golden['versions']}: "
            "parquet compared by content; manifests, report and PNGs not compared"
        )
    have = set(artifacts(out))
    want = set(golden["files"])
    diffs += [f"missing: {r}" for r in sorted(want - have)]
    diffs += [f"unexpected: {r}" for r in sorted(have - want)]
    for rel in sorted(want & have):
        if same_versions or rel.endswith(EXACT_SUFFIXES):
            if _sha256(out / rel) != golden["files"][rel]:
                diffs.append(f"bytes differ: {rel}")
        elif rel.endswith(".parquet"):
            if _parquet_content(out / rel) != golden["parquet_content"][rel]:
                diffs.append(f"content differs: {rel}")
    return diffs, notes


def produce(root: Path) -> None:
    """Every artifact the golden hashes cover: `pile build` and the stage commands alone."""
    from pipeline.cli.main import main as pile
    from pipeline.data import sample_dir

    def run(*args: str) -> None:
        rc = pile(list(args))
        if rc != 0:
            raise RuntimeError(f"pile {' '.join(args)} exited {rc}")

    run("build", "--out", str(root / "build"), "--workers", "2", "-q")
    sample, st = sample_dir(), root / "stages"
    train = str(sample / "train")
    run("dedup", train, "--out", str(st / "dedup"), "--workers", "2", "-q")
    run("tokenize", train, "--out", str(st / "tok"), "--prefix", "std", "--workers", "2", "-q")
    run(
        "tokenize",
        train,
        "--out",
        str(st / "tok"),
        "--prefix",
        "ded",
        "--exclude",
        str(st / "dedup"),
        "--workers",
        "2",
        "-q",
    )
    for prefix in ("std", "ded"):
        data = str(st / "tok" / f"{prefix}_text_document")
        run("order", data, "--preset", "sample", "-q")
        run("preshuffle", data, "--preset", "sample", "--out-dir", str(st / f"pre_{prefix}"), "-q")
    run(
        "shard",
        str(st / "tok" / "std_text_document"),
        "--num-shards",
        "3",
        "--out",
        str(st / "shards"),
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("record", "check") or len(argv) > 2:
        print(__doc__)
        return 2
    if len(argv) == 2:
        out = Path(argv[1])
    else:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="pile_golden_"))
        produce(out)
        print(f"built into {out}")
    if argv[0] == "record":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(record(out), indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    diffs, notes = check(out, json.loads(GOLDEN.read_text()))
    for n in notes:
        print("note:", n)
    for d in diffs:
        print(d)
    print("identical" if not diffs else f"{len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
