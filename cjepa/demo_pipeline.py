"""The demo pipeline: the whole chain on the built-in world, small enough for a CPU.

render videos (physics world -> video shards) -> train the object-centric encoder (SAVi) -> extract slots of every
video into a slot store -> train the C-JEPA predictor with object-level masking -> rollout error on held-out
videos against the copy-last-frame baseline -> decode a few held-out rollouts back to frames with SAVi's decoder
(per-step PSNR / SSIM / FG-ARI / mIoU next to copy-last, side-by-side mp4 clips and tensorboard). Every stage writes
under one directory and is skipped or resumed
when the demo runs again (shards with a manifest are kept, the trainers resume from their checkpoints, the
extraction skips stored videos).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cjepa.config import Config, encoder_input_size, load_config
from cjepa.data.slot_store import SlotSplit
from cjepa.data.video_sources import open_video_source
from cjepa.data.world.generate import generate_split
from cjepa.distributed.env import DistEnv, pick_device
from cjepa.eval.rollout_video import decoded_rollouts, trained_step
from cjepa.eval.vqa.rollouts import load_predictor
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.paths import config_path
from cjepa.slot_extraction import extract
from cjepa.trainer import train


@dataclass
class DemoResult:
    out: Path
    stage_s: dict[str, float] = field(default_factory=dict)
    encoder: dict[str, Any] = field(default_factory=dict)
    extract: list[dict] = field(default_factory=list)
    predictor: dict[str, Any] = field(default_factory=dict)
    decoded: dict[str, Any] = field(default_factory=dict)


def demo_configs(out: Path, full: bool, encoder_overrides: list[str], predictor_files: list[str],
                 predictor_overrides: list[str]) -> tuple[Config, Config]:
    """(encoder-stage config, predictor-stage config), both writing under ``out``."""
    suffix = "_full" if full else ""
    enc = load_config([str(config_path(f"world/demo_encoder{suffix}.yaml"))],
                      [f"run.out_dir={out}", "run.name=encoder", f"encoder.data.path={out / 'world'}",
                       *encoder_overrides])
    pred = load_config([str(config_path(f"world/demo{suffix}.yaml")), *predictor_files],
                       [f"run.out_dir={out}", "run.name=predictor", "data.source=store", f"data.path={out / 'slots'}",
                        *predictor_overrides])
    if (pred.model.num_slots, pred.model.slot_dim) != (enc.encoder.num_slots, enc.encoder.slot_dim):
        raise ValueError(
            f"the predictor (model.num_slots={pred.model.num_slots}, model.slot_dim={pred.model.slot_dim}) must match "
            "the "
            f"encoder's slots (encoder.num_slots={enc.encoder.num_slots}, encoder.slot_dim={enc.encoder.slot_dim})"
        )
    return enc, pred


def render_world(cfg: Config, root: Path, counts: dict[str, int], progress: bool = True) -> None:
    """Generate each split of the built-in world unless a finished one (manifest, enough videos) is there."""
    import json

    for split, n in counts.items():
        manifest = root / split / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("num_samples", 0) >= n:
            continue
        generate_split(cfg.world, split, n, root, workers=cfg.world.workers or None, progress=progress)


def extract_slots(enc_cfg: Config, out: Path, splits: list[str], progress: bool = True,
                  store: Optional[Path] = None) -> list[dict]:
    """Encode every video of the splits with the trained encoder ``out/encoder`` into the slot store ``store``
    (default ``out/slots``; another store keeps the demo's apart when the same weights are re-encoded with other
    evaluation options)."""
    enc = enc_cfg.encoder
    enc.checkpoint = str(out / "encoder")
    model = build_object_encoder(enc, slot_attention_backend=enc_cfg.kernels.slot_attention)
    device = pick_device(enc_cfg.run.device, DistEnv())
    sources = {s: open_video_source(enc.data, s, encoder_input_size(enc)) for s in splits}
    return extract(model.to(device), sources, store or out / "slots", enc_cfg=enc, device=device,
                   checkpoint=enc.checkpoint, progress=progress)


def log_video_scores(summaries: list[dict], tb_dir: Path, step: int) -> None:
    """Whole-video FG-ARI and slot-identity swap rate of each extracted split into the encoder's tensorboard
    (``video/<split>/fg_ari``, ``video/<split>/swap_rate`` at the encoder's last step): training validates on short
    clips, and only extraction tracks slots through whole videos."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tb_dir)) as writer:
        for s in summaries:
            for name in ("fg_ari", "swap_rate"):
                if s.get(name) is not None:
                    writer.add_scalar(f"video/{s['split']}/{name}", s[name], step)


def decode_held_out(enc_cfg: Config, pred_cfg: Config, out: Path, videos: int, clips: int = 2) -> dict:
    """Roll the trained predictor out on ``videos`` held-out videos and decode them with the trained encoder:
    per-step metrics (:func:`cjepa.eval.rollout_video.decoded_rollouts`), mp4 clips in ``out/rollout_video`` and
    the clips as tensorboard videos in ``out/rollout_video/tb`` at the predictor's trained step (a folder of their
    own, rewritten by a rerun, so the predictor's training log is never appended to)."""
    enc = enc_cfg.encoder
    enc.checkpoint = str(out / "encoder")
    device = pick_device(enc_cfg.run.device, DistEnv())
    encoder = build_object_encoder(enc, slot_attention_backend=enc_cfg.kernels.slot_attention).to(device).eval()
    predictor = load_predictor(str(out / "predictor"), pred_cfg.model, pred_cfg.kernels.attention, device)
    m = pred_cfg.model
    return decoded_rollouts(
        encoder, predictor, SlotSplit(out / "slots", "val"),
        open_video_source(enc.data, "val", encoder_input_size(enc)), history=m.history_frames,
        pred_frames=m.pred_frames, chains=pred_cfg.rollout.eval_chains,
        frameskip=pred_cfg.data.frameskip, frame_stride=enc.extract.frame_stride, max_videos=videos,
        out_dir=out / "rollout_video", tb_dir=out / "rollout_video" / "tb", step=trained_step(out / "predictor"),
        max_clips=clips,
    )


def run_demo(out: Path, *, train_videos: int, val_videos: int, full: bool = False,
             encoder_overrides: Optional[list[str]] = None,
             predictor_files: Optional[list[str]] = None, predictor_overrides: Optional[list[str]] = None,
             progress: bool = True,
             decode_videos: int = 8, log=print) -> DemoResult:
    enc_cfg, pred_cfg = demo_configs(out, full, list(encoder_overrides or []), list(predictor_files or []),
                                     list(predictor_overrides or []))
    res = DemoResult(out=out)
    t = time.time()
    log(f"[1/5] rendering the built-in world: {train_videos} train + {val_videos} held-out videos "
        f"({enc_cfg.world.num_frames} frames, {enc_cfg.world.height}x{enc_cfg.world.width}) -> {out / 'world'}")
    render_world(enc_cfg, out / "world", {"train": train_videos, "val": val_videos}, progress)
    res.stage_s["render"] = time.time() - t

    t = time.time()
    log(f"[2/5] training the object-centric encoder ({enc_cfg.encoder.kind}, {enc_cfg.encoder.num_slots} slots x "
        f"{enc_cfg.encoder.slot_dim}, {enc_cfg.train.max_steps} steps) -> {out / 'encoder'}")
    res.encoder = train(enc_cfg, progress=progress)
    res.stage_s["encoder"] = time.time() - t

    t = time.time()
    log(f"[3/5] extracting slots of every video -> {out / 'slots'}")
    res.extract = extract_slots(enc_cfg, out, ["train", "val"], progress)
    log_video_scores(res.extract, out / "encoder" / "tb", enc_cfg.train.max_steps)
    res.stage_s["extract"] = time.time() - t

    t = time.time()
    log(f"[4/5] training the C-JEPA predictor on the slots (masking {pred_cfg.masking.num_masked}"
        f"{'' if pred_cfg.masking.num_masked_max is None else '-' + str(pred_cfg.masking.num_masked_max)} of "
        f"{pred_cfg.model.num_slots} slots, {pred_cfg.train.max_steps} steps) -> {out / 'predictor'}")
    res.predictor = train(pred_cfg, progress=progress)
    res.stage_s["predictor"] = time.time() - t

    if decode_videos > 0:
        t = time.time()
        log(f"[5/5] decoding {decode_videos} held-out rollouts with the encoder's decoder -> {out / 'rollout_video'}")
        res.decoded = decode_held_out(enc_cfg, pred_cfg, out, decode_videos)
        res.stage_s["decode"] = time.time() - t
    return res
