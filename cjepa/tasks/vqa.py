"""The ALOE reasoner as a task of the project's generic trainer (``cjepa.trainer.Trainer``): :class:`VQATask`.

Why the generic trainer fits: VQA training is a plain supervised loop over a shuffled item list, which is
what the trainer's step-indexed sampler, engines (single / DDP), bf16 autocast, checkpoints with RNG state,
resume, NaN stop, SLURM preemption handling and logging already do. The VQA-specific parts are the batch
(variable rows per question), the random start offset per question (an :class:`OffsetBatchSampler` seeded by
(seed, epoch), so resume stays exact), the losses and the evaluation.

The reasoner's optimiser settings live in the ``vqa`` section (a masking study trains predictors and
reasoners from one config, with different learning rates and batch sizes). :func:`trainer_config` maps them
onto the sections the trainer reads: Adam (AdamW with weight decay 0), cosine schedule to lr * min_lr_ratio
after a linear warm-up of warmup_frac of the steps (set in :meth:`VQATask.setup`, once the step count is
known; the original warms up from lr/100 rather than from 0), batch size, epochs, evaluation every
``eval_every_epochs`` epochs. ``train.task=vqa`` selects this task in the generic entry points too (``cjepa train``,
``cjepa submit`` / ``cjepa sweep`` jobs), so reasoner runs can be launched on SLURM like any training. The vocabulary
and the reasoner's input shape are saved in every checkpoint's
task state and as ``vocab.json`` in the run directory. Training, loading and evaluating a reasoner from the command
line: :mod:`cjepa.eval.vqa.reasoner`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from cjepa.config import Config, ConfigError, Derived
from cjepa.data.sampler import StepBatchSampler
from cjepa.data.slot_store import SlotSplit, open_split
from cjepa.distributed.env import DistEnv
from cjepa.eval.vqa.data import OffsetBatchSampler, VQADataset, collate_questions, num_start_offsets, resolve_video_keys
from cjepa.eval.vqa.evaluate import evaluate_reasoner, jsonable, write_outputs
from cjepa.eval.vqa.model import ALOEReasoner, masked_slot_loss, reasoner_losses, sample_slot_mask
from cjepa.eval.vqa.questions import (
    COUNTERFACTUAL,
    QuestionSet,
    build_question_set,
    has_answers,
    iter_answers,
    iter_texts,
    load_object_tables,
    load_question_file,
    resolve_removed_objects,
)
from cjepa.eval.vqa.rollouts import cf_key
from cjepa.eval.vqa.text import Vocab
from cjepa.tasks.base import TaskBase
from cjepa.utils.precision import autocast_dtype, resolve_precision


def trainer_config(cfg: Config) -> Config:
    """A copy of ``cfg`` whose optim/data/train sections carry the reasoner's settings from ``cfg.vqa``."""
    c = copy.deepcopy(cfg)
    apply_vqa_training(c)
    return c


def apply_vqa_training(c: Config) -> None:
    """In place: train.task=vqa, and the vqa.* optimiser settings in the sections the trainer reads."""
    v = c.vqa
    c.train.task = "vqa"
    c.optim.lr = v.lr
    c.optim.weight_decay = 0.0  # plain Adam, as the original
    c.optim.betas = (0.9, 0.999)
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 0  # set by VQATask.setup to warmup_frac * total steps
    c.optim.min_lr_ratio = v.min_lr_ratio
    c.optim.grad_clip = v.grad_clip
    c.data.batch_size = v.batch_size
    c.train.epochs = v.epochs
    c.train.max_steps = v.max_steps
    # train.val_every: 0 (the default) is set by VQATask.setup to eval_every_epochs epochs


def eval_offsets(cfg: Config) -> list[int]:
    v = cfg.vqa
    return list(v.eval_offsets) or list(range(num_start_offsets(v.video_len, v.num_frames, v.frame_sampling)))


# The vqa.* settings a trained reasoner is rebuilt and fed with (read back from its checkpoint's config): every key
# reasoner_from_config reads, and the windows its inputs were cut with. A key missing here rebuilds another model.
REASONER_CHECKPOINT_KEYS = (
    "word_dim", "heads", "depth", "ffn_dim", "dropout", "head_hidden", "num_frames", "question_len", "choice_len",
    "token_layout", "slot_loss_weight", "frame_sampling", "video_len",
)


