"""benchmarks/common.py: the benchmarks run from a checkout that was never pip-installed (a bare GPU machine)."""

import subprocess
import sys

from tests.helpers import REPO

# A fresh interpreter that forgets the editable install's finders, as on a machine where `pip install -e .` never
# ran: `cjepa` still comes from the checkout on sys.path, but the import name `cjepa_kernels` does not exist.
_BARE_CHECKOUT = """
import importlib.util, os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
sys.path_importer_cache.clear()
for name in [m for m in sys.modules if m.split(".")[0] in ("cjepa", "cjepa_kernels")]:
    del sys.modules[name]
assert importlib.util.find_spec("cjepa_kernels") is None, "the probe failed to hide the installed import name"
sys.path.insert(0, "benchmarks")
import common
import cjepa_kernels.slot_attention, cjepa_kernels.registry
print(cjepa_kernels.registry.__file__)
print(os.environ["PYTHONPATH"])
"""


def test_kernels_import_without_an_install():
    """Without an install, importing the benchmarks' common module makes `cjepa_kernels` the checkout's kernels/
    folder, in this process and (through PYTHONPATH) in the subprocesses the acceptance command starts."""
    out = subprocess.run([sys.executable, "-c", _BARE_CHECKOUT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    registry_file, pythonpath = out.stdout.strip().splitlines()[-2:]
    assert registry_file.endswith("kernels/registry.py")
    link_dir = pythonpath.split(":")[0]
    check = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {link_dir!r}); "
            "import importlib.util; print(importlib.util.find_spec('cjepa_kernels').submodule_search_locations)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "cjepa_kernels" in check.stdout, check.stderr
