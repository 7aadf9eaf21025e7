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
import math
import re
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
    # Predict each slot's change from its last visible history frame instead of the slot itself (cjepa layout
    # only; the original predicts slots). A rollout then starts at copy-last and the network learns the motion.
    residual: bool = False
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
class WorldConfig:
    """The built-in physics world (cjepa.data.world): CLEVRER-like videos with masks, states, events and questions."""

    num_frames: int = 128  # shown frames per video (CLEVRER: 128 at 25 fps)
    future_frames: int = 48  # simulated after the last shown frame, for predictive questions (CLEVRER: 7 s simulated, 5 shown)
    fps: float = 25.0
    height: int = 320  # CLEVRER: 480x320; 64 or 128 for fast tests and demos
    width: int = 480
    min_objects: int = 3
    max_objects: int = 6  # CLEVRER: at most 6 objects, hence 7 slots
    min_collisions: int = 1  # redraw a scene (up to 20 times) until the shown frames hold this many collisions
    substeps: int = 4  # physics steps per frame
    view_width: float = 6.0  # world units across the picture (objects are 0.7 wide)
    elevation_deg: float = 55.0  # camera tilt above the floor; 90 = top-down
    questions: bool = True  # generate CLEVRER-schema questions (counterfactuals re-simulate the scene)
    seed: int = 0  # video i of split s is drawn from (seed, s, i) alone: any subset regenerates identically
    codec: Literal["h264", "vp9"] = "h264"
    crf: int = 18  # encoder quality (lower = better); 18 is visually lossless on these scenes
    shard_size: int = 64  # videos per shard
    workers: int = 0  # generator processes; 0 = one per CPU core


@dataclass(kw_only=True)
class PushTDataConfig:
    """Push-T dataset generation (`cjepa pusht`): scripted-expert and random-exploration episodes."""

    out: str = "data/pusht"  # root: video shards in <out>/videos, state-slot store in <out>/slots
    expert_train: int = 800  # scripted-expert episodes (random start -> random goal pose), train split
    random_train: int = 400  # random-exploration episodes (stable-worldmodel's WeakPolicy), train split
    expert_val: int = 100  # held-out expert episodes: validation and the planning evaluation draw from these
    random_val: int = 0
    expert_max_steps: int = 300  # an expert episode ends at its goal pose or after this many steps
    # px the expert's PD target may lie from the agent per step (its speed; 100 = the action bound, no limit)
    expert_max_step: float = 100.0
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
    # ---- video shards (cjepa.data.loader / cjepa.data.dali): encoder training, slot extraction, pretraining
    shards: str = ""  # shard root written by `cjepa data world|clevrer` (holds <split>/manifest.json), or a tar glob
    decoder: Literal["pyav", "dali"] = "pyav"  # pyav: CPU DataLoader workers; dali: one DALI pipeline (NVDEC on GPU)
    # DALI's decode step: auto = nvdec with a GPU, else PyAV inside the pipeline (or DALI's CPU decoder for VP9 shards)
    dali_decode: Literal["auto", "nvdec", "pyav", "cpu"] = "auto"
    image_size: tuple[int, int] = (196, 196)  # (h, w) model input; aspect is not kept, as in the original (Q16)
    clip_frames: int = 6  # frames per training clip (VideoSAUR: 6)
    clip_stride: int = 2  # frame step inside a clip (VideoSAUR: 2)
    clip_sampling: Literal["random", "chunks"] = "random"  # random start per video and pass, or all non-overlapping chunks
    clips_per_video: int = 1  # random clips drawn per video per pass
    video_batch_size: int = 32  # clips per batch and rank (VideoSAUR: 32 per GPU)
    shuffle_buffer: int = 64  # samples; 0 = read shards in order
    decode_threads: int = 1  # FFmpeg threads per decoding worker (workers already run in parallel)
    with_masks: bool = True  # deliver instance masks when every sample of the split has them
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
    # What the trainer trains: "predictor" (C-JEPA from slot data), "pretrain" (C-JEPA streaming from raw video
    # through the frozen encoder), "encoder" (VideoSAUR / SAVi), "vqa" (the ALOE reasoner; its vqa.* optimiser
    # settings replace optim/data.batch_size/train.epochs). `cjepa train-encoder` / `cjepa pretrain` / `cjepa vqa train` set it;
    # launchers pass it through the resolved config.
    task: Literal["predictor", "pretrain", "encoder", "vqa"] = "predictor"
    epochs: int = 30
    max_steps: int = 0  # >0 overrides epochs
    grad_accum: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    log_every: int = 10
    val_every: int = 0  # steps; 0 = once per epoch
    ckpt_every: int = 0  # steps; 0 = once per epoch
    keep_checkpoints: int = 2
    resume: str = "auto"  # "auto": latest checkpoint of this run dir if any; "never"; or a checkpoint path
    # Resuming with other values than the checkpoint's config is refused, except for the keys in
    # cjepa.utils.run_dir.RESUMABLE_KEYS (steps, intervals, device, ...); true resumes anyway (the changes are
    # recorded in config_history.jsonl). The checkpoint's weights and optimizer state must still fit.
    allow_config_change: bool = False
    compile: bool = False  # torch.compile the model (DeepSpeed: its engine.compile(), which keeps ZeRO's hooks)
    # The torch.compile backend: "inductor" generates kernels; "aot_eager" / "eager" only capture graphs (debugging).
    compile_backend: str = "inductor"
    # CUDA only: fp32 matmuls / convolutions on TF32 tensor cores (torch.set_float32_matmul_precision("high"),
    # cudnn.allow_tf32). CPU runs ignore it and stay exact fp32.
    tf32: bool = False


