"""The job modules' imports: no cycles among them, only the shared ones on the login side, and the names both
sides use (file names, exit codes, environment variables) defined once, in launcher.contract.

Read statically (ast), every import wherever it is, a function-local one too: a local import that only dodges
a cycle is still the cycle.
"""
import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB_MODULES = sorted(f"jobs.{p.stem}" for p in (ROOT / "jobs").glob("*.py") if p.stem != "__init__")
# What the login side may import from jobs/: helpers both sides run (never constants: those are launcher.contract's),
# and StageJob, the callable submitit pickles by reference to run a stage.
SHARED_WITH_LAUNCHER = {"jobs.artifacts", "jobs.drafter_metrics", "jobs.run_stage", "jobs.services"}
CONTRACT = "launcher.contract"  # the one module of launcher/ that jobs import: the standard library's only
CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")
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
    allowed = set(sys.stdlib_module_names) | LOGIN_NODE_PACKAGES | {"jobs", "__future__", "launcher"}  # the contract
    needed = {m: sorted(top_level_packages(ROOT / "jobs" / f"{m[5:]}.py") - allowed) for m in sorted(seen)}
    assert {m: packages for m, packages in needed.items() if packages} == {}


def constants_taken_from_jobs(path: Path) -> list:
    """`from jobs.x import NAME` and `x.NAME` (x a job module imported as such) of an UPPER_CASE NAME in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    found, job_aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "jobs":
            for alias in node.names:
                if f"{node.module}.{alias.name}" in JOB_MODULES or f"jobs.{alias.name}" in JOB_MODULES:
                    job_aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif CONSTANT.fullmatch(alias.name):
                    found.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            job_aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in JOB_MODULES})
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in job_aliases \
                and CONSTANT.fullmatch(node.attr):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_launcher_takes_no_constant_from_the_jobs():
    """A name both sides use lives in launcher.contract: the login side importing jobs.* for one would load
    container-side code for a string, and two spellings of it could drift apart."""
    taken = {str(p.relative_to(ROOT)): constants_taken_from_jobs(p) for p in sorted((ROOT / "launcher").rglob("*.py"))}
    assert {path: names for path, names in taken.items() if names} == {}


def test_a_constant_taken_from_the_jobs_is_seen(tmp_path):
    """The check itself: both spellings of the login side reading a job module's constant."""
    source = tmp_path / "m.py"
    source.write_text("from jobs.services import PORT_SPREAD, log_tail\nfrom jobs import artifacts\n"
                      "def f():\n    return artifacts.MANIFEST, artifacts.problem\n")
    assert constants_taken_from_jobs(source) == ["jobs.services.PORT_SPREAD", "artifacts.MANIFEST"]


def module_level_names(path: Path) -> set:
    """The names `path` assigns at its top level (an import binds none here: that is the point)."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            names.update(t.id for t in ast.walk(target) if isinstance(t, ast.Name))
    return names


def test_the_contract_constants_are_defined_nowhere_else():
    contract = ROOT / "launcher" / "contract.py"
    constants = {n for n in module_level_names(contract) if CONSTANT.fullmatch(n) and not n.startswith("_")}
    assert {"MANIFEST", "REPORT_INCOMPLETE", "SANDBOX_PORT_ENV", "ACCOUNTING"} <= constants
    again = {str(p.relative_to(ROOT)): sorted(module_level_names(p) & constants)
             for folder in ("launcher", "jobs") for p in sorted((ROOT / folder).rglob("*.py")) if p != contract}
    assert {path: names for path, names in again.items() if names} == {}


def test_the_jobs_import_only_the_contract_from_the_launcher_and_it_only_the_standard_library():
    from_launcher = {name: sorted(m for m in imported_modules(ROOT / "jobs" / f"{name[5:]}.py", "jobs")
                                  if m.split(".")[0] == "launcher" and m not in (CONTRACT, "launcher")
                                  and not m.startswith(CONTRACT + "."))
                     for name in JOB_MODULES}
    assert {m: found for m, found in from_launcher.items() if found} == {}
    assert top_level_packages(ROOT / "launcher" / "contract.py") <= set(sys.stdlib_module_names)
    importlib.import_module(CONTRACT)
