"""Locations of the repository's shipped files (configs) for commands that use them."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


def config_path(name: str) -> Path:
    """configs/<name>; the repository is installed editable (pip install -e .), so configs/ sits beside cjepa/."""
    p = CONFIG_DIR / name
    if not p.is_file():
        raise FileNotFoundError(f"shipped config {name!r} not found at {p}; install the repository with 'pip install "
                                "-e .'")
    return p
