"""Training task of the C-JEPA predictor on slot videos (synthetic world, slot store or original pickle).

A task gives the generic trainer (cjepa.trainer) its data, model, per-step losses and evaluation; the trainer
owns the loop, engines, logging and checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from cjepa.backends.attention import check_backend
from cjepa.config import Config, ConfigError, Derived
from cjepa.data.sampler import StepBatchSampler
from cjepa.data.slot_store import SlotSplit, SlotStoreError, load_pickle_split, load_slot_pickle, open_split
from cjepa.data.synthetic import synthetic_splits_from_config
from cjepa.data.windows import AuxNormalizer, SlotWindows, fit_aux_normalizer, per_split_window_normalizer
from cjepa.distributed.env import DistEnv
from cjepa.eval.rollout import rollout_error
from cjepa.losses import predictor_losses
from cjepa.masking import MaskSampler
from cjepa.models.predictor import build_predictor
from cjepa.tasks.base import TaskBase


def load_slot_splits(cfg: Config) -> dict[str, Mapping[str, np.ndarray]]:
    if cfg.data.source == "synthetic":
        return synthetic_splits_from_config(cfg)
    if not cfg.data.path:
        raise ConfigError(f"data.source={cfg.data.source} needs data.path (a slot store directory or slot pickle)")
    return {s: open_split(cfg.data.source, cfg.data.path, s) for s in (cfg.data.train_split, cfg.data.val_split)}


def load_aux(cfg: Config, split: str, videos: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    """Per-video proprio (T, P) and raw action (T, A) arrays of a Push-T split."""
    if isinstance(videos, SlotSplit):
        return ({k: videos.extra(k, "proprio") for k in videos}, {k: videos.extra(k, "action") for k in videos})
    if not (cfg.data.proprio_path and cfg.data.action_path):
        raise ValueError("model.kind=pusht from a pickle needs data.proprio_path and data.action_path (the original "
                         "meta pickles)")
    prop, act = load_pickle_split(cfg.data.proprio_path, split), load_pickle_split_2d(cfg.data.action_path, split)
    missing = [k for k in videos if k not in prop or k not in act]
    if missing:
        raise ValueError(f"{len(missing)} videos of split {split!r} have no proprio/action entry, e.g. {missing[:3]}")
    return prop, act


def load_pickle_split_2d(path: str, split: str) -> dict[str, np.ndarray]:
    data = load_slot_pickle(path)  # the restricted reader: an action pickle from elsewhere cannot run code
    if not isinstance(data, dict) or split not in data:
        raise SlotStoreError(f"{path}: no split {split!r}")
    return {k: np.asarray(v, dtype=np.float32) for k, v in data[split].items()}


class PredictorTask(TaskBase):
    name = "predictor"

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.pusht = cfg.model.kind == "pusht"
        self.normalizer: Optional[AuxNormalizer] = None

    # ------------------------------------------------------------------ setup

    def setup(self, env: DistEnv, derived: Derived, device: torch.device) -> None:
        cfg = self.cfg
        self.env, self.derived, self.device = env, derived, device
        check_backend(cfg.kernels.attention, device)
        splits = load_slot_splits(cfg)
        train, val = splits[cfg.data.train_split], splits[cfg.data.val_split]
        for name, videos in ((cfg.data.train_split, train), (cfg.data.val_split, val)):
            if len(videos) == 0:
                raise ValueError(f"split {name!r} of {cfg.data.source} data has no videos")
            first = np.asarray(videos[next(iter(videos))])
            if first.shape[1:] != (cfg.model.num_slots, cfg.model.slot_dim):
                raise ValueError(
                    f"split {name!r}: slots are {first.shape[1:]} (S, D) but model.num_slots={cfg.model.num_slots}, "
                    f"model.slot_dim={cfg.model.slot_dim}"
                )
        self.val_videos = val
        common = dict(history_frames=cfg.model.history_frames, pred_frames=cfg.model.pred_frames,
                      frameskip=cfg.data.frameskip)
        if self.pusht:
            if cfg.data.frameskip != cfg.model.action_chunk:
                raise ValueError(f"model.action_chunk={cfg.model.action_chunk} must equal "
                                 f"data.frameskip={cfg.data.frameskip}")
            tp, ta = load_aux(cfg, cfg.data.train_split, train)
            vp, va = load_aux(cfg, cfg.data.val_split, val)
            self.train_ds = SlotWindows(train, **common, proprio=tp, action=ta)
            self.val_ds = SlotWindows(val, **common, proprio=vp, action=va, max_windows=cfg.data.val_max_windows)
            if cfg.data.aux_norm == "train":
                self.normalizer = fit_aux_normalizer(list(tp.values()), list(ta.values()), cfg.model.action_chunk)
                self.train_ds.normalizer = self.val_ds.normalizer = self.normalizer
            else:  # the original's per-split window statistics (Q8)
                self.normalizer = per_split_window_normalizer(self.train_ds)
                self.train_ds.normalizer = self.normalizer
                self.val_ds.normalizer = per_split_window_normalizer(self.val_ds)
        else:
            self.train_ds = SlotWindows(train, **common)
            self.val_ds = SlotWindows(val, **common, max_windows=cfg.data.val_max_windows)
        self.sampler = StepBatchSampler(
            len(self.train_ds), derived.global_batch, seed=cfg.run.seed, rank=env.rank,
            world_size=env.world_size, grad_accum=derived.grad_accum,
        )
        self.masks = MaskSampler.from_config(cfg.masking, cfg.model.num_slots)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def describe(self) -> dict:
        return {"train_windows": len(self.train_ds), "val_windows": len(self.val_ds),
                "train_videos": len(self.train_ds.keys)}

    def build_model(self) -> torch.nn.Module:
        return build_predictor(self.cfg.model, self.cfg.kernels.attention)

    def param_groups(self, model) -> list[dict]:
        if not self.pusht:
            return super().param_groups(model)
        o = self.cfg.optim
        return [
            {"params": list(model.predictor.parameters()), "lr": o.lr},
            {"params": list(model.proprio_encoder.parameters()), "lr": o.proprio_lr},
            {"params": list(model.action_encoder.parameters()), "lr": o.action_lr},
        ]

    # ------------------------------------------------------------------ training

    def train_batches(self, start_step: int) -> Iterator[list[dict]]:
        """From ``start_step`` to the end of its epoch: one list of grad_accum micro-batches per step."""
        self.sampler.set_position(start_step)
        loader = DataLoader(
            self.train_ds, batch_sampler=self.sampler, num_workers=self.cfg.data.num_workers,
            generator=torch.Generator(),  # keeps the global RNG (dropout) independent of loader restarts
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )
        return self.steps_of(loader)

    def training_losses(self, model, batch: dict, step: int, micro_index: int) -> dict[str, torch.Tensor]:
        d = self.derived
        start = self.micro_batch_start(micro_index)
        masked = self.masks(step, d.global_batch, start, d.micro_batch).to(self.device, non_blocking=True)
        slots = batch["slots"].to(self.device, non_blocking=True)  # (B, T, S, D)
        T_h = self.cfg.model.history_frames
        inc_t0 = self.cfg.masking.history_loss_includes_t0
        if self.pusht:
            prop, act = batch["proprio"].to(self.device), batch["action"].to(self.device)
            pred, nodes = model(slots, prop, act, masked)  # (B, T, S+2, D) each
            return predictor_losses(pred, nodes, masked, T_h, inc_t0, num_object_slots=self.cfg.model.num_slots,
                                    future_slot_weights=self.cfg.masking.future_slot_weights)
        pred = model(slots[:, :T_h], masked)  # (B, T, S, D)
        return predictor_losses(pred, slots, masked, T_h, inc_t0, future_loss=self.cfg.masking.future_loss,
                                future_slot_weights=self.cfg.masking.future_slot_weights)

    # ------------------------------------------------------------------ evaluation

    def _future_sq_err(self, module, batch) -> tuple[torch.Tensor, int]:
        T_h = self.cfg.model.history_frames
        S = self.cfg.model.num_slots
        slots = batch["slots"].to(self.device)
        if self.pusht:
            nodes = module.nodes(slots, batch["proprio"].to(self.device), batch["action"].to(self.device))
            pred = module.inference(nodes[:, :T_h])[:, :, :S]
        else:
            pred = module.inference(slots[:, :T_h])
        err = (pred.float() - slots[:, T_h:].float()) ** 2
        return err.sum(), err.numel()

    @torch.no_grad()
    def validate(self, module) -> dict[str, float]:
        """Future MSE of the unmasked inference path over the validation windows (exact over ranks)."""
        module.eval()
        idx = list(range(self.env.rank, len(self.val_ds), self.env.world_size))
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        bs = self.cfg.data.val_batch_size
        for b in range(0, len(idx), bs):
            items = [self.val_ds[i] for i in idx[b : b + bs]]
            batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
            s, n = self._future_sq_err(module, batch)
            total[0] += s.double()
            total[1] += n
        loss = self.mean_over_ranks(total)
        module.train()
        return {"val/loss_future": loss}

    @torch.no_grad()
    def final_eval(self, module) -> dict:
        """Rollout error on held-out videos vs the copy-last-frame baseline (per-step curves)."""
        cfg = self.cfg
        if cfg.rollout.skip_note:
            return {"note": cfg.rollout.skip_note}
        module.eval()
        S = cfg.model.num_slots
        if self.pusht:
            videos = self._node_videos(module, cfg.rollout.eval_videos)

            def step_fn(hist, true_future):
                p = module.inference(hist).clone()
                p[:, :, S + 1] = true_future[:, :, S + 1]  # the executed actions are known inputs
                return p

            target = lambda x: x[:, :, :S]  # noqa: E731  (objects only)
        else:
            videos = self.val_videos
            step_fn = lambda hist, true_future: module.inference(hist)  # noqa: E731
            target = None
        res = rollout_error(
            step_fn, videos, history_frames=cfg.model.history_frames, pred_frames=cfg.model.pred_frames,
            frameskip=cfg.data.frameskip, chains=cfg.rollout.eval_chains, max_videos=cfg.rollout.eval_videos,
            device=self.device, target_fn=target,
        )
        module.train()
        return res

    def _node_videos(self, module, limit: int) -> dict[str, np.ndarray]:
        """Push-T val videos as node arrays (T, S+2, D); the action node of frame t embeds the chunk after t."""
        out = {}
        ds, fs = self.val_ds, self.cfg.data.frameskip
        for key in ds.keys[:limit]:
            slots = np.array(ds.videos[key], np.float32)  # a writable copy of the memory-mapped video
            T = (len(slots) // fs) * fs
            prop = ds.normalizer.proprio(np.asarray(ds.proprio[key][:T], np.float32))
            act = np.asarray(ds.action[key][:T], np.float32)
            # chunk after frame t: actions t .. t+fs-1 (zero-padded at the episode end)
            pad = np.concatenate([act, np.full((fs, act.shape[1]), np.nan, np.float32)])
            chunks = ds.normalizer.action(np.stack([pad[t : t + fs].reshape(-1) for t in range(T)]))
            nodes = module.nodes(
                torch.from_numpy(slots[:T])[None].to(self.device),
                torch.from_numpy(prop)[None].to(self.device),
                torch.from_numpy(chunks)[None].to(self.device),
            )
            out[key] = nodes[0].float().cpu().numpy()
        return out

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {"normalizer": self.normalizer.state_dict()} if self.normalizer is not None else {}

    def load_state_dict(self, sd: dict) -> None:
        if "normalizer" in sd:
            self.normalizer = AuxNormalizer.from_state_dict(sd["normalizer"])