@dataclass(kw_only=True)
class DistConfig:
    # "auto": ddp when launched with WORLD_SIZE > 1, else single. deepspeed must be asked for.
    engine: Literal["auto", "single", "ddp", "deepspeed"] = "auto"
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on GPUs, gloo on CPU
    timeout_s: int = 600  # collective timeout: a dead rank fails the job instead of hanging it
    # DeepSpeed only (dist.engine=deepspeed); the DeepSpeed JSON is generated by to_deepspeed(), never hand-kept.
    # ZeRO stage: 0 plain data parallel, 1 shards optimizer states, 2 + gradients, 3 + parameters.
    zero_stage: int = 2
    offload_optimizer: bool = False  # ZeRO >= 1: optimizer states and the step on the CPU
    offload_params: bool = False  # ZeRO-3 only: parameters live on the CPU between uses
    offload_pin_memory: bool = True  # page-locked CPU buffers for offload (faster host<->GPU copies)
    # torch.optim.AdamW inside DeepSpeed (True) or DeepSpeed's JIT-built fused / CPU Adam (False: needs a CUDA
    # toolchain, or a C++ compiler for offload). True is required on CPU and is numerically our LocalEngine.
    torch_adam: bool = True
    # ZeRO communication buckets (elements); DeepSpeed's defaults. Smaller buckets use less memory, more calls.
    reduce_bucket_size: int = 500_000_000
    allgather_bucket_size: int = 500_000_000
    overlap_comm: bool = False  # overlap gradient reduction with backward (GPU; more memory)


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
    eval_videos: int = 32  # rollout-error evaluation after training: number of held-out videos (0: skip it)
    eval_chains: int = 2  # autoregressive predictor calls per window in the error curve (0: skip the evaluation)

    @property
    def skip_note(self) -> str:
        """Why the final rollout evaluation is skipped ('' when it runs)."""
        return "skipped: rollout.eval_videos=0" if self.eval_videos == 0 else "skipped: rollout.eval_chains=0" if self.eval_chains == 0 else ""


@dataclass(kw_only=True)
class LaunchConfig:
    """How `cjepa submit` / `cjepa sweep` (launchers/) ask SLURM for resources; ignored by `cjepa train`."""

    # Preset in launchers/clusters.py that fills partition/account/qos/GPU defaults: "local" (a single-node
    # SLURM), "debug" (in-process, no SLURM: submitit's debug executor), or a cluster you add there.
    cluster: str = "local"
    nodes: int = 1
    tasks_per_node: int = 1  # processes per node; one per GPU for GPU training
    gpus_per_node: Optional[int] = None  # None: the preset's (usually tasks_per_node on GPU clusters)
    cpus_per_task: Optional[int] = None  # None: the preset's; also sets torch threads inside the job
    mem_gb: Optional[float] = None  # per node; None: the preset's (or the cluster default)
    timeout_min: int = 60  # wall-clock limit per attempt; a timed-out job checkpoints and requeues
    partition: str = ""  # "" = the preset's
    account: str = ""
    qos: str = ""
    constraint: str = ""
    # Requeues after a time-out before the job gives up (submitit's slurm_max_num_timeout). Preemptions
    # are always requeued.
    max_requeues: int = 3
    signal_delay_s: int = 120  # SLURM signals the job this long before its time limit (checkpoint + requeue)
    array_parallelism: int = 0  # a sweep runs at most this many jobs at once; 0 = no cap
    # Job folder (submitit logs and pickles, code snapshot, resolved config, git state). "": <run dir>/job
    # for `cjepa submit`, <out_dir>/<sweep name>/job for `cjepa sweep`.
    folder: str = ""
    snapshot: bool = True  # copy the repository's tracked files into the job folder and run from that copy


