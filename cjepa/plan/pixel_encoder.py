"""Planning from pixels: rendered frames -> object slots through a trained object-centric encoder.

:class:`PixelSlotEncoder` is the :class:`cjepa.plan.world_model.SlotEncoder` of ``plan.encoder=pixels``: the
observed frames (oldest first) are encoded as one short video, so with ``plan.history_obs`` > 1 the slots of a
frame seed the next frame's through the encoder's temporal path; the goal image is encoded on its own. Frames go
through the same uint8 resize and ImageNet normalisation as training and extraction
(:func:`cjepa.data.video.preprocess_frames`), rendered at the encoder's input side so that no second resize
differs from the rendered training shards. Slot initialisation is seeded per call (a fixed seed), and SAVi with
``encoder.savi.eval_kernel=mean`` draws no noise at all, so one observation always gives the same slots. A
conditional SAVi (``encoder.savi.init=cues``) seeds slot 1 + j from the j-th object of the first encoded frame's
instance mask, as in training and extraction; the planner then also renders the masks of its observations and of
the goal (:attr:`PixelSlotEncoder.needs_masks`). That is object-level supervision of the first frame (the centre
of mass of each object), a stronger assumption than the paper's unsupervised VideoSAUR.

An unconditioned encoder's slot order is arbitrary (a cued one puts the agent in slot 1 and the block in slot 2,
by instance id), so the planner's cost matches predicted slots to the goal's before comparing them
(:func:`cjepa.plan.matching.matched_mse`), as the original does.

:func:`load_pixel_encoder` rebuilds the encoder from its checkpoint directory (``config.yaml`` beside
``model.pt``) and refuses one that did not produce the slot store the predictor trained on: the store's
producer record names the checkpoint by content hash (:func:`cjepa.slot_extraction.producer_record`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml

from cjepa.config import ConfigError, config_from_dict, encoder_input_size
from cjepa.data.slot_store import read_meta
from cjepa.data.video import preprocess_frames
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.object_encoder import first_frame_cues
from cjepa.models.savi import SAVi
from cjepa.slot_extraction import producer_record
from cjepa.utils.checkpoint import resolve_checkpoint


class PixelSlotEncoder:
    """Rendered RGB frames -> (T, S, D) slots of a trained object-centric encoder (SAVi or VideoSAUR)."""

    def __init__(self, model, enc_cfg, *, seed: int = 0, device="cpu"):
        self.model = model.to(device).eval()
        self.num_slots, self.slot_dim = enc_cfg.num_slots, enc_cfg.slot_dim
        self.pixel_size: Optional[int] = encoder_input_size(enc_cfg)[0]  # render observations at this side
        # Conditional SAVi seeds its slots from the objects of the first frame it encodes (first_frame_cues).
        self.needs_masks: bool = bool(model.needs_cues)
        self.seed = seed
        self.device = torch.device(device)

    @torch.no_grad()
    def encode_frames(self, pixels: np.ndarray, first_mask: Optional[np.ndarray] = None) -> torch.Tensor:
        """(T, H, W, 3) uint8 frames of one video, oldest first -> (T, S, D) slots. ``first_mask`` (H, W): the first
        frame's instance ids, which a conditional encoder needs (and any other ignores)."""
        frames = np.asarray(pixels)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"pixel observations must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        x = preprocess_frames(frames, (self.pixel_size, self.pixel_size)).to(self.device)  # (T, 3, h, w)
        cues = None
        if self.needs_masks:
            if first_mask is None:
                raise ValueError("this encoder is conditional (encoder.savi.init=cues): it needs the instance mask "
                                 "of the first frame it encodes (Observation.masks, Goal.masks)")
            mask = torch.from_numpy(np.asarray(first_mask)).long()[None]  # (1, H, W), on the host (first_frame_cues)
            cues = first_frame_cues(mask, self.num_slots).to(self.device)  # (1, S, 3)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed)
        out = self.model.encode(x[None], generator=[gen], masks=False, cues=cues)
        return out.slots[0].float()  # (T, S, D)

    @property
    def has_pixel_decoder(self) -> bool:
        """SAVi decodes slots to RGB; VideoSAUR decodes to DINOv2 features, which cannot be shown as a frame."""
        return isinstance(self.model, SAVi)

    @torch.no_grad()
    def decode_frame(self, slots: torch.Tensor) -> np.ndarray:
        """(S, D) slots -> the SAVi decoder's (R, R, 3) uint8 frame (what the slots show, for episode videos)."""
        if not self.has_pixel_decoder:
            raise ValueError(f"{type(self.model).__name__} has no pixel decoder")
        recon, _ = self.model.decode(slots[None].to(self.device).float())  # (1, 3, R, R) in [-1, 1]
        img = ((recon[0].clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
        return img.permute(1, 2, 0).cpu().numpy()

    def encode_slots(self, obs) -> torch.Tensor:
        if obs.pixels is None:
            raise ValueError("the pixel encoder needs Observation.pixels (rendered frames)")
        return self.encode_frames(obs.pixels, None if obs.masks is None else obs.masks[0])

    def encode_goal_slots(self, goal) -> torch.Tensor:
        if goal.pixels is None:
            raise ValueError("the pixel encoder needs Goal.pixels (the rendered goal image)")
        return self.encode_frames(np.asarray(goal.pixels)[None], goal.masks)[0]  # (S, D)


def load_pixel_encoder(checkpoint: str, store: str, *, device="cpu", attention_backend: str = "torch",
                       slot_attention_backend: str = "torch") -> PixelSlotEncoder:
    """The encoder of ``checkpoint`` (a run or checkpoint directory of `cjepa train` with train.task=encoder),
    checked against the producer of the slot store ``store`` (the one the predictor trained on)."""
    ckpt = resolve_checkpoint(checkpoint)
    saved = Path(ckpt) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"plan.encoder_checkpoint={checkpoint}: {saved} is missing (an encoder checkpoint "
                          "directory of `cjepa train` holds model.pt and config.yaml)")
    cfg = config_from_dict(yaml.safe_load(saved.read_text()) or {}, str(saved))
    enc_cfg = cfg.encoder
    enc_cfg.checkpoint = str(ckpt)
    produced = read_meta(store).get("producer", {})
    ours = producer_record(enc_cfg, str(ckpt))
    if produced.get("checkpoint_sha256") != ours.get("checkpoint_sha256"):
        raise ConfigError(
            f"plan.encoder_checkpoint={checkpoint} (weights {ours.get('checkpoint_sha256')}) did not make the slot "
            f"store {store} (producer weights {produced.get('checkpoint_sha256', 'none: not an extracted store')}); "
            "plan with the encoder whose slots the predictor was trained on")
    model = build_object_encoder(enc_cfg, attention_backend=attention_backend,
                                 slot_attention_backend=slot_attention_backend)
    return PixelSlotEncoder(model, enc_cfg, seed=int(ours.get("seed", 0)), device=device)
