"""The layering rules of DESIGN.md, checked on the source: every import (function-local included, ``TYPE_CHECKING``
blocks excluded) points down the ordered layer list, there is no import circle, only the Ray runner imports Ray, and
no code outside ``benchmark/kinds/`` asks which kind a task is."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "tasks", "reports", "search_spaces")

# Top to bottom. A module belongs to the layer of the longest prefix that names it; an import may point to its own
# layer or any layer below, never above. The data layer holds what the kinds use (samples, inference, the Job's value
# types, profiles, search spaces); science is methods, backbones and their building blocks; tasks are the datasets.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry", ("run_benchmark", "benchmark.cli", "benchmark.perceptual.cli", "benchmark.perceptual.__main__", "benchmark.perf")),
    # The Python API the command line is a thin layer on, and the registry contracts a plugin author runs (public surface).
    ("api", ("benchmark.api", "benchmark.testing")),
    ("run", ("benchmark.run", "benchmark.request", "benchmark.estimate")),
    ("ray_runner", ("benchmark.ray_runner", "benchmark.ray_trial", "benchmark.ray_unit")),
    ("train/plan", ("benchmark.train", "benchmark.plan")),
    ("kinds", ("benchmark.kinds",)),
    ("data", ("benchmark.synthesis", "benchmark.perceptual", "benchmark.inference", "benchmark.prepared", "benchmark.data", "benchmark.volumes", "benchmark.datasources",
              "benchmark.job", "benchmark.external", "benchmark.profiles", "benchmark.spatial_augmentation", "benchmark.augmentations", "search_spaces")),
    ("science", ("benchmark.methods", "benchmark.backbones", "benchmark.blocks")),
    ("tasks", ("tasks",)),
    ("kernel", ("benchmark.records", "benchmark.store", "benchmark.registry", "benchmark.plugins", "benchmark.errors", "benchmark.protocol",
                "benchmark")),
)
# The report is pure: besides itself it may read only these plain value modules.
REPORT_MAY_IMPORT = ("reports", "benchmark.records", "benchmark.errors")


def _module_files() -> dict[str, Path]:
    files = {"run_benchmark": ROOT / "run_benchmark.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = _module_files()


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines |= {n.lineno for n in ast.walk(sub) if hasattr(n, "lineno")}
    return lines


def _imports(module: str, modules: dict[str, Path] = MODULES) -> list[tuple[str, int]]:
    """(imported project module, line) of every import in ``module``, function-local ones included. A package's
    ``__init__`` importing its own submodules counts (importing the package runs them); a module importing its
    own package does not (Python has run that package already)."""
    path = modules[module]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - (node.level - 1)] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved and resolved != module and not module.startswith(resolved + "."):
                out.append((resolved, node.lineno))
    return out


def _layer(module: str) -> int:
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    if not matches:
        raise AssertionError(f"module {module} is in no layer of tests/test_layers.py LAYERS: add it where it belongs")
    return max(matches)[1]


def _graph(modules: dict[str, Path] = MODULES) -> dict[str, set[str]]:
    return {m: {target for target, _ in _imports(m, modules)} for m in modules}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_every_module_is_in_a_layer():
    for module in MODULES:
        if not module.startswith("reports"):
            _layer(module)


def test_every_import_points_down_the_layers():
    """An import into a layer above its own (e.g. a dataset reaching the training loops) is a layering fault."""
    upward = []
    for module in MODULES:
        if module.startswith("reports"):
            continue
        for target, line in _imports(module):
            if target.startswith("reports"):
                continue  # the report is a leaf the run layer calls (checked below)
            if _layer(target) < _layer(module):
                upward.append(f"{MODULES[module].relative_to(ROOT)}:{line} ({LAYERS[_layer(module)][0]}) imports {target} "
                              f"({LAYERS[_layer(target)][0]})")
    assert upward == []


def test_no_import_circles():
    assert _circles(_graph()) == []


def test_reports_import_only_value_modules():
    offenders = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {target}" for m in MODULES if m.startswith("reports")
                 for target, line in _imports(m) if not target.startswith(REPORT_MAY_IMPORT)]
    assert offenders == []


def test_the_layering_check_sees_function_local_imports_and_circles(tmp_path):
    """The guard itself: a deferred import that points up, and a circle through a package's ``__init__``, are found."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "tasks" / "reader.py").write_text("def f():\n    from benchmark.train import x\n")
    (tmp_path / "benchmark" / "__init__.py").write_text("from benchmark import train\n")
    (tmp_path / "benchmark" / "train.py").write_text("import benchmark\nfrom tasks.reader import f\n")
    files = {"tasks.reader": tmp_path / "tasks" / "reader.py", "benchmark": tmp_path / "benchmark" / "__init__.py",
             "benchmark.train": tmp_path / "benchmark" / "train.py"}
    assert ("benchmark.train", 2) in _imports("tasks.reader", files)
    assert _layer("benchmark.train") < _layer("tasks.reader")  # points up
    assert ("benchmark.train", 1) in _imports("benchmark", files)  # a package's __init__ runs its submodules
    assert ("benchmark", 1) not in _imports("benchmark.train", files)  # importing one's own package is no edge
    assert _circles(_graph(files)) == [["benchmark.train", "tasks.reader"]]


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_ray_layer_imports_ray():
    importers = sorted(str(p.relative_to(ROOT)) for m, p in MODULES.items() if "ray" in _imported_roots(p))
    assert importers == ["benchmark/ray_runner.py", "benchmark/ray_trial.py", "benchmark/ray_unit.py"]


def test_the_one_worker_trial_module_stays_free_of_torch():
    """A one-worker Job's Tune trial is a new process per Job that only submits the Job's task: importing torch or
    MONAI there would cost each Job seconds again (``benchmark.ray_trial``)."""
    code = ("import sys, benchmark.ray_trial; heavy = sorted({'torch', 'monai', 'benchmark.train', 'benchmark.ray_unit'} & set(sys.modules)); "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_no_kind_checks_outside_the_task_kinds():
    """Segmentation vs classification vs synthesis is dispatched through ``kind_of(task)``'s methods, never compared by name."""
    pattern = re.compile(r"""kind\s*[!=]=\s*["'](segmentation|classification|synthesis)["']|getattr\([^)]*["']kind["']""")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in MODULES.values() if "kinds" not in p.parts
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


@pytest.mark.parametrize("module", ["tasks.base", "tasks.brats", "tasks.synthesis", "tasks.classification"])
def test_datasets_name_their_kind_and_import_no_training_code(module):
    """A dataset file reaches only the kernel (errors, registry, records) of the benchmark package."""
    benchmark_imports = {t for t, _ in _imports(module) if t.startswith("benchmark")}
    assert benchmark_imports <= {"benchmark.errors", "benchmark.registry", "benchmark.records"}
