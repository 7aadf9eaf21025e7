"""DeepSpeed ZeRO engine (stages 0-3, optional CPU offload) behind the trainer's engine interface.

``dist.engine=deepspeed`` selects it; the same :class:`cjepa.trainer.Trainer` then runs unchanged. The DeepSpeed
config is generated from ours by :func:`cjepa.config.to_deepspeed` and written to the run directory
(``deepspeed_config.json``). What this engine adds to the trainer's contract:

* Gradient accumulation: the trainer divides each micro-batch loss by the micro-batch count itself, so
  backward runs with ``scale_wrt_gas=False``; DeepSpeed's micro-step counter is advanced after every
  micro-batch so that its own accumulation boundary (where ZeRO reduces gradients and steps) is exactly our
  last micro-batch.
* LR schedule: ours (``cjepa.distributed.engine.lr_lambda``) as a client scheduler, so DeepSpeed and single/DDP runs
  follow one curve. Clipping: ``gradient_clipping`` is always written (DeepSpeed would clip at 1.0 otherwise).
* Checkpoints: every rank writes its ZeRO shards (a collective save) into a staging folder; rank 0 moves the
  folder into the checkpoint being assembled as ``deepspeed/`` and writes ``model.pt`` there from the fp32
  master weights (:func:`deepspeed_to_state_dict`), so a ZeRO-3 run's weights load into the plain model for the
  demo, rollout and evaluation code. The checkpoint directory still appears atomically.
* Resume with another world size (or ZeRO stage): the checkpoint is converted once to DeepSpeed's universal
  format (``deepspeed/<tag>_universal``) and loaded from there.
* Shared memory on CPU: DeepSpeed's CPU all-reduce maps one shared-memory workspace per rank (about 67 MB in
  ``/dev/shm``, which is RAM) and never unlinks it, so every CPU run would leave its workspaces behind until the
  machine reboots. Once every rank has mapped every workspace, each rank unlinks its own name
  (:func:`unlink_cpu_workspace`); the mappings stay valid until the processes exit, so nothing is left even after
  a crash or Ctrl-C.
* ZeRO-3 evaluation: parameters are partitioned across ranks, and the model's own parameters (mask token,
  time embedding) are used outside any submodule's forward, so evaluation runs inside :meth:`eval_context`,
  which gathers the full parameters on every rank for its duration.

DeepSpeed caches its accelerator when first imported, so the import happens here, after the rank variables
and (on CPU) ``DS_ACCELERATOR=cpu`` are set.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import re
import shutil
import sys
import types
from argparse import Namespace
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from cjepa.config import derive, to_deepspeed
from cjepa.distributed.engine import lr_lambda, optimizer_hyperparameters, restore_hyperparameters
from cjepa.distributed.env import DistEnv, export_env, init_single_process_group, quiet_other_ranks
from cjepa.utils.precision import resolve_precision

DS_SUBDIR = "deepspeed"  # inside one of our checkpoint directories


class DeepSpeedCheckpointError(ValueError):
    """A DeepSpeed checkpoint is missing, incomplete, or cannot be resumed here; the message says which."""


def import_deepspeed(env: DistEnv, device: torch.device):
    """Import deepspeed with the accelerator this run needs (it is fixed at first import)."""
    if "deepspeed" not in sys.modules:
        export_env(env)
        if device.type == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    have, want = get_accelerator().device_name(), ("cpu" if device.type == "cpu" else "cuda")
    if have != want:
        raise RuntimeError(
            f"DeepSpeed was imported with accelerator {have!r} but this run trains on {device}. DeepSpeed fixes its "
            f"accelerator at import: set DS_ACCELERATOR={want} before anything imports deepspeed."
        )
    return deepspeed


def cpu_workspace_path(rank: int) -> Path:
    """Where DeepSpeed's CPU all-reduce keeps ``rank``'s workspace: its C++ op names it from the user id and the
    MASTER_ADDR / MASTER_PORT it reads from the environment
    (``deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank>``)."""
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    return Path("/dev/shm") / f"deepspeed_allreduce_buffer_{os.getuid()}_{addr}_{port}_{rank}"


def unlink_cpu_workspace(env: DistEnv, device: torch.device) -> None:
    """Unlink this rank's shared-memory workspace once every rank has mapped all of them (they map them inside
    ``deepspeed.init_distributed``; the barrier says every rank has returned from it)."""
    if device.type != "cpu":
        return
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
    cpu_workspace_path(env.rank).unlink(missing_ok=True)


class DeepSpeedEngine:
    """``deepspeed.initialize`` around our model, optimizer hyper-parameters and LR schedule."""

    reads_own_model = True  # resume takes the weights from the ZeRO shards, not from model.pt

    def __init__(self, module: nn.Module, param_groups: list[dict], cfg, env: DistEnv, device: torch.device,
                 total_steps: int):
        deepspeed = import_deepspeed(env, device)
        export_env(env)  # DeepSpeed reads RANK / LOCAL_RANK / WORLD_SIZE from the environment, also alone
        quiet_other_ranks(env)
        if not dist.is_initialized():  # a one-process run: the trainer made no group, DeepSpeed needs one
            init_single_process_group(cfg.dist.backend, device, cfg.dist.timeout_s)
        self.cfg, self.env, self.device = cfg, env, device
        self.stage = cfg.dist.zero_stage
        self.config = to_deepspeed(cfg, derive(cfg, env.world_size), resolve_precision(cfg.train.precision, device))
        o = cfg.optim
        schedule = lr_lambda(o.schedule, o.warmup_steps, total_steps, o.min_lr_ratio)
        # DeepSpeed's op loader prints to stdout; stdout is for our tables
        with contextlib.redirect_stdout(sys.stderr):
            deepspeed.init_distributed(dist_backend=dist.get_backend(), auto_mpi_discovery=False)  # wraps our group
            unlink_cpu_workspace(env, device)
            self.engine, _, _, _ = deepspeed.initialize(
                model=module.to(device),
                model_parameters=param_groups,
                config=self.config,
                lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
            )
        self.model = self.engine  # forward through DeepSpeed (ZeRO-3 gathers parameters in its hooks)
        self.module = self.engine.module  # the unwrapped model (partitioned under ZeRO-3: see eval_context)
        self.name = f"deepspeed-zero{self.stage}"
        self._deepspeed = deepspeed
        self._last_micro = True
        self._staging: Optional[Path] = None

    # ------------------------------------------------------------------ training step

    def no_sync(self, last_micro: bool):
        """Remember whether this is the step's last micro-batch; DeepSpeed itself decides when to reduce."""
        self._last_micro = last_micro
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)  # the trainer already divided by the micro-batch count
        if not self._last_micro:
            self.engine.step()  # not a boundary: only advances DeepSpeed's micro-step counter, no update

    def step(self):
        if not self.engine.is_gradient_accumulation_boundary():
            raise RuntimeError(
                f"DeepSpeed is at micro-step {self.engine.micro_steps}, not at a gradient-accumulation boundary "
                f"(gradient_accumulation_steps={self.engine.gradient_accumulation_steps()}): the trainer gave a step "
                "a different number of micro-batches than train.grad_accum"
            )
        self.engine.step()
        # As DeepSpeed keeps it (a device tensor, or a float where DeepSpeed read it itself): the trainer reads it
        # on the host only when it logs.
        return self.engine.get_global_grad_norm()

    def compile(self, backend: str) -> None:
        """DeepSpeed's own ``engine.compile``: compiles the module inside the engine in place, so ZeRO's parameter
        hooks, gradient hooks and the engine's forward stay in charge (compiling the engine object would trace
        through them)."""
        with contextlib.redirect_stdout(sys.stderr):
            self.engine.compile(backend=backend)

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def eval_context(self):
        """Full parameters for evaluation code that calls the module directly: under ZeRO-3 they are gathered on
        every rank for the duration (a collective: every rank enters it), and released afterwards."""
        if self.stage == 3:
            return self._deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ checkpoints

    def _tag(self) -> str:
        return f"global_step{self.engine.global_steps}"

    def state_dict(self) -> dict[str, Any]:
        """What our train_state.pt records about the engine; the states themselves are DeepSpeed's shards."""
        return {"format": "deepspeed", "tag": self._tag(), "world_size": self.env.world_size, "zero_stage": self.stage}

    def module_state_dict(self) -> None:
        """None: ``model.pt`` is written by :meth:`save_extra` from the fp32 master weights of the shards."""
        return None

    def save_extra_all_ranks(self, staging: Path) -> None:
        """Collective: every rank writes its ZeRO shards into ``staging`` (shared by all ranks)."""
        self._staging = Path(staging)
        if self.env.is_main and self._staging.exists():
            shutil.rmtree(self._staging)  # left over from a crash mid-save
        dist.barrier()
        self.engine.save_checkpoint(str(self._staging), tag=self._tag(), client_state=_universal_info())
        dist.barrier()  # every shard is on disk before rank 0 moves the folder

    def save_extra(self, ckpt_dir: Path) -> None:
        """Rank 0, inside the checkpoint being assembled: move the shards in, write model.pt and the DS config."""
        if self._staging is None or not self._staging.is_dir():
            raise DeepSpeedCheckpointError("DeepSpeed shards were not saved by every rank before rank 0 assembled the "
                                           "checkpoint")
        ds_dir = Path(ckpt_dir) / DS_SUBDIR
        os.replace(self._staging, ds_dir)
        self._staging = None
        torch.save(deepspeed_to_state_dict(ds_dir), Path(ckpt_dir) / "model.pt")
        (Path(ckpt_dir) / "deepspeed_config.json").write_text(json.dumps(self.config, indent=1))

    def load_checkpoint(self, ckpt_dir: Path, engine_state: dict, model_state: Optional[dict] = None) -> None:
        """Resume from one of our checkpoints; another world size or ZeRO stage goes through the universal format.
        ``model_state`` is unused: the shards hold the weights (:attr:`reads_own_model`)."""
        ds_dir = Path(ckpt_dir) / DS_SUBDIR
        if engine_state.get("format") != "deepspeed" or not ds_dir.is_dir():
            raise DeepSpeedCheckpointError(
                f"{ckpt_dir} was not written by the DeepSpeed engine (no {DS_SUBDIR}/ folder): resume it with the "
                "engine "
                "that wrote it (dist.engine), or start a new run (train.resume=never)"
            )
        tag = engine_state["tag"]
        same_layout = engine_state["world_size"] == self.env.world_size and engine_state["zero_stage"] == self.stage
        # Without ZeRO shards (ZeRO-0 in fp32) the optimizer state is whole and loads at any world size.
        sharded = any((ds_dir / tag).glob("*optim_states.pt"))
        if not same_layout and sharded:
            tag = self._ensure_universal(ds_dir, tag)
            self.engine._config.load_universal_checkpoint = True  # read at load time only; set for this load
        hyper = optimizer_hyperparameters(self.engine.optimizer.param_groups)
        try:
            # DeepSpeed reads its files with weights_only=False here. This is resume: the files are this run's own
            # checkpoints in its run dir (train.resume=auto) or a path the user named as theirs to continue.
            path, _ = self.engine.load_checkpoint(str(ds_dir), tag=tag)
        finally:
            self.engine._config.load_universal_checkpoint = False
        if path is None:
            raise DeepSpeedCheckpointError(f"DeepSpeed could not load tag {tag!r} from {ds_dir}")
        # the config's learning rates and optimizer settings, as the other engines (a resume may change them)
        restore_hyperparameters(self.engine.optimizer.param_groups, self.engine.lr_scheduler, hyper)

    def _ensure_universal(self, ds_dir: Path, tag: str) -> str:
        out = ds_dir / f"{tag}_universal"
        if self.env.is_main and not out.is_dir():
            convert_to_universal(ds_dir / tag, out)
        dist.barrier()
        if not out.is_dir():
            raise DeepSpeedCheckpointError(
                f"universal checkpoint {out} is missing on this rank (is the run dir on a shared filesystem?)"
            )
        return out.name