def reasoner_from_config(cfg: Config, vocab: Vocab, num_slots: int, slot_dim: int) -> ALOEReasoner:
    v = cfg.vqa
    return ALOEReasoner(
        num_words=vocab.num_words,
        num_answers=vocab.num_answers,
        slot_dim=slot_dim,
        num_slots=num_slots,
        num_frames=v.num_frames,
        question_len=v.question_len,
        choice_len=v.choice_len,
        word_dim=v.word_dim,
        heads=v.heads,
        depth=v.depth,
        ffn_dim=v.ffn_dim,
        dropout=v.dropout,
        head_hidden=v.head_hidden,
        slot_prediction=v.slot_loss_weight > 0,
        token_layout=v.token_layout,
    )


def build_split(
    cfg: Config, split: str, questions_path: str, vocab: Vocab, *, labelled: Optional[bool] = True,
    scenes: Optional[list] = None
) -> tuple[VQADataset, dict]:
    """The dataset of one split under ``cfg.vqa.protocol`` and a description of what it holds.

    ``labelled=None`` decides from the file (a test file without answers gives predictions, not scores)."""
    v = cfg.vqa
    if not questions_path:
        raise ConfigError(f"split {split!r}: no question file (vqa.questions_train / vqa.questions_val)")
    if not v.slots:
        raise ConfigError("vqa.slots is required: the slot videos (observed + rollout) the reasoner reads")
    # CLEVRER's train file is large: read once
    scenes = scenes if scenes is not None else load_question_file(questions_path)
    if labelled is None:
        labelled = has_answers(scenes)
    qs = build_question_set(scenes, vocab, v.question_len, v.choice_len, labelled=labelled, source=questions_path)
    videos = open_split(v.slots_source, v.slots, split)
    keys = resolve_video_keys(qs, set(videos.keys()))
    missing = [i for i, k in enumerate(keys) if k is None]
    info: dict = {"labelled": labelled, "questions": len(qs), **{f"{t}": n for t, n in qs.counts_by_type().items()},
                  "truncated_texts": qs.truncated}
    if missing:
        examples = sorted({qs.video_filename[i] for i in missing})[:3]
        if not v.skip_missing_videos:
            raise ConfigError(
                f"{len(missing)} questions of {questions_path} have no slot video in {v.slots} (split {split!r}), e.g. "
                f"{examples}; set vqa.skip_missing_videos=true to drop them (they are then counted, not scored)"
            )
        keep = np.asarray([i for i, k in enumerate(keys) if k is not None])
        if len(keep) == 0:
            raise ConfigError(f"no question of {questions_path} has a slot video in {v.slots} (split {split!r})")
        qs, keys = qs.subset(keep), [keys[i] for i in keep]
        info["dropped_missing_video"] = len(missing)
    cf_videos, cf_keys = None, None
    if v.protocol in ("counterfactual_rollout", "oracle"):
        cf_videos, cf_keys, cf_info = _counterfactual_keys(cfg, split, qs, keys)
        info.update(cf_info)
    ds = VQADataset(
        qs, videos, keys, video_len=v.video_len, num_frames=v.num_frames, cf_videos=cf_videos, cf_keys=cf_keys,
        sampling=v.frame_sampling
    )
    info.update(videos=len(set(keys)), num_slots=ds.num_slots, slot_dim=ds.slot_dim, slots=str(v.slots))
    return ds, info


