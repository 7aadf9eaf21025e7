"""cjepa rollout: extend slot videos with a trained predictor (CLEVRER: 128 observed -> 160 frames).

The predictor comes from ``rollout.checkpoint``: one of our checkpoints or run directories (its saved
config supplies the model section), or an original C-JEPA state_dict (then give the model section, with
``model.layout=reference``). Slots come from ``data.source``/``data.path``; every split that exists is rolled
out into the slot store ``rollout.out`` (resumable: videos already there are skipped), and optionally into the
original pickle format (``rollout.export_pickle``).

``--decode-with ENCODER_RUN`` also decodes rollouts of the first split read back to frames with that encoder's
decoder (the encoder that produced the slots): per-step PSNR / SSIM / FG-ARI / mIoU against its source videos next
to copy-last (``<out>/decoded/metrics.json``), side-by-side mp4 clips in ``<out>/decoded`` and the same clips as
tensorboard videos in ``<out>/decoded/tb`` at the predictor's trained step, replaced when decoding again
(:mod:`cjepa.eval.rollout_video`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--splits", default="train,val,test",
                   help="comma-separated splits to roll out (missing ones are skipped)")
    p.add_argument("--decode-with", default="", metavar="ENCODER_RUN",
                   help="encoder run directory (config.yaml + checkpoint) whose decoder shows and scores rollouts of "
                        "the "
                        "first split against its source videos")
    p.add_argument("--decode-videos", type=int, default=8, help="videos decoded with --decode-with (default 8)")


def load_predictor(cfg, device):
    """The predictor of rollout.checkpoint; cfg.model becomes the model section it was built from."""
    from cjepa.config import ConfigError
    from cjepa.models.predictor_checkpoints import predictor_from_checkpoint

    if not cfg.rollout.checkpoint:
        raise ConfigError("rollout.checkpoint is required (a checkpoint dir, a run dir, or an original state_dict "
                          "file)")
    loaded = predictor_from_checkpoint(cfg.rollout.checkpoint, cfg.model, cfg.kernels.attention, device)
    cfg.model = loaded.model_cfg
    return loaded.model


def decode_split(cfg, args, predictor, videos, split: str, device, out: Path) -> dict:
    """Decoded rollouts of ``videos`` (one split's slots) with the encoder run ``--decode-with``."""
    import json

    from cjepa.config import encoder_input_size, load_config
    from cjepa.data.video_sources import open_video_source
    from cjepa.errors import UserError
    from cjepa.eval.rollout_video import decoded_rollouts, summary_line, trained_step
    from cjepa.models.encoder_factory import build_object_encoder

    run = Path(args.decode_with)
    if not (run / "config.yaml").is_file():
        raise UserError(f"--decode-with {run}: no config.yaml there; give the encoder's run directory (cjepa "
                        "train-encoder, cjepa demo)")
    enc_cfg = load_config([str(run / "config.yaml")])
    enc = enc_cfg.encoder
    enc.checkpoint = str(run)
    encoder = build_object_encoder(enc, slot_attention_backend=enc_cfg.kernels.slot_attention).to(device).eval()
    res = decoded_rollouts(
        encoder, predictor, videos, open_video_source(enc.data, split, encoder_input_size(enc)),
        history=cfg.model.history_frames, pred_frames=cfg.model.pred_frames, chains=cfg.rollout.eval_chains,
        frameskip=cfg.data.frameskip, frame_stride=enc.extract.frame_stride, max_videos=args.decode_videos,
        out_dir=out / "decoded", tb_dir=out / "decoded" / "tb", step=trained_step(cfg.rollout.checkpoint),
    )
    (out / "decoded" / "metrics.json").write_text(json.dumps({"split": split, "encoder": str(run), **res}, indent=1))
    print(f"{summary_line(res)}\nclips and per-step metrics: {out / 'decoded'}")
    return res


def run(args) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from cjepa.config import load_config
    from cjepa.data.slot_store import SlotSplit, SlotStoreWriter, export_pickle, open_split
    from cjepa.distributed.env import DistEnv, pick_device
    from cjepa.trainer import run_dir_of
    from cjepa.utils.report import table

    cfg = load_config(args.config, args.overrides)
    if cfg.model.kind != "slots":
        print("cjepa rollout: the 128->160 rollout is for slot videos (model.kind=slots)", file=sys.stderr)
        return 2
    device = pick_device(cfg.run.device, DistEnv())
    predictor = load_predictor(cfg, device)
    out = Path(cfg.rollout.out or run_dir_of(cfg) / "rollout")
    rows, written = [], {}
    for split in [s for s in args.splits.split(",") if s]:
        try:
            videos = open_split(cfg.data.source, cfg.data.path, split) if cfg.data.source != "synthetic" else None
        except Exception as err:  # a split that does not exist is skipped with a note
            print(f"cjepa rollout: skipping split {split!r}: {err}", file=sys.stderr)
            continue
        if videos is None:
            from cjepa.data.synthetic import synthetic_splits_from_config

            sp = synthetic_splits_from_config(cfg)
            if split not in sp:
                continue
            videos = sp[split]
        first = np.asarray(videos[next(iter(videos))])
        writer = SlotStoreWriter(out, split, num_slots=first.shape[1], slot_dim=first.shape[2],
                                 producer={"rollout_of": str(cfg.rollout.checkpoint),
                                           "target_frames": cfg.rollout.target_frames})
        todo = {k: videos[k] for k in videos if k not in writer}
        bar = tqdm(total=len(todo), desc=f"rollout {split}", file=sys.stderr)
        from cjepa.eval.rollout import rollout_split

        with writer, torch.no_grad():
            for key, arr in rollout_split(predictor, todo, obs_frames=cfg.rollout.obs_frames,
                                          target_frames=cfg.rollout.target_frames, frameskip=cfg.data.frameskip,
                                          batch_size=cfg.rollout.batch_size, device=device, progress=bar):
                writer.add(key, arr)
        bar.close()
        rows.append((split, len(videos), len(todo), cfg.rollout.target_frames))
        written[split] = SlotSplit(out, split)
    if not rows:
        from cjepa.errors import UserError

        raise UserError(f"no split of --splits {args.splits} could be read from data.path={cfg.data.path} (see the "
                        "lines above)")
    if cfg.rollout.export_pickle:
        export_pickle(written, cfg.rollout.export_pickle)
    print(table(rows, ["split", "videos", "rolled out now", "frames"]))
    print(f"\nslot store: {out}" + (f"\npickle: {cfg.rollout.export_pickle}" if cfg.rollout.export_pickle else ""))
    if args.decode_with:
        split = rows[0][0]
        decode_split(cfg, args, predictor, open_split(cfg.data.source, cfg.data.path, split), split, device, out)
    return 0