# --------------------------------------------------------------------------------------------- conversion


@contextlib.contextmanager
def _quiet():
    """DeepSpeed's offline checkpoint tools print progress to stdout and tqdm bars to stderr."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


# The classes (besides tensors, storages, sizes and containers, which weights_only admits anyway) that DeepSpeed's
# model/optimizer state files hold, for ZeRO 0-3, fp32/bf16/fp16 and CPU offload. Each is plain data (an enum, a
# dataclass, a loss-scaler's numbers); none runs code when restored. Names missing in a DeepSpeed version are skipped.
DEEPSPEED_SAFE_GLOBALS = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


def _deepspeed_safe_globals() -> list:
    found = []
    for spec in DEEPSPEED_SAFE_GLOBALS:
        module, name = spec.rsplit(".", 1)
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return found


def load_deepspeed_file(path: str | os.PathLike, map_location: Any = "cpu", **kwargs) -> Any:
    """``torch.load`` of one DeepSpeed state file with ``weights_only=True`` plus DeepSpeed's own plain-data classes.

    DeepSpeed reads these files with ``weights_only=False``, which runs whatever a pickle asks for; a checkpoint
    folder from elsewhere must not. Anything beyond tensors and the classes above is refused with an error naming
    the file and the global.
    """
    kwargs.pop("weights_only", None)
    with torch.serialization.safe_globals(_deepspeed_safe_globals()):
        try:
            return torch.load(path, map_location=map_location, weights_only=True, **kwargs)
        except pickle.UnpicklingError as err:
            found = re.search(r"GLOBAL ([\w.]+)", str(err))
            what = f"it asks for {found.group(1)}, which" if found else "it holds an object that"
            raise DeepSpeedCheckpointError(
                f"{path}: refused to load: {what} is not part of a DeepSpeed checkpoint (tensors, sizes, "
                "containers, DeepSpeed's loss scaler and ZeRO enums); a foreign pickle can run code"
            ) from None


@contextlib.contextmanager
def _weights_only_in(module: types.ModuleType):
    """Within the block, ``module``'s ``torch.load`` (DeepSpeed's zero_to_fp32, which hard-codes weights_only=False)
    is :func:`load_deepspeed_file`; every other use of torch in that module, and torch itself, is untouched."""

    class _Torch(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

    proxy = _Torch("torch")
    proxy.load = lambda f, map_location=None, **kw: load_deepspeed_file(f, map_location=map_location, **kw)
    original = module.torch
    module.torch = proxy
    try:
        yield
    finally:
        module.torch = original


def _universal_info() -> dict:
    """The marker ds_to_universal requires before it converts a checkpoint (Megatron-style clients add it too)."""
    from deepspeed.checkpoint.constants import (
        UNIVERSAL_CHECKPOINT_INFO,
        UNIVERSAL_CHECKPOINT_VERSION_KEY,
        UNIVERSAL_CHECKPOINT_VERSION_VALUE,
    )

    return {UNIVERSAL_CHECKPOINT_INFO: {UNIVERSAL_CHECKPOINT_VERSION_KEY: UNIVERSAL_CHECKPOINT_VERSION_VALUE}}


def _ds_root_and_tag(path: Path, tag: Optional[str]) -> tuple[Path, str]:
    """Accept one of our checkpoint dirs, a DeepSpeed save dir (with ``latest``), or a tag folder inside one."""
    path = Path(path)
    if (path / DS_SUBDIR).is_dir():
        path = path / DS_SUBDIR
    if tag is None and (path / "latest").is_file():
        return path, (path / "latest").read_text().strip()
    if tag is None and any(path.glob("*model_states.pt")):
        return path.parent, path.name
    if tag is None:
        raise DeepSpeedCheckpointError(f"{path} is not a DeepSpeed checkpoint (no 'latest' file, no *model_states.pt)")
    if not (path / tag).is_dir():
        raise DeepSpeedCheckpointError(f"DeepSpeed checkpoint tag {tag!r} not found in {path}")
    return path, tag


def deepspeed_to_state_dict(path: str | os.PathLike, tag: Optional[str] = None) -> dict[str, torch.Tensor]:
    """Our plain fp32 state_dict from a DeepSpeed checkpoint of any ZeRO stage and world size (no process group).

    ZeRO 1-3 (and bf16 at any stage) keep fp32 master weights in the optimizer shards: those are merged (DeepSpeed's
    ``zero_to_fp32``), so the result is exactly what the optimizer holds. A ZeRO-0 fp32 run's module weights are
    the master weights and are read directly.
    """
    root, tag = _ds_root_and_tag(Path(path), tag)
    folder = root / tag
    if not folder.is_dir():
        raise DeepSpeedCheckpointError(f"DeepSpeed checkpoint folder {folder} does not exist")
    optim_files = sorted(folder.glob("*optim_states.pt"))
    if optim_files:
        zero_to_fp32 = importlib.import_module("deepspeed.utils.zero_to_fp32")

        # progress prints and bars on every save; failures still raise. The folder may come from elsewhere
        # (cjepa convert): its files are read with weights_only=True.
        with _quiet(), _weights_only_in(zero_to_fp32):
            sd = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(root), tag=tag)
    else:
        model_files = sorted(folder.glob("mp_rank_*_model_states.pt"))
        if not model_files:
            raise DeepSpeedCheckpointError(f"{folder} holds neither optimizer shards nor model states")
        sd = load_deepspeed_file(model_files[0])["module"]
    return {k: v.detach().float().clone().contiguous() if v.is_floating_point() else v.clone() for k, v in sd.items()}


def convert_to_universal(tag_dir: Path, out: Path) -> None:
    """DeepSpeed's ``ds_to_universal`` in-process (no worker pools), written atomically to ``out``.

    It reads with weights_only=False; it runs only on resume, on the run's own checkpoint (see ``load``)."""
    from deepspeed.checkpoint import ds_to_universal

    tag_dir, out = Path(tag_dir), Path(out)
    if not tag_dir.is_dir():
        raise DeepSpeedCheckpointError(f"DeepSpeed checkpoint folder {tag_dir} does not exist")
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    args = Namespace(
        input_folder=str(tag_dir), output_folder=str(tmp), num_extract_workers=1, num_merge_workers=1,
        keep_temp_folder=False, strict=True, inject_missing_state=False,
    )
    with _quiet():
        ds_to_universal.main(args)
    os.replace(tmp, out)
    # ds_to_universal names the output folder in 'latest_universal'; point it at the final name
    (out.parent / "latest_universal").write_text(out.name)
