"""Package boundaries: our kernels import as `cjepa_kernels` beside PyPI's `kernels`, and the import rules of the
README's architecture section hold: no cycle between project modules, cjepa never imports launchers, layers import
only downward, and an import inside a function says why it is there."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import cjepa_kernels.registry
import pytest

from tests.helpers import REPO

# Run in a fresh interpreter, so that what sys.path holds is decided by the working directory alone.
_IMPORT_PROBE = """
import importlib.util, json, sys, warnings
import cjepa_kernels.registry, cjepa_kernels.slot_attention, cjepa_kernels.predictor_attention
from cjepa.models.dinov2 import Dinov2Backbone
warnings.simplefilter("ignore")
Dinov2Backbone(dim=32, depth=1, heads=2, pos_grid=4, patch_size=14, image_size=56)
spec = importlib.util.find_spec("kernels")
print(json.dumps({"ours": cjepa_kernels.registry.__file__, "kernels": spec and spec.origin}))
"""


def test_kernels_folder_imports_as_cjepa_kernels():
    """The registry loaded is this repository's, under the import name setup.py maps kernels/ to."""
    assert Path(cjepa_kernels.registry.__file__).resolve() == REPO / "kernels" / "registry.py"
    assert not (REPO / "kernels" / "__init__.py").exists(), "a regular package named kernels shadows PyPI's kernels"


