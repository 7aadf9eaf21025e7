"""Training-step throughput and peak memory of the C-JEPA predictor.

One step = masked forward + loss (masked-history + future MSE) + backward + AdamW update, on random slots of the
CLEVRER config (B=256, T_h=6, T_p=10, S=7, D=128) and the Push-T config (B=256, T_h=3, T_p=1, 4 slots + 2 aux
nodes). Providers:

- ``reference``: our module in the reference layout with the explicit-math attention (the original's numerics);
- ``cjepa``: our default layout with the chosen attention backend (``--attention``), optionally bf16 autocast
  and torch.compile (``--compile``);
- ``original``: with ``--reference-src PATH`` (a checkout of galilai-group/cjepa), the original
  ``MaskedSlotPredictor`` on the same inputs; before timing, its state_dict is loaded into our reference layout
  and the outputs must match.

Prints a ratio table (median and p20/p80 spread) and can append JSONL rows (``--out``/``--save``).
Example: ``python benchmarks/bench_predictor.py --quick`` (CPU) or
``python benchmarks/bench_predictor.py --device cuda --attention sdpa --bf16 --compile --reference-src ../cjepa``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_memory, ratio_table, time_fn, timing_row, write_rows  # noqa: E402

from cjepa.losses import predictor_losses  # noqa: E402
from cjepa.masking import MaskSampler  # noqa: E402
from cjepa.models.predictor import MaskedSlotPredictor  # noqa: E402

CONFIGS = {
    "clevrer": dict(num_slots=7, history_frames=6, pred_frames=10),
    "pusht": dict(num_slots=6, history_frames=3, pred_frames=1),  # 4 object slots + proprio + action nodes
}


def load_original(src: str):
    path = Path(src) / "src" / "cjepa_predictor.py"
    if not path.is_file():
        raise SystemExit(f"--reference-src: {path} not found (give a checkout of galilai-group/cjepa)")
    spec = importlib.util.spec_from_file_location("original_cjepa_predictor", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # needs einops
    return mod.MaskedSlotPredictor


def make_step(model, opt, slots, masked, T_h, autocast_dtype, original: bool):
    dev = slots.device.type

    def step():
        with torch.autocast(dev, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            if original:
                pred, idx = model(slots[:, :T_h])
                m = torch.zeros(slots.shape[0], slots.shape[2], dtype=torch.bool, device=slots.device)
                m[:, idx] = True
            else:
                pred, m = model(slots[:, :T_h], masked), masked
            loss = predictor_losses(pred.float(), slots, m, T_h, include_t0=True)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def build_ours(cfg, layout, attention, dim, depth, heads, mlp, dropout):
    return MaskedSlotPredictor(
        num_slots=cfg["num_slots"], slot_dim=dim, history_frames=cfg["history_frames"], pred_frames=cfg["pred_frames"],
        depth=depth, heads=heads, mlp_dim=mlp, dropout=dropout, layout=layout, attention_backend=attention,
    )


def check_original_matches(Original, ours_ref, cfg, args, device):
    """The original module and our reference layout, same weights, eval mode: outputs must agree."""
    orig = Original(num_slots=cfg["num_slots"], slot_dim=args.dim, history_frames=cfg["history_frames"],
                    pred_frames=cfg["pred_frames"],
                    num_masked_slots=args.num_masked, depth=args.depth, heads=args.heads, mlp_dim=args.mlp,
                    dropout=args.dropout).to(device)
    ours_ref.load_state_dict(orig.state_dict())
    x = torch.randn(4, cfg["history_frames"], cfg["num_slots"], args.dim, device=device)
    orig.eval(), ours_ref.eval()
    with torch.no_grad():
        out_o, idx = orig(x)
        m = torch.zeros(4, cfg["num_slots"], dtype=torch.bool, device=device)
        m[:, idx] = True
        out_r = ours_ref(x, m)
    err = (out_o - out_r).abs().max().item()
    if err > 1e-4:
        raise SystemExit(f"correctness check failed: original vs our reference layout differ by {err:.3g}")
    orig.train(), ours_ref.train()
    return orig


def add_predictor_shape_args(p: argparse.ArgumentParser) -> None:
    """The predictor's size options (the CLEVRER predictor's defaults), shared with bench_cpu.py."""
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--mlp", type=int, default=2048)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--num-masked", type=int, default=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=list(CONFIGS) + ["all"], default="all")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=256)
    add_predictor_shape_args(p)
    p.add_argument("--attention", default="sdpa", choices=["torch", "sdpa", "triton", "flash_attn"],
                   help="backend of the cjepa provider")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the cjepa provider")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the cjepa provider")
    p.add_argument("--reference-src", default="", help="checkout of galilai-group/cjepa to time the original module")
    p.add_argument("--quick", action="store_true", help="fewer repeats (and batch 64 on CPU)")
    p.add_argument("--save", action="store_true", help="append JSONL rows to benchmarks/results/")
    p.add_argument("--out", default="", help="JSONL path instead of benchmarks/results/<device>_<date>.jsonl")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.quick and device.type == "cpu":
        args.batch = min(args.batch, 64)
    repeats = 5 if args.quick else 20
    Original = load_original(args.reference_src) if args.reference_src else None
    rows = []
    for name in (CONFIGS if args.config == "all" else [args.config]):
        cfg = CONFIGS[name]
        T = cfg["history_frames"] + cfg["pred_frames"]
        torch.manual_seed(0)
        slots = torch.randn(args.batch, T, cfg["num_slots"], args.dim, device=device)
        masked = MaskSampler(cfg["num_slots"] if name == "clevrer" else cfg["num_slots"] - 2,
                             args.num_masked).global_masks(0, args.batch).to(device)
        if name == "pusht":
            masked = torch.cat([masked, masked.new_zeros(args.batch, 2)], dim=1)
        providers = {}
        ref = build_ours(cfg, "reference", "torch", args.dim, args.depth, args.heads, args.mlp, args.dropout).to(device)
        if Original is not None:
            orig = check_original_matches(Original, ref, cfg, args, device)
            providers["original"] = make_step(orig, torch.optim.AdamW(orig.parameters(), lr=5e-4), slots, masked,
                                              cfg["history_frames"], None, True)
        providers["reference"] = make_step(ref, torch.optim.AdamW(ref.parameters(), lr=5e-4), slots, masked,
                                           cfg["history_frames"], None, False)
        ours = build_ours(cfg, "cjepa", args.attention, args.dim, args.depth, args.heads, args.mlp,
                          args.dropout).to(device)
        dtype = torch.bfloat16 if args.bf16 else None
        providers[f"cjepa[{args.attention}{',bf16' if args.bf16 else ''}]"] = make_step(
            ours, torch.optim.AdamW(ours.parameters(), lr=5e-4), slots, masked, cfg["history_frames"], dtype, False)
        if args.compile:
            comp = build_ours(cfg, "cjepa", args.attention, args.dim, args.depth, args.heads, args.mlp,
                              args.dropout).to(device)
            comp_c = torch.compile(comp)
            providers[f"cjepa[{args.attention}{',bf16' if args.bf16 else ''},compile]"] = make_step(
                comp_c, torch.optim.AdamW(comp.parameters(), lr=5e-4), slots, masked, cfg["history_frames"], dtype,
                False)
        results, mems = {}, {}
        for pname, fn in providers.items():
            results[pname] = time_fn(fn, device, warmup=3, repeats=repeats)
            mems[pname] = peak_memory(fn, device)
        base = "original" if "original" in results else "reference"
        tokens = T * cfg["num_slots"]
        print(f"\n{name}: B={args.batch}, T={T}, tokens/sample={tokens}, D={args.dim}, depth={args.depth}, "
              f"heads={args.heads}, device={device}")
        print(ratio_table(results, base, unit_per_call=args.batch, unit_name="samples/s"))
        if device.type == "cuda":
            print("peak memory (GiB): " + ", ".join(f"{k}={v / 2**30:.2f}" for k, v in mems.items()))
        for pname, t in results.items():
            rows.append({"config": name, "provider": pname, "batch": args.batch,
                         "samples_per_s": args.batch / (t.median_ms / 1e3),
                         "speedup_vs_" + base: results[base].median_ms / t.median_ms, "peak_bytes": mems[pname],
                         **timing_row(t)})
    if args.save or args.out:
        print(f"\nrows appended to {write_rows(rows, device, 'bench_predictor', args.out or None)}")


if __name__ == "__main__":
    main()
