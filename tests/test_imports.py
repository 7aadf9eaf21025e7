"""Package boundaries: our `kernels` is the one imported, and the import rules of design.md hold."""

import ast
from pathlib import Path

import kernels
from tests.helpers import REPO


def test_kernels_package_is_ours():
    """PyPI has an unrelated `kernels` package; the one on the path must be this repository's."""
    assert Path(kernels.__file__).resolve().is_relative_to(REPO)
    assert getattr(kernels, "CJEPA_KERNELS", False)


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
    """cjepa/models imports no data, dist, train, launchers or kernels (kernels come through cjepa.ops)."""
    assert check("cjepa/models", ("cjepa.data", "cjepa.dist", "cjepa.train", "cjepa.tasks", "launchers", "kernels")) == []


def test_data_knows_nothing_about_models_or_training():
    assert check("cjepa/data", ("cjepa.models", "cjepa.train", "cjepa.tasks", "cjepa.dist", "launchers", "kernels")) == []


def test_library_never_imports_launchers_at_module_level():
    """cjepa/* may reach launchers only inside CLI command functions, never at import time."""
    bad = []
    for f in sorted((REPO / "cjepa").rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bad += [f"{f.relative_to(REPO)}: {m}" for m in mods if m.startswith("launchers")]
    assert bad == []


def test_kernels_import_only_torch_triton_and_their_references():
    """kernels/* imports torch, triton, the standard library, and cjepa's reference modules (cjepa.ops, cjepa.losses)."""
    allowed_cjepa = ("cjepa.ops", "cjepa.losses")
    bad = []
    for f in sorted((REPO / "kernels").rglob("*.py")):
        for mod in imported_modules(f):
            top = mod.split(".")[0]
            if top == "cjepa" and not mod.startswith(allowed_cjepa):
                bad.append(f"{f.name}: {mod}")
            if top in ("launchers",) or mod.startswith(("cjepa.train", "cjepa.data", "cjepa.dist")):
                bad.append(f"{f.name}: {mod}")
    assert bad == []
