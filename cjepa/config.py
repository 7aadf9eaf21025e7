"""The one typed configuration schema of cjepa.

Every default lives here, once. YAML files under ``configs/`` hold deltas over these defaults, dotted
command-line overrides (``optim.lr=3e-4 masking.num_masked=2``) come last, and the fully resolved result is
written into every run directory as ``config.yaml``. Unknown or mistyped keys are errors that name the key,
where it came from, and the valid choices (the original project read its configs with ``.get(key, default)``,
so a typo silently fell back to a default).

Merge order: dataclass defaults -> each YAML file in order (a file may list ``defaults: [other.yaml, ...]``
that are merged before it, paths relative to the file) -> overrides.
Derived values (micro-batch, gradient-accumulation steps, head dim, the DeepSpeed dict) are computed in
:func:`derive`, in one place.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message says which and where."""


# --------------------------------------------------------------------------------------------- sections


@dataclass(kw_only=True)
class RunConfig:
    name: str = "run"  # run directory name under out_dir
    out_dir: str = "runs"
    seed: int = 42  # seeds model init, data order and mask sampling (masks use masking.seed too)
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(kw_only=True)
class ModelConfig:
    # "slots": CLEVRER/PHYRE predictor over object slots; "pusht": object slots + proprio node + action node.
    kind: Literal["slots", "pusht"] = "slots"
    num_slots: int = 7  # S object slots (aux nodes of the pusht kind come on top)
    slot_dim: int = 128  # D
    history_frames: int = 6  # T_h
    pred_frames: int = 10  # T_p
    depth: int = 6
    heads: int = 16
    # Per-head width. None -> slot_dim // heads, which is what the original computes (it ignores its own
    # dim_head=64 argument, Q3). Any value is allowed in the cjepa layout; the reference layout needs D/H.
    head_dim: Optional[int] = None
    mlp_dim: int = 2048
    dropout: float = 0.1
    # "cjepa": pre-LayerNorm attention, small time-PE init. "reference": the original module exactly
    # (no LayerNorm before attention, head dim D/H, time PE ~ N(0, 1)), same state_dict keys and shapes,
    # so released checkpoints load with weights_only=True.
    layout: Literal["cjepa", "reference"] = "cjepa"
    time_pe_std: float = 0.02  # the reference layout uses 1.0 (Q3)
    proprio_dim: int = 4  # pusht kind only
    action_dim: int = 2  # raw env action size (pusht kind only)
    action_chunk: int = 5  # env steps per predictor step; the action node sees action_chunk * action_dim


@dataclass(kw_only=True)
class MaskingConfig:
    # "random": a fresh masked set for every sample at every step (fixes Q1).
    # "fixed": the original behaviour, RandomState(seed).choice(S, M) -> the same slots for the whole run.
    mode: Literal["random", "fixed"] = "random"
    num_masked: int = 2  # M (or the lower end of the range below)
    num_masked_max: Optional[int] = None  # if set: M ~ Uniform{num_masked .. num_masked_max} per sample
    seed: int = 42
    # The original's masked-history loss includes t=0, where the masked slot is visible (Q2). False drops it.
    history_loss_includes_t0: bool = False


@dataclass(kw_only=True)
class SyntheticConfig:
    """The built-in slot world of `cjepa demo`: discs bouncing and colliding, states embedded into slots."""

    num_train: int = 96  # videos
    num_val: int = 24
    num_frames: int = 64
    min_objects: int = 3
    max_objects: int = 6  # must be <= model.num_slots; spare slots hold an "empty" code
    noise: float = 0.02  # slot observation noise (std, after embedding)
    seed: int = 0


@dataclass(kw_only=True)
class PushTDataConfig:
    """Push-T dataset generation (`cjepa pusht`): scripted-expert and random-exploration episodes."""

    out: str = "data/pusht"  # root: video shards in <out>/videos, state-slot store in <out>/slots
    expert_train: int = 800  # scripted-expert episodes (random start -> random goal pose), train split
    random_train: int = 400  # random-exploration episodes (stable-worldmodel's WeakPolicy), train split
    expert_val: int = 100  # held-out expert episodes: validation and the planning evaluation draw from these
    random_val: int = 0
    expert_max_steps: int = 300  # an expert episode ends at its goal pose or after this many steps
    random_steps: int = 100  # length of a random-exploration episode (steps)
    videos: bool = True  # render and write video shards (cjepa.data.shards); off = state-slot store only
    masks: bool = True  # instance masks (agent=1, block=2) with the videos
    render_size: int = 224
    shard_size: int = 64  # episodes per video shard
    state_slots: bool = True  # write the state-slot store (no pixel encoder needed)
    background_slots: int = 2  # constant slots beside agent and block; model.num_slots = 2 + this
    slot_noise: float = 0.0  # std of Gaussian noise added to state slots (observation noise)
    seed: int = 0