@dataclass(kw_only=True)
class BackboneConfig:
    """Frozen DINOv2 frame encoder of VideoSAUR (section 4.2): ViT-S/14 at 196 px -> 14x14 patches x 384."""

    # Local weights file: HF safetensors (file or a directory holding model.safetensors), a timm state_dict,
    # or the original facebookresearch .pth. "" = random init with a loud warning (nothing is downloaded).
    weights: str = ""
    # "post_ln": patch tokens after DINOv2's final LayerNorm (what the original's HF model returns, Q14; needed
    # for the released checkpoints). "pre_ln": the raw last-block output (what VideoSAUR originally used).
    features: Literal["post_ln", "pre_ln"] = "post_ln"
    frozen: bool = True  # frozen: no grad, eval mode, no_grad forward
    image_size: int = 196  # input side in pixels (a multiple of patch_size)
    patch_size: int = 14
    dim: int = 384  # ViT-S
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    pos_grid: int = 37  # side of the learned position-embedding grid of the released weights (518 / 14)
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"  # the transformers attention backend
    chunk_frames: int = 0  # frames per backbone forward (bounds memory on long videos); 0 = all at once


@dataclass(kw_only=True)
class VideoSaurConfig:
    """VideoSAUR grouping, temporal predictor, SlotMixer decoder and loss (sections 4.2-4.6)."""

    mlp_hidden: int = 768  # adapter LN -> Linear(384, 768) -> ReLU -> Linear(768, slot_dim)
    iters_first: int = 3  # slot-attention iterations on the first frame
    iters: int = 2  # ... and on every later frame
    eps: float = 1e-8
    # GRU hidden state of the slot update: "normed" = the LayerNorm-ed slots (the original VideoSAUR, Q14;
    # the released checkpoints were trained so), "raw" = the previous slots (Locatello et al., SAVi).
    gru_hidden: Literal["normed", "raw"] = "normed"
    predictor_blocks: int = 1  # transformer over the slots of one frame (pre-norm, ReLU FFN)
    predictor_heads: int = 4
    predictor_ffn: int = 512
    decoder_blocks: int = 3  # SlotMixer allocator: position queries cross-attend to the slots
    decoder_heads: int = 4
    decoder_ffn: int = 512
    renderer_dims: tuple[int, ...] = (1024, 1024, 1024)  # renderer MLP, ReLU after every layer
    # The original's transformer attention multiplies q.k by sqrt(head_dim) instead of dividing (its
    # `q / scale` with scale = head_dim**-0.5; not in the spec's quirk list). "reference" keeps that, which the
    # released checkpoints need; "standard" divides by sqrt(head_dim).
    attn_logit_scale: Literal["reference", "standard"] = "reference"
    sim_weight: float = 0.3  # SIM_WEIGHT of the time-similarity loss (CLEVRER 0.3, Push-T 0.25)
    sim_temp: float = 0.15  # SIM_TEMP (CLEVRER 0.15, Push-T 0.25)
    sim_threshold: float = 0.0  # cosine similarities below this become -inf before the softmax


@dataclass(kw_only=True)
class SaviConfig:
    """StoSAVi (section 5): CNN encoder, slot attention with an MLP transition, spatial-broadcast decoder."""

    resolution: int = 64  # model input side; frames are resized to it
    enc_channels: int = 64  # 4 conv layers (kernel 5) of this width
    enc_kernel: int = 5
    dec_channels: int = 64  # 4 transposed-conv layers (kernel 5) of this width
    dec_kernel: int = 5
    dec_resolution: int = 8  # spatial-broadcast size; stride-2 layers until `resolution`
    slot_mlp: int = 256  # residual MLP after the GRU, and the transition MLP hidden width = 2 * slot_dim
    iters: int = 2
    eps: float = 1e-6
    kld_weight: float = 1e-4  # StoSAVi's KL on the kernel distribution
    kld_var: float = 0.01  # variance of the KL's prior
    # Kernel at evaluation/extraction: "sample" mu + sigma * eps (the original, seeded here) or "mean" (mu).
    eval_kernel: Literal["sample", "mean"] = "sample"
    # First-frame slots: "learned" = one learned vector per slot (StoSAVi, the original); "cues" = conditional SAVi
    # (Kipf et al. 2022): slot 1 + j starts from the j-th object (by id) visible in the first frame's ground-truth
    # instance mask (an embedding of its centre of mass plus the first frame's features pooled around that
    # centre), slot 0 and the spare slots from their learned vectors. Needs
    # instance masks in training, validation and extraction (the built-in world and Push-T shards have them).
    init: Literal["learned", "cues"] = "learned"


