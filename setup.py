"""cjepa: distributed training of C-JEPA object-centric world models, with Triton kernels and SLURM launchers."""

from setuptools import setup

CORE = [
    "torch>=2.4",
    "numpy>=1.24",
    "pyyaml>=6",
    "tqdm>=4.60",
    "tensorboard>=2.14",
    "matplotlib>=3.7",
    "scipy>=1.10",
]
DATA = ["webdataset==1.0.2", "av>=14,<19", "pymunk>=6.6,<7"]
DIST = ["deepspeed>=0.16", "submitit>=1.5"]
GPU = ["nvidia-dali-cuda120>=1.40"]  # flash-attn: optional, install separately where a wheel exists for your torch
PUSHT = ["gym-pusht==0.1.8", "pygame>=2.5", "shapely>=2"]
DEV = ["pytest>=8", "ruff>=0.6", "triton>=3.1", "numpy<3"] + DIST + PUSHT + GPU

setup(
    name="cjepa",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=["cjepa", "cjepa.models", "cjepa.data", "cjepa.dist", "cjepa.utils", "cjepa.ops", "cjepa.eval", "cjepa.envs",
              "cjepa.plan", "cjepa.commands", "cjepa.tasks", "kernels", "launchers"],
    install_requires=CORE + DATA,
    extras_require={"dist": DIST, "gpu": GPU, "pusht": PUSHT, "dev": DEV},
    entry_points={"console_scripts": ["cjepa=cjepa.cli:main"]},
)
