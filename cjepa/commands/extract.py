"""cjepa extract: encode every video once with a trained encoder into a slot store (and optionally a pickle).

``encoder.checkpoint`` names the weights (one of our runs / checkpoints, or a released VideoSAUR .ckpt / SAVi
.pth); the encoder options in the config must match it. Videos come from ``encoder.data.source``; each split of
``encoder.extract.splits`` that the source has is written to ``encoder.extract.out`` (default
runs/<run.name>/slots). Re-running resumes: videos already in the store are skipped.
"""

from __future__ import annotations

import sys

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from cjepa.config import encoder_input_size, load_config
    from cjepa.data.clips import VideoSourceUnavailable
    from cjepa.data.video_sources import open_video_source
    from cjepa.distributed.env import detect_env, pick_device
    from cjepa.models.dinov2_weights import WeightsError
    from cjepa.models.encoder_factory import build_object_encoder
    from cjepa.slot_extraction import extract
    from cjepa.utils.report import table

    cfg = load_config(args.config, args.overrides)
    e = cfg.encoder
    if not e.checkpoint:
        print(
            "cjepa extract: set encoder.checkpoint (a run dir, checkpoint dir, model.pt, or a released .ckpt/.pth)",
            file=sys.stderr,
        )
        return 2
    device = pick_device(cfg.run.device, detect_env())
    sources, missing = {}, []
    try:
        for split in e.extract.splits:
            try:
                sources[split] = open_video_source(e.data, split, encoder_input_size(e))
            except FileNotFoundError as err:
                missing.append(f"{split} ({err})")
    except VideoSourceUnavailable as err:
        print(f"cjepa extract: {err}", file=sys.stderr)
        return 2
    if not sources:
        print(f"cjepa extract: no split of {list(e.extract.splits)} is available: {missing}", file=sys.stderr)
        return 2
    try:
        model = build_object_encoder(
            e, attention_backend=cfg.kernels.attention, slot_attention_backend=cfg.kernels.slot_attention
        )
    except WeightsError as err:
        print(f"cjepa extract: cannot load the encoder: {err}", file=sys.stderr)
        return 2
    model.to(device).eval()
    print(f"cjepa extract: {model.load_report}", file=sys.stderr)
    out = e.extract.out or f"{cfg.run.out_dir}/{cfg.run.name}/slots"
    torch.manual_seed(cfg.run.seed)
    summaries = extract(model, sources, out, enc_cfg=e, device=device, progress=not args.no_progress)
    cols = ["split", "videos", "written", "skipped_existing", "frames", "seconds", "videos_per_s", "fg_ari"]
    print(table([[s.get(c, "") for c in cols] for s in summaries], cols))
    for m in missing:
        print(f"skipped split {m}")
    print(f"\nslot store: {out}" + (f"   pickle: {e.extract.export_pickle}" if e.extract.export_pickle else ""))
    return 0