def _counterfactual_keys(cfg: Config, split: str, qs: QuestionSet, keys: list[str]):
    v = cfg.vqa
    built_by = (
        "`cjepa vqa make-billiards --oracle`: <world>/oracle/counterfactual"
        if v.protocol == "oracle"
        else "`cjepa vqa counterfactual`"
    )
    if not v.cf_slots:
        raise ConfigError(f"vqa.protocol={v.protocol} needs vqa.cf_slots (built by {built_by})")
    if not v.annotations:
        raise ConfigError(f"vqa.protocol={v.protocol} needs vqa.annotations (object tables naming the removed objects)")
    stats = resolve_removed_objects(qs, load_object_tables(v.annotations, split))
    cf_videos = SlotSplit(v.cf_slots, split)
    have = set(cf_videos.keys())
    cf_keys: list[Optional[str]] = [None] * len(qs)
    for q in np.nonzero(qs.qtype == COUNTERFACTUAL)[0]:
        if qs.removed_object[q] >= 0 and cf_key(keys[q], qs.removed_object[q]) in have:
            cf_keys[q] = cf_key(keys[q], qs.removed_object[q])
    n_cf = int((qs.qtype == COUNTERFACTUAL).sum())
    used = sum(k is not None for k in cf_keys)
    if v.protocol == "oracle" and used < n_cf:
        q = next(int(q) for q in np.nonzero(qs.qtype == COUNTERFACTUAL)[0] if cf_keys[q] is None)
        raise ConfigError(
            f"vqa.protocol=oracle: {n_cf - used} of {n_cf} counterfactual questions of split {split!r} have no re-run "
            "in "
            f"{v.cf_slots}, e.g. question {int(qs.question_id[q])} of scene {int(qs.scene_index[q])} "
            f"(removed object: {'unresolved' if qs.removed_object[q] < 0 else int(qs.removed_object[q])}; resolution "
            f"{stats})"
        )
    return cf_videos, cf_keys, {"cf_questions": n_cf, "cf_from_rollout": used, "cf_fallback": n_cf - used,
                                "cf_resolution": stats}


