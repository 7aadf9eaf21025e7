"""setup.py ships every package of the source tree: a package missing from its list imports in an editable install
and is absent from a wheel."""

import ast

from tests.helpers import REPO


def listed_packages() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "packages":
            return set(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no packages= list")


def test_every_package_on_disk_is_listed():
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for top in ("cjepa", "launchers")
               for p in (REPO / top).rglob("__init__.py")}
    assert listed_packages() == on_disk | {"cjepa_kernels"}
