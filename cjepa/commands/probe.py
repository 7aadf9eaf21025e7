"""cjepa probe: how much a masked object's query attends to the object it collides with.

Takes a predictor checkpoint (run dir or checkpoint dir; its saved config.yaml names the data it was trained
on, overridable with -c/key=value), probes every collision of the held-out split, and writes ``probe.json`` (the
ratio partner / mean other object per layer and for the layer mean, the number of events, per-event values),
``probe_curve.png`` (attention vs time around the collision), ``probe_example.png`` (one attention map) and
tensorboard logs (``tb/``) under ``--out``. See :mod:`cjepa.eval.probe` for the definition.

Collisions and slot->object bindings: on the built-in slot world (data.source=synthetic) both are exact; on a slot
store (data.source=store|pickle) the store's per-slot ``object_ids`` extra binds slots to objects and
``vqa.annotations`` (CLEVRER-schema annotations with ``collision``) gives the events.
"""

from __future__ import annotations

from pathlib import Path

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR",
                   help="predictor run dir (its latest checkpoint) or checkpoint dir")
    p.add_argument("--split", default=None, help="split to probe (default: the run's data.val_split)")
    p.add_argument("--out", default=None, help="output directory (default: <checkpoint>/probe)")
    p.add_argument("--window", type=int, default=1, metavar="K",
                   help="query tokens at history steps c-K..c+K around the collision step c (default 1)")
    p.add_argument("--collision-step", type=int, default=None, metavar="C",
                   help="history step the collision falls on (default history_frames // 2)")
    p.add_argument("--max-events", type=int, default=0, help="probe at most this many events (0 = all)")


def load_run(checkpoint: str, config_files: list[str], overrides: list[str]):
    """(config, checkpoint dir, step) of a predictor run; the checkpoint's config.yaml is the base config."""
    from cjepa.config import load_config
    from cjepa.eval.probe import ProbeError
    from cjepa.utils.checkpoint import checkpoint_step, resolve_checkpoint

    ckpt = resolve_checkpoint(checkpoint)
    saved = ckpt / "config.yaml" if ckpt.is_dir() else None
    if saved is None or not saved.is_file():
        raise ProbeError(f"--checkpoint {checkpoint}: {ckpt} has no config.yaml; give a run dir or a checkpoint dir "
                         "written by cjepa train")
    cfg = load_config([str(saved), *config_files], overrides)
    if cfg.model.kind != "slots":
        raise ProbeError(f"--checkpoint {checkpoint}: probing needs a slot predictor (model.kind=slots), this run has "
                         f"model.kind={cfg.model.kind}")
    try:
        step = checkpoint_step(ckpt)
    except (IndexError, ValueError):
        step = 0
    return cfg, ckpt, step


def run(args) -> int:
    import torch

    from cjepa.distributed.env import DistEnv, pick_device
    from cjepa.eval.probe import run_probe, slot_world_videos, store_videos
    from cjepa.eval.vqa.rollouts import load_predictor
    from cjepa.utils.report import table

    cfg, ckpt, step = load_run(args.checkpoint, args.config, args.overrides)
    device = pick_device(cfg.run.device, DistEnv())
    model = load_predictor(str(ckpt), cfg.model, cfg.kernels.attention, device)
    split = args.split or cfg.data.val_split
    if cfg.data.source == "synthetic":
        videos = slot_world_videos(cfg, split)
    else:
        videos = store_videos(cfg.data.source, cfg.data.path, split, cfg.vqa.annotations)
    out = Path(args.out) if args.out else Path(args.checkpoint) / "probe"
    with torch.no_grad():
        res = run_probe(model, videos, frameskip=cfg.data.frameskip, k=args.window, device=device, out=out, step=step,
                        collision_index=args.collision_step, max_events=args.max_events)
    rows = [("ratio partner / others, last layer",
             f"{res['ratio']:.3f} (95% CI {res['ratio_ci95'][0]:.3f}-{res['ratio_ci95'][1]:.3f})"),
            ("ratio, layer-averaged map", res["ratio_layer_mean"]),
            *[(f"ratio, layer {i}", r) for i, r in enumerate(res["ratio_per_layer"])],
            ("events (2 per collision)", res["events"]),
            ("collisions skipped (window off the video)", res["collisions_skipped"])]
    print(table(rows, [f"attention probe ({split}, step {step})", "value"]))
    print(f"wrote {out}/probe.json, probe_curve.png, probe_example.png; tensorboard --logdir {out}/tb")
    return 0