class VQATask(TaskBase):
    """Trainer task: ALOE on slot videos + CLEVRER-schema questions (see the module docstring)."""

    name = "vqa"

    def __init__(self, cfg: Config, *, progress: bool = True):
        apply_vqa_training(cfg)  # idempotent; needed when reached through `train.task=vqa` (cjepa train, launchers)
        self.cfg, self.v = cfg, cfg.vqa
        self.progress = progress
        self._cache: Optional[tuple[int, dict]] = None
        self._step = 0

    # ------------------------------------------------------------------ setup

    def setup(self, env: DistEnv, derived: Derived, device: torch.device) -> None:
        cfg, v = self.cfg, self.v
        self.env, self.derived, self.device = env, derived, device
        train_scenes = load_question_file(v.questions_train)
        self.vocab = Vocab.load(v.vocab) if v.vocab else Vocab.build(iter_texts(train_scenes),
                                                                     iter_answers(train_scenes))
        run_dir = Path(cfg.run.out_dir) / cfg.run.name
        saved = run_dir / "vocab.json"
        if saved.is_file() and Vocab.load(saved) != self.vocab:
            raise ConfigError(
                f"{saved} differs from the vocabulary built now: the training questions changed; use a new run.name"
            )
        self.train_ds, self.train_info = build_split(cfg, cfg.data.train_split, v.questions_train, self.vocab,
                                                     scenes=train_scenes)
        self.val_ds, self.val_info = build_split(cfg, cfg.data.val_split, v.questions_val, self.vocab)
        if (self.val_ds.num_slots, self.val_ds.slot_dim) != (self.train_ds.num_slots, self.train_ds.slot_dim):
            raise ConfigError("train and val slot videos differ in (slots, slot dim)")
        base = StepBatchSampler(
            len(self.train_ds),
            derived.global_batch,
            seed=cfg.run.seed,
            rank=env.rank,
            world_size=env.world_size,
            grad_accum=derived.grad_accum,
        )
        self.sampler = OffsetBatchSampler(base, self.train_ds.num_starts, cfg.run.seed)
        total = cfg.train.max_steps or cfg.train.epochs * self.steps_per_epoch
        cfg.optim.warmup_steps = int(round(v.warmup_frac * total))
        if cfg.train.val_every == 0:
            cfg.train.val_every = min(total, v.eval_every_epochs * self.steps_per_epoch)
        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.vocab.save(saved)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def describe(self) -> dict:
        d = {
            "protocol": self.v.protocol,
            "train_questions": len(self.train_ds),
            "val_questions": len(self.val_ds),
            "words": self.vocab.num_words,
            "answers": self.vocab.num_answers,
        }
        if self.v.protocol in ("counterfactual_rollout", "oracle"):
            d["val_cf_from_rollout"] = f"{self.val_info['cf_from_rollout']}/{self.val_info['cf_questions']}"
        return d

    def build_model(self) -> torch.nn.Module:
        return reasoner_from_config(self.cfg, self.vocab, self.train_ds.num_slots, self.train_ds.slot_dim)

    # ------------------------------------------------------------------ training

    def train_batches(self, start_step: int) -> Iterator[list[dict]]:
        self.sampler.set_position(start_step)
        loader = DataLoader(
            self.train_ds,
            batch_sampler=self.sampler,
            collate_fn=collate_questions,
            num_workers=self.cfg.data.num_workers,
            generator=torch.Generator(),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        return self.steps_of(loader)

    def training_losses(self, model, batch: dict, step: int, micro_index: int) -> dict[str, torch.Tensor]:
        self._step = step + 1
        b = {k: t.to(self.device, non_blocking=True) for k, t in batch.items()}
        if self.v.slot_loss_weight == 0:
            out = model(b["video"], b["row_video"], b["tokens"], b["pad"], b["is_mc"], b["slot_pad"])
            return reasoner_losses(out, b["label"], b["is_mc"])
        # The mask depends on (seed, step, micro-batch, rank) only, so a resumed run hides the same slots and the
        # ranks of one step hide different ones.
        gen = torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + 131 * step + micro_index
                                            + 7919 * self.env.rank)
        slot_mask = sample_slot_mask(b["slot_pad"].cpu(), self.v.slot_mask_ratio, gen).to(self.device)
        out = model(b["video"], b["row_video"], b["tokens"], b["pad"], b["is_mc"], b["slot_pad"], slot_mask)
        losses = reasoner_losses(out, b["label"], b["is_mc"])
        losses["loss_slots"] = masked_slot_loss(out)
        losses["loss"] = losses["loss"] + self.v.slot_loss_weight * losses["loss_slots"]
        return losses

    # ------------------------------------------------------------------ evaluation

    def _evaluate(self, module) -> dict:
        if self._cache is not None and self._cache[0] == self._step:
            return self._cache[1]
        dtype = autocast_dtype(resolve_precision(self.cfg.train.precision, self.device))
        res = evaluate_reasoner(
            module,
            self.val_ds,
            eval_offsets(self.cfg),
            batch_size=self.v.val_batch_size,
            device=self.device,
            rank=self.env.rank,
            world_size=self.env.world_size,
            progress=self.progress and self.env.is_main,
            autocast_dtype=dtype,
        )
        self._cache = (self._step, res)
        return res

    @torch.no_grad()
    def validate(self, module) -> dict[str, float]:
        m = self._evaluate(module)["metrics"]
        return {f"val/{k}": float(x) for k, x in m.items() if not k.endswith("_questions")}

    @torch.no_grad()
    def final_eval(self, module) -> dict:
        res = self._evaluate(module)
        run_dir = Path(self.cfg.run.out_dir) / self.cfg.run.name
        out = jsonable(res)
        out["data"] = {"train": self.train_info, "val": self.val_info}
        out["protocol"] = self.v.protocol
        if self.env.is_main:
            paths = write_outputs(
                res,
                self.val_ds.qs,
                self.vocab.answer_names,
                run_dir,
                f"{self.cfg.data.val_split}_{self.v.protocol}",
                {"data": out["data"], "protocol": self.v.protocol},
            )
            out["files"] = [str(p) for p in paths]
        return out

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "vocab": self.vocab.to_dict(),
            "shape": {"num_slots": self.train_ds.num_slots, "slot_dim": self.train_ds.slot_dim},
        }

    def load_state_dict(self, sd: dict) -> None:
        if "vocab" in sd and Vocab.from_dict(sd["vocab"], "checkpoint") != self.vocab:
            raise ConfigError(
                "the checkpoint's vocabulary differs from the one built from vqa.questions_train; use a new run.name"
            )
