"""`python -m cjepa` (cjepa/__main__.py) is the `cjepa` command, as torchrun's `-m cjepa train` runs it."""

import subprocess
import sys

from tests.helpers import REPO


def test_python_dash_m_cjepa_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "cjepa", "train", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("usage: cjepa train"), out.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "cjepa", "nope"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr
