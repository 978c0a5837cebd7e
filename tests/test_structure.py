"""The package structure the architecture promises, checked on the source (ast, no imports):
stages get their engine passed in, and packages use each other only through public names."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
# what a module outside pipeline/engine may take from the engine package
EXECUTOR_NAMES = {"Executor", "InlineExecutor", "ENGINES"}  # ENGINES: the names, for choices
# the packages that build executors (from the command line, from build.toml)
MAY_MAKE_EXECUTOR = {"cli", "job"}


@functools.cache
def _modules() -> tuple[tuple[Path, ast.AST], ...]:
    return tuple(
        (path.relative_to(PIPELINE), ast.parse(path.read_bytes(), filename=str(path)))
        for path in sorted(PIPELINE.rglob("*.py"))
    )


def _package(rel: Path) -> str:
    """The first-level package of a module: pipeline/dedup/stage.py -> "dedup"; the modules
    directly in pipeline/ (io.py, lock.py, verify.py, ...) form the package ""."""
    return rel.parts[0] if len(rel.parts) > 1 else ""


def _imports(tree: ast.AST):
    """(module, names) of every import; `import a.b` gives ("a.b", [])."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [a.name for a in node.names]


def _engine_problems(rel: Path, tree: ast.AST) -> list[str]:
    pkg = _package(rel)
    allowed = EXECUTOR_NAMES | (
        {"make_executor", "LazyExecutor"} if pkg in MAY_MAKE_EXECUTOR else set()
    )
    bad = []
    for line, module, names in _imports(tree):
        if module == "pipeline" and "engine" in names:
            bad.append(f"pipeline/{rel}:{line}: imports the engine package itself")
        if module != "pipeline.engine" and not module.startswith("pipeline.engine."):
            continue
        if module not in ("pipeline.engine", "pipeline.engine.base") or not names:
            bad.append(f"pipeline/{rel}:{line}: imports {module} (a concrete engine)")
            continue
        extra = sorted(set(names) - allowed)
        if extra:
            bad.append(f"pipeline/{rel}:{line}: takes {', '.join(extra)} from {module}")
    return bad


def test_no_module_outside_the_engine_package_picks_an_engine():
    """Stages receive an Executor and never import a concrete engine; only the CLI and the job
    runner build one (make_executor), so a new engine plugs in without touching stage code."""
    bad = []
    for rel, tree in _modules():
        if _package(rel) != "engine":
            bad += _engine_problems(rel, tree)
    assert not bad, "\n".join(bad)


def _private_problems(rel: Path, tree: ast.AST) -> list[str]:
    pkg = _package(rel)
    bad = []
    for line, module, names in _imports(tree):
        if not module.startswith("pipeline."):
            continue
        parts = module.split(".")
        theirs = parts[1] if len(parts) > 2 or (PIPELINE / parts[1]).is_dir() else ""
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if theirs != pkg and private:
            bad.append(f"pipeline/{rel}:{line}: imports {', '.join(private)} from {module}")
    return bad


def test_no_module_imports_a_private_name_of_another_package():
    bad = []
    for rel, tree in _modules():
        bad += _private_problems(rel, tree)
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_violation(tmp_path):
    """The checks are not vacuous: a stage module importing the local engine or a private name
    of another package is reported."""
    tree = ast.parse(
        "from pipeline.engine.local import LocalExecutor\n"
        "from pipeline.engine import make_executor, Executor\n"
        "import pipeline.engine.local\n"
    )
    got = _engine_problems(Path("dedup/stage.py"), tree)
    assert len(got) == 3 and "make_executor" in got[1]
    ok = ast.parse("from pipeline.engine import make_executor, Executor\n")
    assert _engine_problems(Path("job/runner.py"), ok) == []
    assert _engine_problems(Path("tokenize/stage.py"), ok) != []
    private = ast.parse("from pipeline.read.reader import _Quarantine\n")
    assert _private_problems(Path("dedup/stage.py"), private) != []
    assert _private_problems(Path("read/other.py"), private) == []
