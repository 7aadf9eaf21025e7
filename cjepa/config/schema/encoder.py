"""The ``encoder`` section: the object-centric encoder (VideoSAUR or SAVi), its frozen backbone, its training
clips and slot extraction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cjepa.config.errors import ConfigError


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

    def validate(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"encoder.backbone.image_size={self.image_size} must be a multiple of patch_size={self.patch_size}"
            )
        if self.dim % self.heads:
            raise ConfigError(
                f"encoder.backbone.dim={self.dim} is not divisible by encoder.backbone.heads={self.heads}"
            )


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

    def validate(self, slot_dim: int) -> None:
        """``slot_dim`` is encoder.slot_dim, which the predictor and decoder heads split."""
        if self.iters < 1 or self.iters_first < 1:
            raise ConfigError("encoder.videosaur.iters and iters_first must be >= 1")
        for name, heads in (("predictor_heads", self.predictor_heads), ("decoder_heads", self.decoder_heads)):
            if slot_dim % heads:
                raise ConfigError(f"encoder.slot_dim={slot_dim} is not divisible by encoder.videosaur.{name}={heads}")
        if not self.renderer_dims:
            raise ConfigError("encoder.videosaur.renderer_dims needs at least one layer")
        if self.sim_temp <= 0:
            raise ConfigError("encoder.videosaur.sim_temp must be > 0")


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
    # Slot-attention iterations on every frame after the first (whose slots come from the transition, including
    # the first frame of a continued video); 0 = ``iters``. SAVi itself runs 1 there: the transition already
    # places the slots, and each extra iteration is another chance to re-bind them to other objects.
    iters_after_first: int = 0
    # What turns frame t's slots into frame t + 1's latents (before kernel_dist): "mlp" = the transition MLP
    # (the original); "identity" = the slots as they are (the MLP is still built, so checkpoints load either way).
    # Evaluating a trained model with "identity" tells whether the learned transition is what drifts.
    transition: Literal["mlp", "identity"] = "mlp"
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
    # Truncated back-propagation through time: with n > 0, a training clip longer than n + 1 frames trains its first
    # frame and its last n; the frames between are tracked without gradient and their slots carried in detached.
    # Long clips then cost about a short clip's backward pass while the transition learns from slots far into the
    # video, as whole-video extraction uses it. 0 = back-propagate through every frame. On the demo world the
    # detached carry did not teach tracking: full back-propagation over 8-frame clips held objects far longer
    # (benchmarks/results/tracking_20261206.jsonl).
    grad_frames: int = 0

    def validate(self) -> None:
        if self.grad_frames < 0:
            raise ConfigError(f"encoder.savi.grad_frames must be >= 0 (0 = every frame); got {self.grad_frames}")
        if self.iters < 1 or self.iters_after_first < 0:
            raise ConfigError(
                f"encoder.savi.iters must be >= 1 and iters_after_first >= 0 (0 = iters); got {self.iters} and "
                f"{self.iters_after_first}"
            )
        res, ups = self.dec_resolution, 0
        while res < self.resolution:
            res, ups = res * 2, ups + 1
        if res != self.resolution or ups > 4:
            raise ConfigError(
                f"encoder.savi.resolution={self.resolution} must be dec_resolution={self.dec_resolution} times 2**k "
                "with k <= 4 (the decoder doubles the broadcast grid with up to 4 stride-2 layers)"
            )


@dataclass(kw_only=True)
class VideoDataConfig:
    """Where decoded training clips and whole videos come from, and how clips are cut (section 4.7)."""

    # A registered video source (cjepa.data.video_sources): "shards" = the webdataset video shards.
    source: str = "shards"
    path: str = ""
    train_split: str = "train"
    val_split: str = "val"
    clip_frames: int = 6  # training clip length (frames after striding)
    # Clip-length curriculum: (from_step, frames) phases after the first one of ``clip_frames``; each takes over
    # from the first epoch that starts at or after its from_step (one length per epoch, so a resumed run cuts the
    # clips an uninterrupted one cuts). Short clips are cheap and teach binding; longer ones train the temporal
    # path (slots of frame t seed frame t + 1 through the transition) to keep objects over time. E.g.
    # ``[[300, 4], [340, 8], [370, 16]]``: 2-frame clips, then 4, 8 and 16 frames.
    clip_schedule: tuple[tuple[int, int], ...] = ()
    # The two-phase form of the same curriculum: ``long_clip_frames`` frames from ``long_clips_from`` (0 = off);
    # it is the schedule ``[[long_clips_from, long_clip_frames]]``.
    long_clip_frames: int = 0
    long_clips_from: int = 0
    frame_stride: int = 2  # keep every n-th decoded frame
    val_clip_frames: int = 10  # validation clip length (CLEVRER 10, Push-T 6)
    val_videos: int = 200  # validation videos (one clip each, from frame 0); 0 = all
    val_batch_size: int = 8  # validation clips per forward, per rank
    hflip_prob: float = 0.5  # random horizontal flip of whole clips in training (encoder only, Q17)

    def validate(self, needs_pairs: bool) -> None:
        """``needs_pairs``: the encoder's loss compares consecutive frames (VideoSAUR's time similarity)."""
        if self.clip_frames < 1 or self.frame_stride < 1 or self.val_clip_frames < 1 or self.val_batch_size < 1:
            raise ConfigError("encoder.data.clip_frames, frame_stride, val_clip_frames and val_batch_size must be >= 1")
        if self.long_clip_frames < 0 or self.long_clips_from < 0:
            raise ConfigError("encoder.data.long_clip_frames and long_clips_from must be >= 0")
        self._validate_schedule(needs_pairs)
        if needs_pairs and (self.clip_frames < 2 or self.val_clip_frames < 2):
            raise ConfigError(
                "the VideoSAUR time-similarity loss needs clips of >= 2 frames (encoder.data.clip_frames)"
            )
        if not 0.0 <= self.hflip_prob <= 1.0:
            raise ConfigError("encoder.data.hflip_prob must be in [0, 1]")

    def _validate_schedule(self, needs_pairs: bool) -> None:
        if self.clip_schedule and self.long_clip_frames:
            raise ConfigError(
                "encoder.data.clip_schedule and encoder.data.long_clip_frames both set a curriculum; give "
                f"clip_schedule only (long_clip_frames={self.long_clip_frames} from {self.long_clips_from} is "
                f"clip_schedule=[[{self.long_clips_from}, {self.long_clip_frames}]])"
            )
        shortest = 2 if needs_pairs else 1
        prev = 0
        for i, (start, frames) in enumerate(self.clip_schedule):
            where = f"encoder.data.clip_schedule[{i}] = [{start}, {frames}]"
            if start <= prev:
                after = f"phase {i - 1} starts at {prev}" if i else "the clip_frames phase starts at 0"
                raise ConfigError(
                    f"{where}: from_step must be > {prev} ({after}); phases are [from_step, frames] in increasing "
                    "from_step"
                )
            if frames < shortest:
                raise ConfigError(f"{where}: frames must be >= {shortest}")
            prev = start

    def phases(self) -> tuple[tuple[int, int], ...]:
        """Every (from_step, frames) phase of the training clips, the first ``(0, clip_frames)``."""
        if self.long_clip_frames:
            return (0, self.clip_frames), (self.long_clips_from, self.long_clip_frames)
        return ((0, self.clip_frames), *self.clip_schedule)


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

    def validate(self) -> None:
        if self.frame_stride < 1 or self.batch_videos < 1:
            raise ConfigError("encoder.extract.frame_stride and batch_videos must be >= 1")


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

    def validate(self) -> None:
        if self.num_slots < 1 or self.slot_dim < 1:
            raise ConfigError("encoder.num_slots and encoder.slot_dim must be >= 1")
        self.backbone.validate()
        self.videosaur.validate(self.slot_dim)
        self.savi.validate()
        self.data.validate(needs_pairs=self.kind == "videosaur" and self.videosaur.sim_weight > 0)
        self.extract.validate()


def encoder_input_size(enc: EncoderConfig) -> tuple[int, int]:
    """(h, w) the encoder reads: SAVi's resolution or the DINOv2 input side. Video sources decode to it, so the
    one resize happens in the data workers and the encoder's own resize is the identity."""
    side = enc.savi.resolution if enc.kind == "savi" else enc.backbone.image_size
    return (side, side)
