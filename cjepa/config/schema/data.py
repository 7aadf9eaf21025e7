"""Where training data comes from: slot data (``data``), the built-in worlds (``data.synthetic``, ``world``),
Push-T generation (``data.pusht``) and the video shards that encoders and pretraining read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cjepa.config.errors import ConfigError


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
    # simulated after the last shown frame, for predictive questions (CLEVRER: 7 s simulated, 5 shown)
    future_frames: int = 48
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

    def validate(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= 48:
            raise ConfigError(
                f"world.min_objects={self.min_objects}, world.max_objects={self.max_objects}: "
                "need 1 <= min <= max <= 48"
            )
        if self.height % 2 or self.width % 2 or self.height < 16 or self.width < 16:
            raise ConfigError(
                f"world.height x world.width = {self.height}x{self.width}: both must be even and >= 16 (yuv420p video)"
            )
        if self.num_frames < 2 or self.future_frames < 0 or self.fps <= 0 or self.substeps < 1 or self.shard_size < 1:
            raise ConfigError("world: num_frames >= 2, future_frames >= 0, fps > 0, substeps >= 1, shard_size >= 1")


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
    # Branch episodes (train split, default none): each starts at a uniformly drawn frame of a train expert
    # episode and applies `branch_policy` for `branch_steps` steps, so the world model sees the actions a
    # planner asks it about from the states it plans from. "normal": i.i.d. N(0, 1) in the normalised action
    # space (what CEM samples first), i.e. raw N(mean, std) per action dimension with the statistics of the
    # store's expert + random train actions (needs data.pusht.state_slots); "explore": the random-exploration
    # policy (WeakPolicy, PD targets kept near the block).
    branch_train: int = 0
    branch_policy: Literal["normal", "explore"] = "normal"
    branch_steps: int = 50
    videos: bool = True  # render and write video shards (cjepa.data.shards); off = state-slot store only
    masks: bool = True  # instance masks (agent=1, block=2) with the videos
    render_size: int = 224
    shard_size: int = 64  # episodes per video shard
    state_slots: bool = True  # write the state-slot store (no pixel encoder needed)
    background_slots: int = 2  # constant slots beside agent and block; model.num_slots = 2 + this
    slot_noise: float = 0.0  # std of Gaussian noise added to state slots (observation noise)
    seed: int = 0

    def validate(self) -> None:
        counts = (self.expert_train, self.random_train, self.expert_val, self.random_val)
        if min(counts) < 0 or self.background_slots < 0:
            raise ConfigError("data.pusht episode counts and data.pusht.background_slots must be >= 0")
        if self.render_size < 8 or self.shard_size < 1 or self.expert_max_steps < 1 or self.random_steps < 1:
            raise ConfigError(
                "data.pusht.render_size must be >= 8 and shard_size, expert_max_steps, random_steps >= 1"
            )
        if self.branch_train < 0 or self.branch_steps < 1:
            raise ConfigError("data.pusht.branch_train must be >= 0 and data.pusht.branch_steps >= 1")
        if self.branch_policy not in ("normal", "explore"):
            raise ConfigError(f"data.pusht.branch_policy must be 'normal' or 'explore', got {self.branch_policy!r}")
        if self.branch_train and self.expert_train < 1:
            raise ConfigError("data.pusht.branch_train > 0 branches off train expert episodes: expert_train must be "
                              ">= 1")
        if self.branch_train and self.branch_policy == "normal" and not self.state_slots:
            raise ConfigError("data.pusht.branch_policy=normal takes its action statistics from the state-slot "
                              "store: data.pusht.state_slots must be on")


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
    # ... or shard URLs, streamed: https://host/{split}-{000000..000099}.tar,
    # pipe:aws s3 cp s3://bucket/{split}-000000.tar -
    decoder: Literal["pyav", "dali"] = "pyav"  # pyav: CPU DataLoader workers; dali: one DALI pipeline (NVDEC on GPU)
    # DALI's decode step: auto = nvdec with a GPU, else PyAV inside the pipeline (or DALI's CPU decoder for VP9 shards)
    dali_decode: Literal["auto", "nvdec", "pyav", "cpu"] = "auto"
    image_size: tuple[int, int] = (196, 196)  # (h, w) model input; aspect is not kept, as in the original (Q16)
    clip_frames: int = 6  # frames per training clip (VideoSAUR: 6)
    clip_stride: int = 2  # frame step inside a clip (VideoSAUR: 2)
    clip_sampling: Literal["random",
                           "chunks"] = "random"  # random start per video and pass, or all non-overlapping chunks
    clips_per_video: int = 1  # random clips drawn per video per pass
    video_batch_size: int = 32  # clips per batch and rank (VideoSAUR: 32 per GPU)
    shuffle_buffer: int = 64  # samples; 0 = read shards in order
    # Training passes draw shards with replacement (webdataset's resampled stream) instead of exact epochs (pyav only)
    resampled: bool = False
    batches_per_epoch: int = 0  # per rank; 0 = from the manifest's sample count (shard URLs have none: set it)
    decode_threads: int = 1  # FFmpeg threads per decoding worker (workers already run in parallel)
    with_masks: bool = True  # deliver instance masks when every sample of the split has them
    pusht: PushTDataConfig = field(default_factory=PushTDataConfig)

    def validate(self, num_slots: int) -> None:
        """``num_slots`` is model.num_slots, which the synthetic world's objects must fit. ``pusht`` checks itself
        (later in :func:`cjepa.config.validate.validate`, which keeps the order of the first error)."""
        if self.frameskip < 1 or self.batch_size < 1:
            raise ConfigError("data.frameskip and data.batch_size must be >= 1")
        if self.source == "synthetic" and self.synthetic.max_objects > num_slots:
            raise ConfigError(
                f"data.synthetic.max_objects={self.synthetic.max_objects} exceeds model.num_slots={num_slots}"
            )
        if self.clip_frames < 1 or self.clip_stride < 1 or self.clips_per_video < 1 or self.video_batch_size < 1:
            raise ConfigError(
                "data.clip_frames, data.clip_stride, data.clips_per_video and data.video_batch_size must be >= 1"
            )
        if self.batches_per_epoch < 0:
            raise ConfigError(f"data.batches_per_epoch={self.batches_per_epoch} must be >= 0 (0: from the manifest)")
        if min(self.image_size) < 1:
            raise ConfigError(f"data.image_size={list(self.image_size)} must be positive (h, w)")