@dataclass(kw_only=True)
class VideoDataConfig:
    """Where decoded training clips and whole videos come from, and how clips are cut (section 4.7)."""

    # A registered video source (cjepa.data.clips): "shards" = the webdataset video shards.
    source: str = "shards"
    path: str = ""
    train_split: str = "train"
    val_split: str = "val"
    clip_frames: int = 6  # training clip length (frames after striding)
    # Clip-length curriculum: from the first epoch that starts at or after step ``long_clips_from``, training
    # clips have ``long_clip_frames`` frames (0 = off). Short clips are cheap and teach binding; long ones train
    # the temporal path (slots of frame t seed frame t + 1 through the transition) to keep objects over time.
    long_clip_frames: int = 0
    long_clips_from: int = 0
    frame_stride: int = 2  # keep every n-th decoded frame
    val_clip_frames: int = 10  # validation clip length (CLEVRER 10, Push-T 6)
    val_videos: int = 200  # validation videos (one clip each, from frame 0); 0 = all
    val_batch_size: int = 8  # validation clips per forward, per rank
    hflip_prob: float = 0.5  # random horizontal flip of whole clips in training (encoder only, Q17)


@dataclass(kw_only=True)
class ExtractConfig:
    """`cjepa extract`: encode every video once into a slot store (section 4.8)."""

    out: str = ""  # slot store directory; default <run dir>/slots
    splits: tuple[str, ...] = ("train", "val", "test")  # splits the source lacks are reported and skipped
    # Stride of the frames tracked and stored. 1 = every frame, as the original (which then tracks at stride 1
    # although it trained at stride 2, Q15; the predictor subsamples by data.frameskip afterwards).
    frame_stride: int = 1
    seed: int = 0  # slot-init seed; every video gets its own generator from (seed, video key)
    batch_videos: int = 1  # videos of equal length encoded together
    export_pickle: str = ""  # also write the original {split: {video: (T, S, D)}} pickle here
    object_ids: bool = True  # store per-slot GT object ids (T, S) when the source has instance masks
    shard_frames: int = 1 << 16  # frames per slot-store shard


@dataclass(kw_only=True)
class EncoderConfig:
    """The object-centric encoder (VideoSAUR or SAVi), its training clips and slot extraction."""

    kind: Literal["videosaur", "savi"] = "videosaur"
    num_slots: int = 7  # S (CLEVRER 7, Push-T 4)
    slot_dim: int = 128  # D
    # Weights to start from: our checkpoint (dir or model.pt) or an original VideoSAUR Lightning .ckpt /
    # SAVi nerv .pth (keys are mapped). "" = fresh init (the backbone then comes from backbone.weights).
    checkpoint: str = ""
    # Masks returned with the slots: "decoder" = the decoder's mixing/alpha masks (what VideoSAUR and SAVi
    # visualise and score), "grouping" = the last slot-attention softmax (cheaper).
    mask_source: Literal["decoder", "grouping"] = "decoder"
    vis_every: int = 0  # steps between tensorboard mask images + GIF (also at every validation); 0 = validation only
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    videosaur: VideoSaurConfig = field(default_factory=VideoSaurConfig)
    savi: SaviConfig = field(default_factory=SaviConfig)
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)


@dataclass(kw_only=True)
class VQAConfig:
    """CLEVRER-style VQA with the ALOE reasoner over slot videos (section 6 of the spec)."""

    # --- data
    questions_train: str = ""  # question JSON in CLEVRER's schema (list of scenes with "questions")
    questions_val: str = ""
    annotations: str = ""  # object tables (CLEVRER annotation dir/file); the counterfactual protocol needs them
    slots: str = ""  # slot videos the reasoner reads: observed + rolled-out frames (rollout store or pickle)
    slots_source: Literal["store", "pickle"] = "store"
    # "original": only predictive questions read predicted frames (window shifted by T - video_len; Q6, Q22).
    # "counterfactual_rollout": counterfactual questions read the world model's rollout with the removed object's
    # slot dropped (vqa.cf_slots, built by `cjepa vqa counterfactual`); everything else as "original".
    # "oracle": the ceiling -- vqa.slots holds the true slots of every simulated frame and vqa.cf_slots the
    # simulator's re-run without the removed object (`cjepa vqa make-billiards --oracle`); no fallback.
    protocol: Literal["original", "counterfactual_rollout", "oracle"] = "original"
    cf_slots: str = ""  # counterfactual slot store (protocol counterfactual_rollout)
    cf_frames: int = 128  # length of every counterfactual video (frames 0..cf_frames-1)
    predictor_checkpoint: str = ""  # C-JEPA predictor for `cjepa vqa counterfactual` (checkpoint or run dir)
    video_len: int = 128  # observed frames per video; predictive questions shift by T - video_len beyond it
    num_frames: int = 25  # frames sampled per question, video_len // num_frames apart (5 for CLEVRER)
    # "offsets": the original's, from a random start offset (never both ends of the video); "span": spread over the
    # whole video_len, first and last frame included, one start offset (every observed event between two samples)
    frame_sampling: Literal["offsets", "span"] = "offsets"
    question_len: int = 20  # question tokens (padded); descriptive questions get question_len + choice_len
    choice_len: int = 12
    vocab: str = ""  # an existing vocab JSON (ours or the original CLEVRER_vocab.json); "" = build from train
    skip_missing_videos: bool = False  # questions whose video has no slots: error (False) or dropped and counted
    # --- reasoner (ALOE): d_model = (word_dim + 4) * heads = 144 (14-d words + 2-d part tag + 2-d modality tag)
    word_dim: int = 14
    heads: int = 8
    depth: int = 12
    ffn_dim: int = 512
    dropout: float = 0.1
    head_hidden: int = 128  # hidden width of the descriptive and multiple-choice MLP heads
    # --- training (Adam, no weight decay, cosine with linear warm-up to lr * min_lr_ratio; section 6.3)
    lr: float = 1e-3
    batch_size: int = 96  # questions per global batch
    epochs: int = 400
    max_steps: int = 0  # >0 overrides epochs
    warmup_frac: float = 0.1  # warm-up steps = warmup_frac * total steps
    min_lr_ratio: float = 0.01  # final lr = lr / 100
    grad_clip: float = 0.0  # the original does not clip
    eval_every_epochs: int = 20
    val_batch_size: int = 192  # questions per evaluation batch
    # Start offsets evaluated (Q7: the original drew one at random even at val/test time). [] = every valid offset
    # 0 .. video_len - (num_frames - 1) * (video_len // num_frames) - 1; metrics are averaged over them.
    eval_offsets: list[int] = field(default_factory=list)
    checkpoint: str = ""  # reasoner to evaluate (`cjepa vqa evaluate`): checkpoint dir or run dir
    eval_split: str = "val"  # split of vqa.slots that `cjepa vqa evaluate` reads


