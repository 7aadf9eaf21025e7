"""Encoder throughput: training clips/s and slot-extraction videos/s, per kernel backend, CPU or GPU.

For each encoder (VideoSAUR, SAVi) and each provider (attention / slot-attention backend, precision), this script
checks that the provider's slots agree with the reference provider (torch attention, torch slot attention, fp32)
on the same weights and noise, then times

* one training step (forward + backward + Adam step) on a clip batch -> clips/s, and
* extraction of whole videos with ``cjepa.slot_extraction.encode_videos`` (no_grad, masks + object ids) -> videos/s,

and prints ratio tables against the reference (median and p20/p80 spread). ``--jsonl`` appends the rows with
device, versions and git SHA to benchmarks/results/.

Presets: ``small`` (a reduced VideoSAUR and SAVi for CPUs: seconds) and ``clevrer`` (the real sizes: ViT-S/14 at
196 px, 7 slots x 128, clips of 6 frames, batch 32 on GPU; SAVi at 64 px). DINOv2 runs with random weights here:
throughput does not depend on them.

    python benchmarks/bench_encoder.py --preset small            # CPU, quick
    python benchmarks/bench_encoder.py --preset clevrer --jsonl   # GPU
"""

from __future__ import annotations

import argparse
import warnings

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import ratio_table, time_fn, timing_row, write_rows

from cjepa.backends.attention import BackendUnavailable, check_backend
from cjepa.config import load_config
from cjepa.data.clips import VideoItem
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.slot_extraction import encode_videos

PRESETS = {
    "small": {
        "videosaur": [
            "encoder.backbone.dim=96",
            "encoder.backbone.depth=4",
            "encoder.backbone.heads=3",
            "encoder.backbone.image_size=112",
            "encoder.slot_dim=64",
            "encoder.num_slots=5",
            "encoder.videosaur.mlp_hidden=192",
            "encoder.videosaur.predictor_ffn=256",
            "encoder.videosaur.decoder_ffn=256",
            "encoder.videosaur.renderer_dims=[256,256]",
        ],
        "savi": [
            "encoder.kind=savi",
            "encoder.savi.resolution=32",
            "encoder.savi.enc_channels=32",
            "encoder.savi.dec_channels=32",
            "encoder.slot_dim=64",
            "encoder.num_slots=5",
            "encoder.savi.slot_mlp=128",
        ],
        "clip": dict(batch=4, frames=6, size=112, video_frames=24, videos=4),
    },
    "clevrer": {
        "videosaur": [],
        "savi": ["encoder.kind=savi"],
        "clip": dict(batch=32, frames=6, size=196, video_frames=128, videos=8),
    },
}


def providers(kind: str, device: torch.device, include_bf16: bool) -> dict[str, dict]:
    """Provider name -> settings; the first is the reference. SAVi has no transformer attention, only slot attention."""
    out = {"torch": dict(attention="torch", slot_attention="torch", bf16=False)}
    att = "torch"
    if kind == "videosaur":
        try:
            check_backend("sdpa", device)
            out["sdpa"] = dict(attention="sdpa", slot_attention="torch", bf16=False)
            att = "sdpa"
        except BackendUnavailable:
            pass
    try:
        import cjepa_kernels.slot_attention  # noqa: F401

        if device.type == "cuda":
            out[f"{att}+triton_sa"] = dict(attention=att, slot_attention="triton", bf16=False)
    except ImportError:
        pass
    if include_bf16 and device.type == "cuda":
        out[f"{att}+bf16"] = dict(attention=att, slot_attention="torch", bf16=True)
    return out


