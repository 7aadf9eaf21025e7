"""Streaming pretraining: raw video shards -> frozen object-centric encoder -> C-JEPA predictor, in one job.

No slot files in between. Each training step decodes clips of T_h + T_p frames at ``data.frameskip`` from the
video shards (``data.decoder``: PyAV in DataLoader workers on CPU, DALI with NVDEC on GPU: the same batch
contract either way), encodes them with the frozen encoder from ``encoder.checkpoint`` (no gradients, eval mode,
slot initialisation seeded from (seed, step, rank) so a resumed run re-encodes identically), and trains the
predictor on the slot clips with the same masking and losses as :class:`cjepa.tasks.predictor.PredictorTask`.

The data position (the clip loader's per-worker state) is part of the checkpoint, so a run resumes mid-epoch.
The task times the three stages (waiting for decoded clips, encoding, predictor step) and reports the split: with
CUDA events on a GPU, where host clocks would only measure the queueing of asynchronous kernels
(:class:`cjepa.utils.stage_timer.StageTimer`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Iterator

import torch

from cjepa.backends.attention import check_backend
from cjepa.config import Config, ConfigError, Derived, encoder_input_size
from cjepa.data.clips import mix_seed
from cjepa.data.loader import build_clip_loader, iter_videos
from cjepa.data.shards import open_split
from cjepa.distributed.env import DistEnv
from cjepa.eval.rollout import rollout_error
from cjepa.losses import predictor_losses
from cjepa.masking import MaskSampler
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.predictor import build_predictor
from cjepa.tasks.base import TaskBase
from cjepa.utils.stage_timer import StageTimer


class PretrainTask(TaskBase):
    name = "pretrain"

    def __init__(self, cfg: Config):
        if cfg.model.kind != "slots":
            raise ConfigError("cjepa pretrain trains the slot predictor (model.kind=slots); Push-T trains from a slot "
                              "store")
        e, m = cfg.encoder, cfg.model
        if (e.num_slots, e.slot_dim) != (m.num_slots, m.slot_dim):
            raise ConfigError(
                f"encoder slots ({e.num_slots} x {e.slot_dim}) must match the predictor's model.num_slots x "
                "model.slot_dim "
                f"({m.num_slots} x {m.slot_dim})"
            )
        self.cfg = cfg
        self.timer = StageTimer(torch.device("cpu"))  # replaced in setup() by one for the run's device
        self._loader_state = None
        self.loader = None  # the training clip loader, built in setup()

    # ------------------------------------------------------------------ setup

    def _data_cfg(self, micro_batch: int):
        """data.* with the clip shape the predictor needs and the encoder's input size (the one resize). No masks:
        the frozen encoder runs unconditioned, and decoding them would put DALI's Python masks step back on the
        NVDEC path."""
        m = self.cfg.model
        return dataclasses.replace(
            self.cfg.data, clip_frames=m.history_frames + m.pred_frames, clip_stride=self.cfg.data.frameskip,
            video_batch_size=micro_batch, image_size=encoder_input_size(self.cfg.encoder), with_masks=False,
        )

    def setup(self, env: DistEnv, derived: Derived, device: torch.device) -> None:
        cfg = self.cfg
        self.env, self.derived, self.device = env, derived, device
        self.timer = StageTimer(device)
        check_backend(cfg.kernels.attention, device)
        if not cfg.encoder.checkpoint:
            warnings.warn("encoder.checkpoint is empty: pretraining on slots of an UNTRAINED encoder", stacklevel=2)
        self.encoder = build_object_encoder(cfg.encoder, attention_backend=cfg.kernels.attention,
                                            slot_attention_backend=cfg.kernels.slot_attention).to(device).eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        dcfg = self._data_cfg(derived.micro_batch)
        self.loader = build_clip_loader(dcfg, cfg.data.train_split, train=True, rank=env.rank,
                                        world_size=env.world_size, seed=cfg.run.seed)
        if self._loader_state is not None:
            self.loader.load_state_dict(self._loader_state)
        self.val_cfg = dcfg
        self.masks = MaskSampler.from_config(cfg.masking, cfg.model.num_slots)
        self._it = None

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.loader) // self.derived.grad_accum)

    def describe(self) -> dict:
        return {"encoder": self.cfg.encoder.kind,
                "clips_per_epoch": len(self.loader) * self.derived.micro_batch * self.env.world_size,
                "decoder": self.cfg.data.decoder}

    def build_model(self) -> torch.nn.Module:
        return build_predictor(self.cfg.model, self.cfg.kernels.attention)

    # ------------------------------------------------------------------ training

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, seed_parts: tuple[int, ...]) -> torch.Tensor:
        """frames (B, T, 3, H, W) -> slots (B, T, S, D) with a slot init seeded from ``seed_parts``."""
        gen = torch.Generator(device=frames.device).manual_seed(mix_seed(self.cfg.run.seed, *seed_parts))
        return self.encoder.encode(frames, generator=gen, masks=False).slots.float()

    def train_batches(self, start_step: int) -> Iterator[list[dict]]:
        if self._it is None:
            self._it = iter(self.loader)
        group: list[dict] = []
        for _ in range(self.steps_per_epoch * self.derived.grad_accum):
            t0 = self.timer.mark()
            try:
                batch = next(self._it)
            except StopIteration:  # one epoch of the loader is done; the next call starts the next
                self._it = iter(self.loader)
                batch = next(self._it)
            self.timer.add("decode_s", t0)
            group.append(batch)
            if len(group) == self.derived.grad_accum:
                self._step_start = self.timer.mark()
                yield group
                group = []

    def training_losses(self, model, batch: dict, step: int, micro_index: int) -> dict[str, torch.Tensor]:
        t0 = self.timer.mark()
        frames = batch["frames"].to(self.device, non_blocking=True)
        slots = self.encode(frames, (step, micro_index, self.env.rank))  # (B, T, S, D)
        self.timer.add("encode_s", t0)
        start = self.micro_batch_start(micro_index)
        masked = self.masks(step, self.derived.global_batch, start, slots.shape[0]).to(self.device)
        T_h = self.cfg.model.history_frames
        return predictor_losses(model(slots[:, :T_h], masked), slots, masked, T_h,
                                self.cfg.masking.history_loss_includes_t0)

    def after_step(self) -> None:
        """Trainer hook after the optimizer step: the step's time less its encoding is the predictor's."""
        self.timer.add("step_s", self._step_start)

    @property
    def times(self) -> dict[str, float]:
        """Seconds spent waiting for decoded clips, encoding, and in the predictor step (waits for the device)."""
        t = self.timer.totals()
        encode = t.get("encode_s", 0.0)
        return {"decode_s": t.get("decode_s", 0.0), "encode_s": encode, "predictor_s": t.get("step_s", 0.0) - encode}

    def state_dict(self) -> dict:
        return {"loader": self.loader.state_dict(), "times": dict(self.times)}

    def load_state_dict(self, sd: dict) -> None:
        if "loader" in sd:
            self._loader_state = sd["loader"]
            if self.loader is not None:
                self.loader.load_state_dict(sd["loader"])
                self._it = None

    def close(self) -> None:
        """Stops the clip loader's workers (CPU) or releases its DALI pipeline and GPU decoder."""
        self._it = None
        if self.loader is not None:
            self.loader.close()

    # ------------------------------------------------------------------ evaluation

    def _val_batches(self, loader):
        limit = self.cfg.data.val_max_windows
        seen = 0
        for b in loader:
            yield b
            seen += b["frames"].shape[0]
            if limit and seen >= limit:
                return

    @torch.no_grad()
    def validate(self, module) -> dict[str, float]:
        """Future MSE of unmasked inference on encoded validation clips (clip-aligned chunks; exact over ranks)."""
        module.eval()
        T_h = self.cfg.model.history_frames
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        # closed on every exit (limit reached, error): a DALI loader holds a pipeline and the GPU decoder until then
        with build_clip_loader(self.val_cfg, self.cfg.data.val_split, train=False, rank=self.env.rank,
                               world_size=self.env.world_size,
                               seed=self.cfg.run.seed) as loader:
            for i, b in enumerate(self._val_batches(loader)):
                slots = self.encode(b["frames"].to(self.device), (-1, i, self.env.rank))
                err = (module.inference(slots[:, :T_h]).float() - slots[:, T_h:]) ** 2
                total[0] += err.sum().double()
                total[1] += err.numel()
        loss = self.mean_over_ranks(total)
        module.train()
        return {"val/loss_future": loss}

    @torch.no_grad()
    def final_eval(self, module) -> dict:
        """Rollout error on whole encoded validation videos vs copy-last-frame, plus the stage time split."""

        cfg = self.cfg
        res = {"note": cfg.rollout.skip_note} if cfg.rollout.skip_note else self._rollout_error(module)
        times = self.times
        total = sum(times.values()) or 1.0
        res["time_split"] = {k: v / total for k, v in times.items()}
        res["time_s"] = times
        return res

    def _rollout_error(self, module) -> dict:
        """Rollout error on whole encoded validation videos vs copy-last-frame."""
        cfg = self.cfg
        module.eval()
        videos = {key: self.encode(frames[None].to(self.device), (-2, i))[0].cpu().numpy() for i,
                  (key, frames) in enumerate(self._val_videos())}
        try:
            res = rollout_error(lambda h, _: module.inference(h), videos, history_frames=cfg.model.history_frames,
                                pred_frames=cfg.model.pred_frames, frameskip=cfg.data.frameskip,
                                chains=cfg.rollout.eval_chains,
                                max_videos=cfg.rollout.eval_videos, device=self.device)
        except ValueError as err:  # validation videos shorter than an evaluation window
            res = {"note": str(err)}
        module.train()
        return res

    def _val_videos(self):
        """(key, frames (T, 3, h, w)) of the first rollout.eval_videos validation videos."""
        info = open_split(self.cfg.data.shards, self.cfg.data.val_split)
        n = 0
        for key, frames, _, _ in iter_videos(info, image_size=encoder_input_size(self.cfg.encoder), stride=1,
                                             with_masks=False):
            yield key, frames
            n += 1
            if n >= self.cfg.rollout.eval_videos:
                return