@dataclass(kw_only=True)
class StudyConfig:
    """The masking study: predictors with 0..4 masked slots x seeds -> rollout -> VQA (`cjepa vqa study`)."""

    name: str = "masking_study"  # results go to <run.out_dir>/<study.name>/
    # Sweep grid as dotted overrides with comma-separated values; the cells are their cartesian product.
    # A SLURM array can run one cell per task (`cjepa vqa study --cell $SLURM_ARRAY_TASK_ID`).
    grid: list[str] = field(default_factory=lambda: ["masking.num_masked=0,1,2,3,4", "run.seed=0,1,2"])
    protocols: list[str] = field(default_factory=lambda: ["original", "counterfactual_rollout"])
    splits: list[str] = field(default_factory=lambda: ["train", "val"])  # splits rolled out for the reasoner


@dataclass(kw_only=True)
class PlanConfig:
    """CEM-MPC planning and the Push-T evaluation protocol (spec sections 2.6, 2.7, 3)."""

    checkpoint: str = ""  # world model to plan with: a checkpoint dir or a run dir (its latest checkpoint)
    baseline_checkpoint: str = ""  # optional second model evaluated on the same episodes (e.g. OC-JEPA, no masking)
    dataset: str = ""  # Push-T state-slot store (cjepa pusht) holding the held-out expert episodes
    # Also evaluate the simulator as the world model (true dynamics, same embedding and cost as plan.checkpoint):
    # the upper bound of CEM + cost under the protocol. Slow on a CPU (every candidate is simulated).
    oracle: bool = False
    # The oracle's cost: "embedding" = the model's cost over embedded simulator states (the upper bound of the
    # protocol); "state" = the success rule's geometry on the true state (cjepa.plan.diagnose.state_cost), which
    # separates what CEM can do from what the embedding lets it do; "state_path" = that cost at the plan's best
    # env step (success is checked after every step).
    oracle_cost: Literal["embedding", "state", "state_path"] = "embedding"
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
    reorder_slots: bool = True  # re-match predicted slots to the previous frame after each call (spec 2.6)
    proprio_weight: float = 1.0  # cost = matched slot MSE + this * proprio-node MSE (spec 2.7)
    max_perm_slots: int = 7  # batched matching enumerates S! permutations up to this S; scipy above
    # "batched": every candidate's slot assignment in one tensor op; "scipy": one linear_sum_assignment per
    # candidate and rollout step on the host, as the original (Q13; slower, same result)
    matching: Literal["batched", "scipy"] = "batched"
    # The env does not clip actions and neither did the original; true keeps executed actions in [-1, 1].
    clip_actions: bool = False
    # evaluation protocol (spec 3.4)
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
    world: WorldConfig = field(default_factory=WorldConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    vqa: VQAConfig = field(default_factory=VQAConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
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


_YAML11_FLOAT_STRING = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


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
        if isinstance(value, str) and _YAML11_FLOAT_STRING.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads 1e-4 (no dot) as a string; it is a number
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
        for data, source in _read_yaml(resolve_config_file(p)):
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
        if m.residual:
            raise ConfigError("model.residual=true is an option of the cjepa layout; the reference layout is the original")
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
    if d.source == "synthetic" and d.synthetic.max_objects > m.num_slots:
        raise ConfigError(
            f"data.synthetic.max_objects={d.synthetic.max_objects} exceeds model.num_slots={m.num_slots}"
        )
    if d.clip_frames < 1 or d.clip_stride < 1 or d.clips_per_video < 1 or d.video_batch_size < 1:
        raise ConfigError("data.clip_frames, data.clip_stride, data.clips_per_video and data.video_batch_size must be >= 1")
    if min(d.image_size) < 1:
        raise ConfigError(f"data.image_size={list(d.image_size)} must be positive (h, w)")
    w = cfg.world
    if not 1 <= w.min_objects <= w.max_objects <= 48:
        raise ConfigError(f"world.min_objects={w.min_objects}, world.max_objects={w.max_objects}: need 1 <= min <= max <= 48")
    if w.height % 2 or w.width % 2 or w.height < 16 or w.width < 16:
        raise ConfigError(f"world.height x world.width = {w.height}x{w.width}: both must be even and >= 16 (yuv420p video)")
    if w.num_frames < 2 or w.future_frames < 0 or w.fps <= 0 or w.substeps < 1 or w.shard_size < 1:
        raise ConfigError("world: num_frames >= 2, future_frames >= 0, fps > 0, substeps >= 1, shard_size >= 1")
    if cfg.train.grad_accum < 1:
        raise ConfigError("train.grad_accum must be >= 1")
    if cfg.train.log_every < 1:
        # also the host-read interval of the NaN check: the trainer reads losses only every log_every steps
        raise ConfigError("train.log_every must be >= 1")
    if cfg.optim.grad_clip < 0:
        raise ConfigError("optim.grad_clip must be >= 0 (0 disables clipping)")
    _validate_rates_and_steps(cfg)
    _validate_dist(cfg)
    _validate_launch(cfg.launch)
    r = cfg.rollout
    if r.target_frames < r.obs_frames:
        raise ConfigError("rollout.target_frames must be >= rollout.obs_frames")
    if r.eval_videos < 0 or r.eval_chains < 0:
        raise ConfigError(f"rollout.eval_videos ({r.eval_videos}) and rollout.eval_chains ({r.eval_chains}) "
                          "must be >= 0 (0 skips the final rollout evaluation)")
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
    _validate_encoder(cfg.encoder)
    if cfg.train.task == "pretrain" and cfg.encoder.kind == "savi" and cfg.encoder.savi.init == "cues":
        raise ConfigError(
            "train.task=pretrain streams clips without instance masks, so it cannot run a conditional encoder "
            "(encoder.savi.init=cues): extract slots with `cjepa extract`, then `cjepa train` on them"
        )
    _validate_vqa(cfg.vqa)
    _validate_study(cfg.study)


def _validate_rates_and_steps(cfg: Config) -> None:
    """Learning rates are finite and positive (a zero or NaN rate trains nothing, silently); step counts are >= 0."""
    o, v = cfg.optim, cfg.vqa
    for key, lr in (("optim.lr", o.lr), ("optim.proprio_lr", o.proprio_lr), ("optim.action_lr", o.action_lr), ("vqa.lr", v.lr)):
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"{key}={lr} must be a finite number > 0")
    t = cfg.train
    for key, n in (("train.epochs", t.epochs), ("train.max_steps", t.max_steps), ("train.val_every", t.val_every),
                   ("train.ckpt_every", t.ckpt_every), ("train.keep_checkpoints", t.keep_checkpoints),
                   ("optim.warmup_steps", o.warmup_steps), ("vqa.epochs", v.epochs), ("vqa.max_steps", v.max_steps),
                   ("encoder.vis_every", cfg.encoder.vis_every)):
        if n < 0:
            raise ConfigError(f"{key}={n} must be >= 0")


def keys_named(name: str) -> list[str]:
    """Every dotted config key whose last part is ``name`` (``lr`` -> ['optim.lr', 'vqa.lr'])."""
    found: list[str] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif f.name == name:
                found.append(prefix + f.name)

    walk(Config(), "")
    return found


def resolve_config_file(path: str | Path) -> Path:
    """A ``-c`` file: as given, else the shipped one (``configs/clevrer/x.yaml`` or ``clevrer/x.yaml``), so that
    commands find the repository's configs from any directory, as ``cjepa demo`` does."""
    from cjepa.paths import CONFIG_DIR, REPO_ROOT

    p = Path(path)
    if p.is_file() or p.is_absolute():
        return p
    for cand in (REPO_ROOT / p, CONFIG_DIR / p):
        if cand.is_file():
            return cand
    return p


def _validate_vqa(v: VQAConfig) -> None:
    if v.num_frames < 1 or v.video_len < v.num_frames:
        raise ConfigError(f"vqa.num_frames={v.num_frames} must be in 1..vqa.video_len={v.video_len}")
    if v.question_len < 1 or v.choice_len < 1:
        raise ConfigError("vqa.question_len and vqa.choice_len must be >= 1")
    if v.word_dim < 1 or v.heads < 1 or v.depth < 1 or v.ffn_dim < 1 or v.head_hidden < 1:
        raise ConfigError("vqa.word_dim, vqa.heads, vqa.depth, vqa.ffn_dim and vqa.head_hidden must be positive")
    if v.batch_size < 1 or v.val_batch_size < 1:
        raise ConfigError("vqa.batch_size and vqa.val_batch_size must be >= 1")
    if not 0.0 <= v.warmup_frac < 1.0:
        raise ConfigError(f"vqa.warmup_frac={v.warmup_frac} must be in [0, 1)")
    if v.eval_every_epochs < 1:
        raise ConfigError("vqa.eval_every_epochs must be >= 1")
    offset = v.video_len // v.num_frames
    starts = 1 if v.frame_sampling == "span" else v.video_len - (v.num_frames - 1) * offset
    bad = [o for o in v.eval_offsets if not 0 <= o < starts]
    if bad:
        raise ConfigError(f"vqa.eval_offsets {bad} out of range: valid start offsets are 0..{starts - 1}")
    if v.cf_frames < v.video_len:
        raise ConfigError(f"vqa.cf_frames={v.cf_frames} must cover vqa.video_len={v.video_len}")


def _validate_study(s: StudyConfig) -> None:
    for item in s.grid:
        if "=" not in item or not item.split("=", 1)[0].strip() or not item.split("=", 1)[1].strip():
            raise ConfigError(f"study.grid entry {item!r} must look like section.key=v1,v2,...")
    bad = [p for p in s.protocols if p not in ("original", "counterfactual_rollout")]
    if bad or not s.protocols:
        raise ConfigError(f"study.protocols {s.protocols}: choose from 'original', 'counterfactual_rollout'")


def _validate_encoder(e: EncoderConfig) -> None:
    if e.num_slots < 1 or e.slot_dim < 1:
        raise ConfigError("encoder.num_slots and encoder.slot_dim must be >= 1")
    b = e.backbone
    if b.image_size % b.patch_size:
        raise ConfigError(f"encoder.backbone.image_size={b.image_size} must be a multiple of patch_size={b.patch_size}")
    if b.dim % b.heads:
        raise ConfigError(f"encoder.backbone.dim={b.dim} is not divisible by encoder.backbone.heads={b.heads}")
    v = e.videosaur
    if v.iters < 1 or v.iters_first < 1:
        raise ConfigError("encoder.videosaur.iters and iters_first must be >= 1")
    for name, heads in (("predictor_heads", v.predictor_heads), ("decoder_heads", v.decoder_heads)):
        if e.slot_dim % heads:
            raise ConfigError(f"encoder.slot_dim={e.slot_dim} is not divisible by encoder.videosaur.{name}={heads}")
    if not v.renderer_dims:
        raise ConfigError("encoder.videosaur.renderer_dims needs at least one layer")
    if v.sim_temp <= 0:
        raise ConfigError("encoder.videosaur.sim_temp must be > 0")
    s = e.savi
    res, ups = s.dec_resolution, 0
    while res < s.resolution:
        res, ups = res * 2, ups + 1
    if res != s.resolution or ups > 4:
        raise ConfigError(
            f"encoder.savi.resolution={s.resolution} must be dec_resolution={s.dec_resolution} times 2**k with k <= 4 "
            "(the decoder doubles the broadcast grid with up to 4 stride-2 layers)"
        )
    d = e.data
    if d.clip_frames < 1 or d.frame_stride < 1 or d.val_clip_frames < 1 or d.val_batch_size < 1:
        raise ConfigError("encoder.data.clip_frames, frame_stride, val_clip_frames and val_batch_size must be >= 1")
    if d.long_clip_frames < 0 or d.long_clips_from < 0:
        raise ConfigError("encoder.data.long_clip_frames and long_clips_from must be >= 0")
    if e.kind == "videosaur" and (d.clip_frames < 2 or d.val_clip_frames < 2) and v.sim_weight > 0:
        raise ConfigError("the VideoSAUR time-similarity loss needs clips of >= 2 frames (encoder.data.clip_frames)")
    if not 0.0 <= d.hflip_prob <= 1.0:
        raise ConfigError("encoder.data.hflip_prob must be in [0, 1]")
    x = e.extract
    if x.frame_stride < 1 or x.batch_videos < 1:
        raise ConfigError("encoder.extract.frame_stride and batch_videos must be >= 1")


def _validate_dist(cfg: Config) -> None:
    ds = cfg.dist
    if ds.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"dist.zero_stage={ds.zero_stage}: choose 0, 1, 2 or 3")
    if ds.timeout_s <= 0:
        raise ConfigError("dist.timeout_s must be positive: a dead rank must fail the job, not hang it")
    if ds.offload_params and ds.zero_stage != 3:
        raise ConfigError(f"dist.offload_params needs dist.zero_stage=3 (got {ds.zero_stage}): only ZeRO-3 partitions parameters")
    if ds.offload_optimizer and ds.zero_stage == 0:
        raise ConfigError("dist.offload_optimizer needs dist.zero_stage >= 1 (ZeRO-Offload works on ZeRO's partitions)")
    if ds.reduce_bucket_size <= 0 or ds.allgather_bucket_size <= 0:
        raise ConfigError("dist.reduce_bucket_size and dist.allgather_bucket_size must be positive")