@dataclass(kw_only=True)
class DataConfig:
    # "synthetic": generate the built-in slot world; "pickle": the original {split: {video: (T,S,D)}} file;
    # "store": our sharded slot store (cjepa.data.slot_store).
    source: Literal["synthetic", "pickle", "store"] = "synthetic"
    path: str = ""
    proprio_path: str = ""  # pusht from an original pickle: the meta pickles {split: {video: (T, 4)}}
    action_path: str = ""  # ... and {split: {video: (T, 2)}}
    train_split: str = "train"
    val_split: str = "val"
    frameskip: int = 2
    batch_size: int = 256  # global batch = micro_batch * grad_accum * world_size
    num_workers: int = 0
    val_batch_size: int = 256
    val_max_windows: int = 0  # cap on validation windows (evenly spaced); 0 = all
    # Push-T proprio/action z-scoring: "train" = nan-aware per-frame statistics of the train split, used
    # for every split; "per_split" = the original (each split its own window statistics, Q8).
    aux_norm: Literal["train", "per_split"] = "train"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    pusht: PushTDataConfig = field(default_factory=PushTDataConfig)


@dataclass(kw_only=True)
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    # "constant" is the original C-JEPA behaviour (Q5); cosine/exp_decay use warmup_steps first.
    schedule: Literal["constant", "cosine", "exp_decay"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine floor, or exp_decay end factor (0.5 in VideoSAUR)
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    proprio_lr: float = 1e-4  # pusht kind: proprio encoder
    action_lr: float = 5e-4  # pusht kind: action encoder


@dataclass(kw_only=True)
class TrainConfig:
    epochs: int = 30
    max_steps: int = 0  # >0 overrides epochs
    grad_accum: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    log_every: int = 10
    val_every: int = 0  # steps; 0 = once per epoch
    ckpt_every: int = 0  # steps; 0 = once per epoch
    keep_checkpoints: int = 2
    resume: str = "auto"  # "auto": latest checkpoint of this run dir if any; "never"; or a checkpoint path
    compile: bool = False  # torch.compile the model


@dataclass(kw_only=True)
class DistConfig:
    # "auto": ddp when launched with WORLD_SIZE > 1, else single. deepspeed must be asked for.
    engine: Literal["auto", "single", "ddp", "deepspeed"] = "auto"
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    timeout_s: int = 600  # collective timeout: a dead rank fails the job instead of hanging it
    zero_stage: int = 2
    offload_optimizer: bool = False
    offload_params: bool = False


@dataclass(kw_only=True)
class KernelsConfig:
    # Attention of the predictor. "torch": explicit math (the reference, CPU default); "sdpa": torch's
    # scaled_dot_product_attention; "triton" / "flash_attn": GPU kernels. Unavailable -> error, never a
    # silent fallback.
    attention: Literal["torch", "sdpa", "triton", "flash_attn"] = "torch"
    slot_attention: Literal["torch", "triton"] = "torch"


@dataclass(kw_only=True)
class RolloutConfig:
    obs_frames: int = 128  # observed frames per video (CLEVRER)
    target_frames: int = 160  # roll out to this length
    batch_size: int = 64
    checkpoint: str = ""  # predictor weights for `cjepa rollout` (model.pt, a run dir, or an original ckpt)
    out: str = ""  # slot store to write; default: <run dir>/rollout
    export_pickle: str = ""  # also write the original pickle format here
    eval_videos: int = 32  # rollout-error evaluation: number of held-out videos
    eval_chains: int = 2  # autoregressive predictor calls per window in the error curve


@dataclass(kw_only=True)
class PlanConfig:
    """CEM-MPC planning and the Push-T evaluation protocol (spec sections 2.6, 2.7, 3)."""

    checkpoint: str = ""  # world model to plan with: a checkpoint dir or a run dir (its latest checkpoint)
    baseline_checkpoint: str = ""  # optional second model evaluated on the same episodes (e.g. OC-JEPA, no masking)
    dataset: str = ""  # Push-T state-slot store (cjepa pusht) holding the held-out expert episodes
    # Also evaluate the simulator as the world model (true dynamics, same embedding and cost as plan.checkpoint):
    # the upper bound of CEM + cost under the protocol. Slow on a CPU (every candidate is simulated).
    oracle: bool = False
    encoder: Literal["state"] = "state"  # observation -> slots: "state" = the fixed state-slot embedding
    # CEM (stable-worldmodel's CEMSolver as configured by C-JEPA)
    num_samples: int = 300
    topk: int = 30  # elites
    iterations: int = 30
    var_scale: float = 1.0  # initial std (the original calls it var)
    horizon: int = 5  # planned action blocks
    receding_horizon: int = 5  # blocks executed before replanning
    action_block: int = 5  # env steps per block (= the predictor's frameskip)
    warm_start: bool = True  # seed the next solve with the unexecuted blocks (moot when receding == horizon)
    # Observed frames fed to the world model at each plan (Q12). 1 = the original (world.history_size=1); up to
    # model.history_frames uses the past frames (stride action_block) and the executed actions between them.
    history_obs: int = 1
    # Frames the predictor sees per rollout call; 0 = model.history_frames (the original: 3, Q12).
    rollout_window: int = 0
    reorder_slots: bool = True  # re-match predicted slots to the previous frame after each call (2.6)
    proprio_weight: float = 1.0  # cost = matched slot MSE + this * proprio-node MSE (2.7)
    max_perm_slots: int = 7  # batched matching enumerates S! permutations up to this S; scipy above
    # "batched": every candidate's slot assignment in one tensor op; "scipy": one linear_sum_assignment per
    # candidate and rollout step on the host, as the original (Q13; slower, same result)
    matching: Literal["batched", "scipy"] = "batched"
    # The env does not clip actions and neither did the original; true keeps executed actions in [-1, 1].
    clip_actions: bool = False
    # evaluation protocol (3.4)
    episodes: int = 50  # start/goal pairs per seed
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    goal_offset: int = 25  # goal = the same expert episode this many steps after the start
    budget: int = 50  # env steps per episode; success if the rule holds at any step
    eval_split: str = "val"  # held-out expert episodes (the original drew from its training split, Q12)
    videos: int = 3  # rendered episodes saved per model (seed 0); 0 = none
    video_size: int = 224
    out: str = ""  # results directory; default runs/<run.name>/plan


@dataclass(kw_only=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    kernels: KernelsConfig = field(default_factory=KernelsConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)


# --------------------------------------------------------------------------------------------- loading


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; convert only where it loses nothing (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not valid; choose {_type_name(tp)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported annotation {tp!r}")  # a schema bug, not a user error


def _unknown_key(key: str, section_obj: Any, prefix: str, source: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(section_obj)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
    where = f" (in {source})" if source else ""
    return ConfigError(
        f"unknown config key '{prefix}{key}'{where}{hint} valid keys under '{prefix or '<top>'}': {', '.join(names)}"
    )


def _merge(obj: Any, updates: dict, prefix: str, source: str) -> None:
    """Write `updates` (a nested dict) into the dataclass instance `obj`, checking every key and type."""
    hints = typing.get_type_hints(type(obj))
    for key, value in updates.items():
        if not isinstance(key, str) or key not in hints or key.startswith("_"):
            raise _unknown_key(str(key), obj, prefix, source)
        tp = hints[key]
        where = f"{prefix}{key}" + (f" (in {source})" if source else "")
        if _is_dataclass_type(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: is a section; give a mapping of its keys, not {value!r}")
            _merge(getattr(obj, key), value, f"{prefix}{key}.", source)
        else:
            setattr(obj, key, _coerce(value, tp, where))


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    """Return the (mapping, source-name) layers of a YAML file, its `defaults:` first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} includes itself through 'defaults'")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    layers: list[tuple[dict, str]] = []
    defaults = data.pop("defaults", [])
    if isinstance(defaults, str):
        defaults = [defaults]
    for inc in defaults:
        layers.extend(_read_yaml(path.parent / inc, seen + (path,)))
    layers.append((data, str(path)))
    return layers


def parse_override(text: str) -> dict:
    """'a.b.c=value' -> {'a': {'b': {'c': value}}}; the value is read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    nested: dict = {}
    cur = nested
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return nested


def load_config(paths: list[str] | tuple[str, ...] = (), overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML files (in order) <- dotted overrides; then validate."""
    cfg = Config()
    for p in paths:
        for data, source in _read_yaml(Path(p)):
            _merge(cfg, data, "", source)
    for ov in overrides:
        _merge(cfg, parse_override(ov), "", f"override '{ov}'")
    validate(cfg)
    return cfg


def config_from_dict(data: dict, source: str = "dict") -> Config:
    cfg = Config()
    _merge(cfg, copy.deepcopy(data), "", source)
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# --------------------------------------------------------------------------------------------- checks


def validate(cfg: Config) -> None:
    """Cross-field rules, each failing with the keys involved. Also fills in head_dim (a derived value)."""
    m = cfg.model
    if m.slot_dim <= 0 or m.heads <= 0 or m.depth <= 0:
        raise ConfigError("model.slot_dim, model.heads and model.depth must be positive")
    if m.history_frames < 1 or m.pred_frames < 1:
        raise ConfigError("model.history_frames and model.pred_frames must be >= 1")
    if m.head_dim is None:
        if m.slot_dim % m.heads:
            raise ConfigError(
                f"model.slot_dim={m.slot_dim} is not divisible by model.heads={m.heads}; set model.head_dim"
            )
        m.head_dim = m.slot_dim // m.heads
    if m.layout == "reference":
        if m.head_dim * m.heads != m.slot_dim:
            raise ConfigError(
                f"model.layout=reference needs model.head_dim * model.heads == model.slot_dim "
                f"({m.head_dim} * {m.heads} != {m.slot_dim}): the original splits D across heads"
            )
    k = cfg.masking
    if k.num_masked < 0:
        raise ConfigError("masking.num_masked must be >= 0")
    top = k.num_masked if k.num_masked_max is None else k.num_masked_max
    if k.num_masked_max is not None and k.num_masked_max < k.num_masked:
        raise ConfigError("masking.num_masked_max must be >= masking.num_masked")
    if top > m.num_slots:
        raise ConfigError(f"masking: cannot mask {top} of model.num_slots={m.num_slots} slots")
    if k.mode == "fixed" and k.num_masked_max is not None:
        raise ConfigError("masking.mode=fixed reproduces a fixed set; masking.num_masked_max needs mode=random")
    d = cfg.data
    if d.frameskip < 1 or d.batch_size < 1:
        raise ConfigError("data.frameskip and data.batch_size must be >= 1")
    if d.source in ("pickle", "store") and not d.path:
        raise ConfigError(f"data.source={d.source} needs data.path")
    if d.source == "synthetic" and d.synthetic.max_objects > m.num_slots:
        raise ConfigError(
            f"data.synthetic.max_objects={d.synthetic.max_objects} exceeds model.num_slots={m.num_slots}"
        )
    if cfg.train.grad_accum < 1:
        raise ConfigError("train.grad_accum must be >= 1")
    if cfg.optim.grad_clip < 0:
        raise ConfigError("optim.grad_clip must be >= 0 (0 disables clipping)")
    if cfg.dist.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"dist.zero_stage={cfg.dist.zero_stage}: choose 0, 1, 2 or 3")
    r = cfg.rollout
    if r.target_frames < r.obs_frames:
        raise ConfigError("rollout.target_frames must be >= rollout.obs_frames")
    pt = d.pusht
    if min(pt.expert_train, pt.random_train, pt.expert_val, pt.random_val) < 0 or pt.background_slots < 0:
        raise ConfigError("data.pusht episode counts and data.pusht.background_slots must be >= 0")
    if pt.render_size < 8 or pt.shard_size < 1 or pt.expert_max_steps < 1 or pt.random_steps < 1:
        raise ConfigError("data.pusht.render_size must be >= 8 and shard_size, expert_max_steps, random_steps >= 1")
    p = cfg.plan
    if p.topk < 1 or p.topk > p.num_samples:
        raise ConfigError(f"plan.topk={p.topk} must be in 1..plan.num_samples={p.num_samples}")
    if p.topk < 2:
        raise ConfigError("plan.topk must be >= 2: the elite standard deviation needs two elites")
    if p.iterations < 1 or p.horizon < 1 or p.action_block < 1:
        raise ConfigError("plan.iterations, plan.horizon and plan.action_block must be >= 1")
    if not 1 <= p.receding_horizon <= p.horizon:
        raise ConfigError(f"plan.receding_horizon={p.receding_horizon} must be in 1..plan.horizon={p.horizon}")
    if p.horizon * p.action_block > p.budget:
        raise ConfigError(
            f"plan.horizon * plan.action_block = {p.horizon * p.action_block} exceeds plan.budget={p.budget} "
            "(the original asserts this)"
        )
    if p.history_obs < 1 or p.rollout_window < 0:
        raise ConfigError("plan.history_obs must be >= 1 and plan.rollout_window >= 0")
    if p.episodes < 1 or not p.seeds or p.goal_offset < 1:
        raise ConfigError("plan.episodes and plan.goal_offset must be >= 1 and plan.seeds non-empty")


@dataclass
class Derived:
    """Values computed from the config and the launch (world size); logged, never set by users."""

    world_size: int
    micro_batch: int  # per rank, per forward
    grad_accum: int
    global_batch: int


def derive(cfg: Config, world_size: int) -> Derived:
    per_step = cfg.train.grad_accum * world_size
    if cfg.data.batch_size % per_step:
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size} must be divisible by train.grad_accum * world_size "
            f"= {cfg.train.grad_accum} * {world_size}"
        )
    return Derived(
        world_size=world_size,
        micro_batch=cfg.data.batch_size // per_step,
        grad_accum=cfg.train.grad_accum,
        global_batch=cfg.data.batch_size,
    )