def build(kind_overrides: list[str], prov: dict, device: torch.device, state=None):
    cfg = load_config(
        [],
        kind_overrides + [f"kernels.attention={prov['attention']}", f"kernels.slot_attention={prov['slot_attention']}"]
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_object_encoder(
            cfg.encoder, attention_backend=prov["attention"], slot_attention_backend=prov["slot_attention"]
        )
    if state is not None:
        model.load_state_dict(state)
    return cfg, model.to(device)


def autocast(device: torch.device, bf16: bool):
    import contextlib

    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def bench_kind(kind: str, preset: dict, device: torch.device, args) -> list[dict]:
    c = dict(preset["clip"])
    for name in ("batch", "frames", "video_frames", "videos"):
        if getattr(args, name) is not None:
            c[name] = getattr(args, name)
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(c["batch"], c["frames"], 3, c["size"], c["size"], generator=g).to(device)
    videos = [
        VideoItem(
            f"v{i}",
            torch.randn(c["video_frames"], 3, c["size"], c["size"], generator=g),
            torch.randint(0, 4, (c["video_frames"], c["size"], c["size"]), generator=g).to(torch.int16),
        )
        for i in range(c["videos"])
    ]
    provs = providers(kind, device, args.bf16)
    ref_cfg, ref_model = build(preset[kind], provs["torch"], device)
    state = {k: v.detach().clone() for k, v in ref_model.state_dict().items()}
    train_t, extract_t, rows = {}, {}, []
    ref_slots = None
    for name, prov in provs.items():
        cfg, model = build(preset[kind], prov, device, state)
        # correctness first: same weights and noise -> same slots as the reference provider
        model.eval()
        with torch.no_grad(), autocast(device, prov["bf16"]):
            slots = model.encode(clip[:2], generator=torch.Generator(device=device).manual_seed(1),
                                 masks=False).slots.float()
        if ref_slots is None:
            ref_slots = slots
        tol = 5e-2 if prov["bf16"] else 2e-3
        err = float((slots - ref_slots).abs().max())
        if err > tol:
            raise SystemExit(f"{kind}/{name}: slots differ from the reference by {err:.3g} > {tol}; not timing a wrong "
                             "provider")
        model.train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def train_step():
            with autocast(device, prov["bf16"]):
                losses, _ = model(clip)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
            opt.step()
            opt.zero_grad(set_to_none=True)

        model.eval()

        def extract_all():
            for i in range(0, len(videos), cfg.encoder.extract.batch_videos):
                with autocast(device, prov["bf16"]):
                    encode_videos(model, videos[i : i + 1], seed=0, stride=1, device=device, object_ids=True)

        model.train()
        train_t[name] = time_fn(train_step, device, warmup=args.warmup, repeats=args.repeats)
        model.eval()
        extract_t[name] = time_fn(extract_all, device, warmup=1, repeats=max(3, args.repeats // 4))
        rows.append(
            {
                "kind": kind,
                "provider": name,
                "mode": "train_step",
                "batch": c["batch"],
                "frames": c["frames"],
                "size": c["size"],
                "clips_per_s": c["batch"] / (train_t[name].median_ms / 1e3),
                "max_slot_err": err,
                **timing_row(train_t[name]),
            }
        )
        rows.append(
            {
                "kind": kind,
                "provider": name,
                "mode": "extract",
                "videos": c["videos"],
                "video_frames": c["video_frames"],
                "size": c["size"],
                "videos_per_s": c["videos"] / (extract_t[name].median_ms / 1e3),
                **timing_row(extract_t[name]),
            }
        )
    print(f"\n{kind}: training step, batch {c['batch']} x {c['frames']} frames at {c['size']} px")
    print(ratio_table(train_t, "torch", unit_per_call=c["batch"], unit_name="clips/s"))
    print(f"\n{kind}: extraction of {c['videos']} videos x {c['video_frames']} frames (slots + masks + object ids)")
    print(ratio_table(extract_t, "torch", unit_per_call=c["videos"], unit_name="videos/s"))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--kind", choices=["videosaur", "savi", "both"], default="both")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast (GPU)")
    p.add_argument("--batch", type=int, help="training clips per step (default: the preset's)")
    p.add_argument("--frames", type=int, help="frames per training clip")
    p.add_argument("--videos", type=int, help="videos to extract")
    p.add_argument("--video-frames", dest="video_frames", type=int, help="frames per extracted video")
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--jsonl", nargs="?", const="", default=None,
                   help="append rows to benchmarks/results/ (or this file)")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.warmup = 3, 1
    device = torch.device(args.device)
    from common import device_name

    print(f"device: {device_name(device)}   preset: {args.preset}")
    rows = []
    for kind in ["videosaur", "savi"] if args.kind == "both" else [args.kind]:
        rows += bench_kind(kind, PRESETS[args.preset], device, args)
    if args.jsonl is not None:
        path = write_rows([{**r, "preset": args.preset} for r in rows], device, "bench_encoder", args.jsonl or None)
        print(f"\nrows appended to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
