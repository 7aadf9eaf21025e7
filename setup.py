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
# av 19 needs Python 3.12. Frames are converted with a reformatter of our own (cjepa.data.video.rgb_converter): the
# per-thread one of av >= 18.1.1 hangs in DataLoader workers forked after their parent converted a frame.
DATA = ["webdataset==1.0.2", "braceexpand>=0.1.7", "av>=14,<19",
        "pymunk>=6.6,<7"]  # pymunk 7 changed the collision API; gym-pusht pins < 7
DIST = ["deepspeed>=0.16", "submitit>=1.5"]
# DALI: fn.decoders.video with per-sample frame lists, verified with 2.4.0.
# flash-attn: optional, install separately where a wheel exists for your torch.
GPU = ["nvidia-dali-cuda120>=2.4"]
PUSHT = ["gym-pusht==0.1.8", "pygame>=2.5", "shapely>=2"]
# Object-centric encoders: DINOv2 from transformers (built from a config; weights from a local file), safetensors
# weight files, pillow for slot GIFs.
ENCODER = ["transformers>=4.45", "safetensors>=0.4", "pillow>=9"]
DEV = ["pytest>=8", "ruff>=0.6", "triton>=3.1", "numpy<3"] + DIST + PUSHT + GPU + ENCODER

setup(
    name="cjepa",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10",
    packages=["cjepa", "cjepa.backends", "cjepa.commands", "cjepa.config", "cjepa.config.schema", "cjepa.data",
              "cjepa.data.world", "cjepa.distributed", "cjepa.envs", "cjepa.eval", "cjepa.eval.vqa", "cjepa.models",
              "cjepa.plan", "cjepa.tasks", "cjepa.utils", "cjepa_kernels", "launchers", "launchers.commands"],
    # The kernels/ folder is imported as cjepa_kernels: PyPI's unrelated `kernels` package owns that import name
    # (see kernels/registry.py).
    package_dir={"cjepa_kernels": "kernels"},
    install_requires=CORE + DATA,
    extras_require={"dist": DIST, "gpu": GPU, "pusht": PUSHT, "encoder": ENCODER, "dev": DEV},
    entry_points={"console_scripts": ["cjepa=cjepa.cli:main"]},
)
