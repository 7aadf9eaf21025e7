"""Package boundaries: our kernels import as `cjepa_kernels` beside PyPI's `kernels`, and the import rules of
design.md hold."""

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
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=workdir, capture_output=True, text=True, timeout=300)
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
    assert check("cjepa/models", ("cjepa.data", "cjepa.distributed", "cjepa.trainer", "cjepa.tasks", "launchers", "cjepa_kernels")) == []


def test_data_knows_nothing_about_models_or_training():
    assert check("cjepa/data", ("cjepa.models", "cjepa.trainer", "cjepa.tasks", "cjepa.distributed", "launchers", "cjepa_kernels")) == []


def test_tasks_and_engines_never_import_what_runs_them():
    """Dependencies point one way (trainer -> tasks, trainer -> engines): no task or engine module imports the
    trainer, the commands or the launchers, not even inside a function."""
    above = ("cjepa.trainer", "cjepa.commands", "cjepa.cli", "launchers")
    assert check("cjepa/tasks", above) == []
    assert check("cjepa/distributed", (*above, "cjepa.tasks")) == []


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
    """kernels/* imports torch, triton, the standard library, and cjepa's reference modules (cjepa.backends, cjepa.losses)."""
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
