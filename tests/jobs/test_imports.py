"""The job modules' imports: no cycles among them, and only the shared ones on the login side.

Read statically (ast), every import wherever it is, a function-local one too: a local import that only dodges
a cycle is still the cycle.
"""
import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB_MODULES = sorted(f"jobs.{p.stem}" for p in (ROOT / "jobs").glob("*.py") if p.stem != "__init__")
# What the login side may import from jobs/: constants and helpers both sides share, and StageJob, the callable
# submitit pickles by reference to run a stage.
SHARED_WITH_LAUNCHER = {"jobs.artifacts", "jobs.drafter_metrics", "jobs.run_stage", "jobs.services"}
# What the login node installs (pyproject's dependencies, by import name): the shared modules, and the job modules
# they import, import nothing else at their top (a job-side package is imported where a stage job uses it).
LOGIN_NODE_PACKAGES = {"hydra", "omegaconf", "submitit", "jinja2", "rich"}


def imported_modules(path: Path, package: str) -> set:
    """Every module `path` imports, by absolute name (`from jobs import x` names the module jobs.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def job_graph() -> dict:
    return {name: sorted(m for m in imported_modules(ROOT / "jobs" / f"{name[5:]}.py", "jobs")
                         if m in JOB_MODULES and m != name)
            for name in JOB_MODULES}


def find_cycle(graph: dict) -> list:
    """One cycle of `graph` as [a, b, ..., a], or [] when there is none (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for successor in graph.get(node, ()):
            if state.get(successor) == "open":
                return stack[stack.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in graph:
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


@pytest.mark.parametrize("module", JOB_MODULES)
def test_every_job_module_imports(module):
    importlib.import_module(module)


def test_the_job_modules_import_each_other_without_cycles():
    assert find_cycle(job_graph()) == []


def test_a_cycle_is_found_however_it_is_hidden():
    """The check itself: a cycle through a function-local import, and a longer one."""
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) == []


def test_local_and_relative_imports_are_seen(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from jobs import services\n\ndef f():\n    from jobs.run_stage import log\n    from . import report\n")
    assert {"jobs.services", "jobs.run_stage", "jobs.report"} <= imported_modules(source, "jobs")


def test_the_launcher_imports_only_the_shared_job_modules():
    used = {}
    for path in sorted((ROOT / "launcher").rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).parent.parts)
        for module in imported_modules(path, package):
            if module in JOB_MODULES:
                used.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert {m: files for m, files in used.items() if m not in SHARED_WITH_LAUNCHER} == {}


def top_level_packages(path: Path) -> set:
    """The packages `path` imports when it is imported: its module-level imports, not its functions'."""
    found = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_the_shared_job_modules_import_only_what_the_login_node_has():
    graph, seen, todo = job_graph(), set(), sorted(SHARED_WITH_LAUNCHER)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    allowed = set(sys.stdlib_module_names) | LOGIN_NODE_PACKAGES | {"jobs", "__future__"}
    needed = {m: sorted(top_level_packages(ROOT / "jobs" / f"{m[5:]}.py") - allowed) for m in sorted(seen)}
    assert {m: packages for m, packages in needed.items() if packages} == {}
