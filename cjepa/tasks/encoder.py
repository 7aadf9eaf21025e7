"""Training task of the object-centric encoders (VideoSAUR, SAVi) for the generic trainer (cjepa.trainer).

Data: a :class:`~cjepa.data.clips.VideoSource` per split (from ``encoder.data.source``, or passed in). An epoch is
one clip per training video (VideoSAUR's "one random chunk per video"): ``encoder.data.clip_frames`` frames at
``encoder.data.frame_stride`` from a random start, videos in a seeded order per epoch; clips are flipped
horizontally with probability ``encoder.data.hflip_prob`` (VideoSAUR, Q17). All randomness of a step (order,
clip starts, flips, slot-init noise) derives from (run.seed, epoch or step, video key), so a resumed run repeats
an uninterrupted one and N DDP ranks compute what one process computes on the whole batch.

Validation: the first ``encoder.data.val_videos`` validation videos, one clip of ``val_clip_frames`` from frame 0,
fixed slot-init noise; reports the losses and, when the source has instance masks, FG-ARI (per clip and per
frame), mBO and the slot-identity swap rate of the slot masks; rank 0 also writes a slot-mask image grid and the
first clip's slot masks over time (a video, tag ``val/slot_video``) to tensorboard and a GIF to ``<run dir>/media/``.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterator, Optional

import torch

from cjepa.backends.attention import check_backend
from cjepa.config import Config, Derived, encoder_input_size
from cjepa.data.clips import VideoSource, mix_seed
from cjepa.data.video_sources import open_video_source
from cjepa.distributed.env import DistEnv, all_reduce_sum
from cjepa.eval.segmentation import segmentation_scores
from cjepa.eval.slot_vis import log_slot_images, log_slot_video, save_gif
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.object_encoder import first_frame_cues
from cjepa.slot_extraction import video_seed
from cjepa.tasks.base import TaskBase


class EncoderTask(TaskBase):
    name = "encoder"

    def __init__(self, cfg: Config, train_source: Optional[VideoSource] = None,
                 val_source: Optional[VideoSource] = None):
        self.cfg = cfg
        self.train_source, self.val_source = train_source, val_source
        self._writer = None
        self._step = 0  # the optimizer step being computed (labels pictures)
        self.last_val: dict[str, float] = {}

    # ------------------------------------------------------------------ setup

    def setup(self, env: DistEnv, derived: Derived, device: torch.device) -> None:
        e = self.cfg.encoder
        self.env, self.derived, self.device = env, derived, device
        check_backend(self.cfg.kernels.attention, device)
        if self.train_source is None:
            self.train_source = open_video_source(e.data, e.data.train_split, encoder_input_size(e))
        if self.val_source is None:
            self.val_source = open_video_source(e.data, e.data.val_split, encoder_input_size(e))
        n = len(self.train_source)
        if n < derived.global_batch:
            raise ValueError(
                f"the training split has {n} videos, fewer than one global batch "
                f"(data.batch_size={derived.global_batch}); "
                "an epoch is one clip per video"
            )
        self._steps_per_epoch = n // derived.global_batch
        self.run_dir = Path(self.cfg.run.out_dir) / self.cfg.run.name

    @property
    def steps_per_epoch(self) -> int:
        return self._steps_per_epoch

    def describe(self) -> dict:
        d = self.cfg.encoder.data
        return {
            **getattr(self, "_model_facts", {}),
            "encoder": self.cfg.encoder.kind,
            "train_videos": len(self.train_source),
            "val_videos": len(self.val_source),
            "clip": f"{d.clip_frames}x{d.frame_stride}"
            + "".join(f", {frames} from step {self._phase_start(start)}" for start, frames in d.phases()[1:]),
            "gt_masks": self.val_source.has_masks,
        }

    def build_model(self) -> torch.nn.Module:
        model = build_object_encoder(
            self.cfg.encoder, attention_backend=self.cfg.kernels.attention,
            slot_attention_backend=self.cfg.kernels.slot_attention
        )
        self._model_facts = model.describe()
        if model.load_report is not None:
            self._model_facts["init_from"] = str(model.load_report)
        return model

    def param_groups(self, model) -> list[dict]:
        # The frozen DINOv2 has requires_grad=False and stays out of the optimizer (the original listed it anyway).
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    # ------------------------------------------------------------------ training

    def _phase_start(self, from_step: int) -> int:
        """The step a curriculum phase really starts at: the first epoch boundary at or after ``from_step``."""
        return -(-from_step // self.steps_per_epoch) * self.steps_per_epoch

    def clip_frames_at(self, epoch: int) -> int:
        """Training clip length of an epoch (encoder.data.clip_schedule): that of the last phase started by the
        epoch's first step. The curriculum switches at an epoch boundary (one length per epoch), and the length
        depends on the epoch alone, so a run resumed mid-epoch or mid-schedule cuts the clips an uninterrupted
        one cuts."""
        start = epoch * self.steps_per_epoch
        return [frames for begin, frames in self.cfg.encoder.data.phases() if begin <= start][-1]

    def train_batches(self, start_step: int) -> Iterator[list[dict]]:
        """From ``start_step`` to the end of its epoch: one list of grad_accum micro-batches per step."""
        d, e, env = self.derived, self.cfg.encoder.data, self.env
        epoch, within = divmod(start_step, self.steps_per_epoch)
        remaining = (self.steps_per_epoch - within) * d.grad_accum
        clips = self.train_source.iter_clips(
            batch_size=d.micro_batch,
            clip_frames=self.clip_frames_at(epoch),
            frame_stride=e.frame_stride,
            seed=self.cfg.run.seed,
            epoch=epoch,
            start_batch=within * d.grad_accum,
            rank=env.rank,
            world_size=env.world_size,
        )
        return self.steps_of(clips, limit=remaining)

    def _generator(self, *parts: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(mix_seed(self.cfg.run.seed, *parts))
        return g

    def _clip_seeds(self, batch: dict, step: int) -> list[int]:
        """One seed per clip from (run seed, step, video key): a clip's flip and slot noise do not depend on which
        rank or micro-batch it landed in, so DDP on N ranks computes exactly what one process computes."""
        return [mix_seed(self.cfg.run.seed, step, zlib.crc32(k.encode("utf-8"))) for k in batch["keys"]]

    def _augment(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Flip whole clips (B, T, ..., W) horizontally, each with its own seeded coin: frames and masks alike."""
        p = self.cfg.encoder.data.hflip_prob
        if p <= 0:
            return x
        flip = torch.tensor(
            [float(torch.rand(1, generator=torch.Generator().manual_seed(mix_seed(s, 11)))) < p for s in seeds]
        )
        return torch.where(flip.to(x.device).view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)

    def _cues(self, batch: dict, seeds: Optional[list[int]] = None) -> Optional[torch.Tensor]:
        """First-frame object cues (B, S, 3) for a conditional encoder (encoder.savi.init=cues), else None."""
        e = self.cfg.encoder
        if not (e.kind == "savi" and e.savi.init == "cues"):
            return None
        if "masks" not in batch:
            raise ValueError(
                f"encoder.savi.init=cues needs ground-truth instance masks, and the clips of {e.data.path!r} have none"
            )
        # On the host, from the batch's CPU masks, before the transfer: finding each sample's object ids reads them
        # (unique().tolist()), which on the device would wait for the GPU once per sample. The flips are the
        # frames' (same seeds), so the cues are those of the device masks; only the (B, S, 3) cues travel.
        first = batch["masks"][:, 0].cpu()  # (B, H, W)
        if seeds is not None:
            first = self._augment(first, seeds)
        return first_frame_cues(first.long(), e.num_slots).to(self.device, non_blocking=True)

    def training_losses(self, model, batch: dict, step: int, micro_index: int) -> dict[str, torch.Tensor]:
        self._step = step
        frames = batch["frames"].to(self.device, non_blocking=True)  # (B, T, 3, H, W)
        seeds = self._clip_seeds(batch, step)
        frames = self._augment(frames, seeds)
        losses, out = model(frames, generator=[self._generator(s, 7) for s in seeds], cues=self._cues(batch, seeds))
        vis = self.cfg.encoder.vis_every
        if vis and step % vis == 0 and micro_index == 0 and self.env.is_main:
            shown = out.aux.get("frames")  # the frames the masks are of (truncated back-propagation skips some)
            self._log_pictures("train", frames if shown is None else frames[:, shown.to(frames.device)], out.masks,
                               step)
        return losses

    # ------------------------------------------------------------------ evaluation

    def _tb(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))
        return self._writer

    def _log_pictures(self, tag: str, frames: torch.Tensor, masks: torch.Tensor, step: int) -> None:
        log_slot_images(self._tb(), f"{tag}/slots", frames.detach(), masks.detach(), step)
        log_slot_video(self._tb(), f"{tag}/slot_video", frames[0], masks[0], step)
        self._tb().flush()
        save_gif(self.run_dir / "media" / f"{tag}_slots_step{step:07d}.gif", frames[0].detach(), masks[0].detach(),
                 scale=2)

    @torch.no_grad()
    def evaluate(self, module, step: Optional[int] = None, pictures: bool = True) -> dict[str, float]:
        """Validation losses and segmentation scores over the validation clips (exact over ranks)."""
        e = self.cfg.encoder.data
        was_training = module.training
        module.eval()
        sums: dict[str, torch.Tensor] = {}
        first = None
        clips = self.val_source.iter_clips(
            batch_size=e.val_batch_size,
            clip_frames=e.val_clip_frames,
            frame_stride=e.frame_stride,
            seed=self.cfg.run.seed,
            rank=self.env.rank,
            world_size=self.env.world_size,
            shuffle=False,
            random_start=False,
            max_videos=e.val_videos,
            drop_last=False,
        )
        for batch in clips:
            frames = batch["frames"].to(self.device)
            B = frames.shape[0]
            # one generator per clip, from its video key: scores do not depend on batching or world size
            gens = [self._generator(video_seed(1_000_003, key)) for key in batch["keys"]]
            losses, out = module(frames, generator=gens, cues=self._cues(batch))
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.detach().double() * B
            sums["_clips"] = sums.get("_clips", 0.0) + torch.tensor(float(B), dtype=torch.float64, device=self.device)
            if "masks" in batch:
                for k, v in segmentation_scores(batch["masks"].to(self.device), out.masks).items():
                    sums[k] = sums.get(k, 0.0) + v
            if first is None:
                first = (frames[:2], out.masks[:2])
        # A fixed list of names on every rank (a rank may have had no clips), reduced in one collective.
        names = ["_clips", *module.loss_names]
        if self.val_source.has_masks:
            names += [f"{m}_{x}" for m in ("fg_ari", "fg_ari_frame", "mbo", "swap_rate") for x in ("sum", "count")]
        total = torch.stack([torch.as_tensor(sums.get(k, 0.0), dtype=torch.float64, device=self.device) for k in names])
        all_reduce_sum(total)
        vals = dict(zip(names, total.tolist()))
        metrics: dict[str, float] = {}
        clips_n = max(vals.get("_clips", 0.0), 1.0)
        for k, v in vals.items():
            if k.endswith("_sum"):
                base = k[: -len("_sum")]
                metrics[f"val/{base}"] = v / max(vals[base + "_count"], 1.0)
            elif not k.endswith("_count") and not k.startswith("_"):
                metrics[f"val/{k}"] = v / clips_n
        if pictures and first is not None and self.env.is_main and step is not None:
            self._log_pictures("val", first[0], first[1], step)
        if was_training:
            module.train()
        return metrics

    def validate(self, module) -> dict[str, float]:
        # The trainer validates after the optimizer step it just took: label pictures with that step count.
        self.last_val = self.evaluate(module, step=self._step + 1)
        return self.last_val

    def final_eval(self, module) -> dict:
        """Segmentation scores (and losses) of the final model on the validation clips."""
        metrics = self.evaluate(module, pictures=False)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return {k.split("/", 1)[1]: v for k, v in metrics.items()}

    def close(self) -> None:
        """Also closes the tensorboard writer of the pictures when the run ends before :meth:`final_eval`."""
        super().close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