def _validate_launch(la: LaunchConfig) -> None:
    if la.nodes < 1 or la.tasks_per_node < 1:
        raise ConfigError("launch.nodes and launch.tasks_per_node must be >= 1")
    for key in ("gpus_per_node", "cpus_per_task"):
        v = getattr(la, key)
        if v is not None and v < 0:
            raise ConfigError(f"launch.{key} must be >= 0")
    if la.mem_gb is not None and la.mem_gb <= 0:
        raise ConfigError("launch.mem_gb must be positive (or null for the preset's)")
    if la.timeout_min < 1:
        raise ConfigError("launch.timeout_min must be >= 1")
    if la.max_requeues < 0 or la.array_parallelism < 0 or la.signal_delay_s < 0:
        raise ConfigError("launch.max_requeues, launch.array_parallelism and launch.signal_delay_s must be >= 0")
    if la.signal_delay_s >= la.timeout_min * 60:
        raise ConfigError(
            f"launch.signal_delay_s={la.signal_delay_s} must be shorter than launch.timeout_min={la.timeout_min} minutes"
        )


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


def to_deepspeed(cfg: Config, derived: Derived) -> dict:
    """The DeepSpeed config dict of a run, generated from our config (there is no hand-kept ds_config.json).

    Batch sizes come from :func:`derive` (global = micro * grad_accum * world). The optimizer is AdamW with our
    hyper-parameters; param groups with their own ``lr`` (Push-T encoders) keep it. The LR schedule is not
    set here: the engine hands DeepSpeed our own schedule (``cjepa.dist.engine.lr_lambda``) as a client
    scheduler, so a DeepSpeed run follows exactly the LR curve of a single/DDP run. ``gradient_clipping`` is
    always written: DeepSpeed's default is 1.0, which would silently clip runs that asked for none.
    """
    ds, o = cfg.dist, cfg.optim
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage > 0:
        zero.update(
            reduce_bucket_size=ds.reduce_bucket_size,
            allgather_bucket_size=ds.allgather_bucket_size,
            overlap_comm=ds.overlap_comm,
            contiguous_gradients=True,
        )
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": ds.offload_pin_memory}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": ds.offload_pin_memory}
    if ds.zero_stage == 3:
        # Checkpoints keep ZeRO-3 shards; plain weights come from the fp32 master copies (cjepa.dist.deepspeed),
        # so no 16-bit gather at save time.
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    return {
        "train_batch_size": derived.global_batch,
        "train_micro_batch_size_per_gpu": derived.micro_batch,
        "gradient_accumulation_steps": derived.grad_accum,
        "gradient_clipping": float(o.grad_clip),  # 0.0 = off
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": o.lr,
                "betas": list(o.betas),
                "eps": o.eps,
                "weight_decay": o.weight_decay,
                "torch_adam": ds.torch_adam,
            },
        },
        # train.precision=bf16 means what it means for single/DDP: autocast over fp32 weights (the trainer's
        # inputs and evaluation are fp32; DeepSpeed's "bf16" section would make the weights themselves bf16).
        # DeepSpeed then reduces the gradients of Linear layers in bf16, halving their communication.
        "torch_autocast": {"enabled": cfg.train.precision == "bf16", "dtype": "bfloat16"},
        "zero_optimization": zero,
        # torch's AdamW on ZeRO-Offload's CPU partitions instead of demanding DeepSpeedCPUAdam (a JIT C++ build).
        "zero_force_ds_cpu_optimizer": not ds.torch_adam,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,  # our trainer logs; DeepSpeed's own progress lines are noise
        "wall_clock_breakdown": False,
        "dump_state": False,
    }


def encoder_input_size(enc) -> tuple[int, int]:
    """(h, w) the encoder reads: SAVi's resolution or the DINOv2 input side. Video sources decode to it, so the
    one resize happens in the data workers and the encoder's own resize is the identity."""
    side = enc.savi.resolution if enc.kind == "savi" else enc.backbone.image_size
    return (side, side)
