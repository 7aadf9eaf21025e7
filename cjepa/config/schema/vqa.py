"""CLEVRER-style VQA: the ALOE reasoner (``vqa``) and the masking study that feeds it (``study``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cjepa.config.errors import ConfigError


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
    # Masked-slot prediction next to the answers (ALOE's self-supervised objective; the original cjepa trains
    # without it): each training step hides slot_mask_ratio of the slot tokens and adds slot_loss_weight x the MSE
    # of reading them back. 0 = off (the reasoner then has the original's parameters).
    slot_loss_weight: float = 0.0
    slot_mask_ratio: float = 0.15
    # "frames": one token per (frame, slot), the original's; "objects": one token per slot holding its num_frames
    # vectors (an object's trajectory in one token; a shorter sequence)
    token_layout: Literal["frames", "objects"] = "frames"
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

    def validate(self) -> None:
        if self.num_frames < 1 or self.video_len < self.num_frames:
            raise ConfigError(f"vqa.num_frames={self.num_frames} must be in 1..vqa.video_len={self.video_len}")
        if self.question_len < 1 or self.choice_len < 1:
            raise ConfigError("vqa.question_len and vqa.choice_len must be >= 1")
        if min(self.word_dim, self.heads, self.depth, self.ffn_dim, self.head_hidden) < 1:
            raise ConfigError(
                "vqa.word_dim, vqa.heads, vqa.depth, vqa.ffn_dim and vqa.head_hidden must be positive"
            )
        if self.slot_loss_weight < 0 or not 0.0 < self.slot_mask_ratio < 1.0:
            raise ConfigError(f"vqa.slot_loss_weight={self.slot_loss_weight} must be >= 0 and vqa.slot_mask_ratio="
                              f"{self.slot_mask_ratio} in (0, 1)")
        if self.token_layout != "frames" and self.slot_loss_weight > 0:
            raise ConfigError("vqa.slot_loss_weight > 0 hides (frame, slot) tokens: it needs vqa.token_layout=frames")
        if self.batch_size < 1 or self.val_batch_size < 1:
            raise ConfigError("vqa.batch_size and vqa.val_batch_size must be >= 1")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ConfigError(f"vqa.warmup_frac={self.warmup_frac} must be in [0, 1)")
        if self.eval_every_epochs < 1:
            raise ConfigError("vqa.eval_every_epochs must be >= 1")
        offset = self.video_len // self.num_frames
        starts = 1 if self.frame_sampling == "span" else self.video_len - (self.num_frames - 1) * offset
        bad = [o for o in self.eval_offsets if not 0 <= o < starts]
        if bad:
            raise ConfigError(f"vqa.eval_offsets {bad} out of range: valid start offsets are 0..{starts - 1}")
        if self.cf_frames < self.video_len:
            raise ConfigError(f"vqa.cf_frames={self.cf_frames} must cover vqa.video_len={self.video_len}")


@dataclass(kw_only=True)
class StudyConfig:
    """The masking study: predictors with 0..4 masked slots x seeds -> rollout -> VQA (`cjepa vqa study`)."""

    name: str = "masking_study"  # results go to <run.out_dir>/<study.name>/
    # Sweep grid as dotted overrides with comma-separated values; the cells are their cartesian product.
    # A SLURM array can run one cell per task (`cjepa vqa study --cell $SLURM_ARRAY_TASK_ID`).
    grid: list[str] = field(default_factory=lambda: ["masking.num_masked=0,1,2,3,4", "run.seed=0,1,2"])
    protocols: list[str] = field(default_factory=lambda: ["original", "counterfactual_rollout"])
    splits: list[str] = field(default_factory=lambda: ["train", "val"])  # splits rolled out for the reasoner
    # A trained reasoner (checkpoint or run dir), e.g. the ceiling's (vqa.protocol=oracle): every cell evaluates it
    # on its own rollouts instead of training one per cell and protocol. Only the world model then differs between
    # cells, and the drop from the reasoner's oracle accuracy is what the world model costs. "" = train per cell.
    reasoner: str = ""
    # A `cjepa sweep` folder (the one holding sweep.json) whose jobs trained the cells' predictors, e.g. as a SLURM
    # array: `cjepa sweep -c CFG <study.grid, one axis per entry> --name NAME`. Each cell then uses the job whose saved
    # config agrees with the cell's on the grid keys and on model, masking, data, optim, train.max_steps/epochs and
    # run.seed, instead of training its own. "" = train one per cell.
    predictors: str = ""

    def validate(self) -> None:
        for item in self.grid:
            key, _, values = item.partition("=")
            if not key.strip() or not values.strip():
                raise ConfigError(f"study.grid entry {item!r} must look like section.key=v1,v2,...")
        bad = [p for p in self.protocols if p not in ("original", "counterfactual_rollout")]
        if bad or not self.protocols:
            raise ConfigError(f"study.protocols {self.protocols}: choose from 'original', 'counterfactual_rollout'")