@pytest.mark.parametrize("cwd", ["repo_root", "elsewhere"])
def test_dinov2_and_our_kernels_import_beside_pypi_kernels(cwd, tmp_path):
    """From the repo root and from another folder, DINOv2 (transformers) builds and our kernels import; if PyPI's
    `kernels` is installed (transformers 5 pulls it in), `import kernels` is that package, never our folder."""
    import json

    workdir = REPO if cwd == "repo_root" else tmp_path
    # -c puts the working directory first on sys.path, as `python -m pytest` from the repo root does
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=workdir, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(found["ours"]).resolve() == REPO / "kernels" / "registry.py"
    if importlib.util.find_spec("kernels") is not None and found["kernels"] is not None:
        assert not Path(found["kernels"]).resolve().is_relative_to(REPO / "kernels"), found


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def check(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for f in sorted((REPO / folder).rglob("*.py")):
        for mod in imported_modules(f):
            if any(mod == x or mod.startswith(x + ".") for x in forbidden):
                bad.append(f"{f.relative_to(REPO)} imports {mod}")
    return bad


def test_models_are_pure_single_device_torch():
    """cjepa/models imports no data, dist, train, launchers or kernels (kernels come through cjepa.backends)."""
    assert check("cjepa/models",
                 ("cjepa.data", "cjepa.distributed", "cjepa.trainer", "cjepa.tasks", "launchers",
                  "cjepa_kernels")) == []


def test_data_knows_nothing_about_models_or_training():
    assert check("cjepa/data",
                 ("cjepa.models", "cjepa.trainer", "cjepa.tasks", "cjepa.distributed", "launchers",
                  "cjepa_kernels")) == []


def test_tasks_and_engines_never_import_what_runs_them():
    """Dependencies point one way (trainer -> tasks, trainer -> engines): no task or engine module imports the
    trainer, the commands or the launchers, not even inside a function."""
    above = ("cjepa.trainer", "cjepa.commands", "cjepa.cli", "launchers")
    assert check("cjepa/tasks", above) == []
    assert check("cjepa/distributed", (*above, "cjepa.tasks")) == []


def test_kernels_import_only_torch_triton_and_their_references():
    """kernels/* imports torch, triton, the standard library, and cjepa's reference modules (cjepa.backends,
    cjepa.losses)."""
    allowed_cjepa = ("cjepa.backends", "cjepa.losses")
    bad = []
    for f in sorted((REPO / "kernels").rglob("*.py")):
        for mod in imported_modules(f):
            top = mod.split(".")[0]
            if top == "cjepa" and not mod.startswith(allowed_cjepa):
                bad.append(f"{f.name}: {mod}")
            if top in ("launchers",) or mod.startswith(("cjepa.trainer", "cjepa.data", "cjepa.distributed")):
                bad.append(f"{f.name}: {mod}")
    assert bad == []


# ------------------------------------------------------------------------------------------- the import graph

# import name -> folder: kernels/ is imported as cjepa_kernels (setup.py's package_dir)
PROJECT = {"cjepa": REPO / "cjepa", "cjepa_kernels": REPO / "kernels", "launchers": REPO / "launchers"}
# The clip pipeline's two cycles (loader -> dali for data.decoder=dali, clips -> shard_source for
# encoder.data.source=shards); they are the only ones left and go with that pipeline's rework.
PENDING_CYCLES: list[list[str]] = []
# Command modules import their work inside run(): the CLI imports the chosen command's module before parsing, so
# `cjepa COMMAND --help` would otherwise load torch (start-up time). Their function-level imports need no comment each.
COMMAND_FOLDERS = (REPO / "cjepa" / "commands", REPO / "launchers" / "commands")
# Modules whose imports inside functions are not sorted yet (the clip pipeline, the config schema, rank discovery).
UNSORTED_FUNCTION_IMPORTS: tuple[str, ...] = ()


def project_modules(packages: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under each package folder."""
    modules = {}
    for name, folder in packages.items():
        for f in sorted(folder.rglob("*.py")):
            parts = [name, *f.relative_to(folder).with_suffix("").parts]
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return modules


def imports_of(path: Path, module: str) -> list[tuple[ast.stmt, list[str]]]:
    """Every import statement of a file (module level and inside functions) with the dotted names it may load."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.append((node, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node, [base, *(f"{base}.{a.name}" for a in node.names)]))
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: line}; `from pkg import mod` counts as importing pkg.mod."""

    def resolve(name: str):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for mod, path in modules.items():
        for node, names in imports_of(path, mod):
            for target in filter(None, map(resolve, names)):
                if target != mod and not mod.startswith(target + "."):  # a package's own __init__ is no edge
                    graph[mod].setdefault(target, node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return sorted(found)


def describe_cycle(graph: dict[str, dict[str, int]], modules: dict[str, Path], comp: list[str]) -> str:
    edges = [f"{modules[a].relative_to(REPO)}:{graph[a][b]} imports {b}" for a in comp for b in comp if b in graph[a]]
    return " <-> ".join(comp) + " (" + "; ".join(edges) + ")"


def test_cycles_are_found_through_function_level_and_relative_imports(tmp_path):
    """The walker itself: a cycle closed by an import inside a function, or by a relative import, is a cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg import a\n")
    (pkg / "c.py").write_text("from .sub import d\n")
    (pkg / "sub" / "d.py").write_text("from ..c import x\n")
    (pkg / "e.py").write_text("import pkg.a\n")
    graph = import_graph(project_modules({"pkg": pkg}))
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"], ["pkg.c", "pkg.sub.d"]]


def test_no_import_cycle_between_project_modules():
    """cjepa, cjepa_kernels and launchers, imports inside functions included: no module reaches itself again."""
    modules = project_modules(PROJECT)
    graph = import_graph(modules)
    found = [describe_cycle(graph, modules, c) for c in cycles(graph) if c not in PENDING_CYCLES]
    assert found == [], "import cycles:\n" + "\n".join(found)


def test_library_never_imports_launchers():
    """Launchers depend on cjepa, never the reverse: no cjepa module imports launchers, not even inside a
    function (the CLI finds `cjepa submit` / `cjepa sweep` by module name)."""
    modules = project_modules(PROJECT)
    graph = import_graph(modules)
    bad = [f"{modules[m].relative_to(REPO)}:{line} imports {t}" for m in modules if m.startswith("cjepa.")
           for t, line in graph[m].items() if t.split(".")[0] == "launchers"]
    assert bad == []


def _comment_near(lines: list[str], node: ast.stmt) -> bool:
    """A comment on the import's own lines, or on the line above the block of imports it belongs to."""
    if any("#" in line for line in lines[node.lineno - 1: node.end_lineno]):
        return True
    above = node.lineno - 2
    while above >= 0 and lines[above].strip().startswith(("import ", "from ")):
        above -= 1
    return above >= 0 and lines[above].strip().startswith("#")


def _function_level_imports(path: Path, module: str) -> list[tuple[ast.stmt, list[str]]]:
    """The imports of a file that sit inside a function (not those of try/if blocks at module level)."""
    functions = [fn for fn in ast.walk(ast.parse(path.read_text())) if isinstance(fn,
                                                                                  (ast.FunctionDef,
                                                                                   ast.AsyncFunctionDef))]
    inside = {(node.lineno, node.col_offset) for fn in functions for node in ast.walk(fn)
              if isinstance(node, (ast.Import, ast.ImportFrom))}
    return [(node, names) for node, names in imports_of(path, module) if (node.lineno, node.col_offset) in inside]


def test_function_level_imports_say_why():
    """An import of a project module inside a function is there for an optional dependency, start-up time or a
    layer rule, and a comment says which; anything else belongs at the top of the file."""
    bad = []
    for mod, path in project_modules(PROJECT).items():
        if path.parent in COMMAND_FOLDERS or path.relative_to(REPO).as_posix() in UNSORTED_FUNCTION_IMPORTS:
            continue
        lines = path.read_text().splitlines()
        for node, names in _function_level_imports(path, mod):
            if any(n.split(".")[0] in PROJECT for n in names) and not _comment_near(lines, node):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert bad == [], f"{len(bad)} function-level imports without a comment saying why: {bad}"


# (importing module, imported module, private name) still waiting for a public name: the config schema's section
# merge and the clip pipeline's shared readers.
PRIVATE_PENDING: set[tuple[str, str, str]] = set()


def test_no_private_names_imported_across_modules():
    """A name with a leading underscore is its module's own business: another module importing it is a hidden
    dependency. What two modules share gets a public name."""
    bad = []
    for mod, path in project_modules(PROJECT).items():
        for node, _ in imports_of(path, mod):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PROJECT:
                bad += [
                    f"{path.relative_to(REPO)}:{node.lineno} imports {a.name} from {node.module}"
                    for a in node.names
                    if a.name.startswith("_") and (mod, node.module, a.name) not in PRIVATE_PENDING
                ]
    assert bad == []
