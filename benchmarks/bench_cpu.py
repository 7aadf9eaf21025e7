"""CPU training-step speed: the predictor against the original module, SAVi against its earlier layout.

Every provider of a section is timed in one process, interleaved (A B C A B C ...), so that a machine shared
with other work slows all of them alike; each round gives one ratio per provider against the section's baseline,
and the table reports the median ratio and its p20-p80 spread over rounds.

* ``predictor``: one CLEVRER training step (B x (6 + 10) x 7 slots x 128, depth 6, 16 heads, MLP 2048, dropout
  0.1; masked forward, loss, backward, AdamW). Baseline: the original ``MaskedSlotPredictor`` (``--reference-src``,
  a checkout of galilai-group/cjepa; its outputs are checked against ours on the same weights before timing)
  with torch's AdamW. Ours: ``model.layout=reference`` (the original's architecture and attention math) with the
  trainer's optimizer (:func:`cjepa.distributed.engine.build_optimizer`), in fp32, in bf16 autocast
  (``train.precision=bf16``), and optionally compiled (``--compile``).
* ``savi``: one training step of the demo's SAVi (``configs/world/demo_encoder.yaml``: 32 px, 6 slots x 64, batch
  16 of 2-frame clips, with cues). Baseline ``before``: the same model in the layout this repository used before
  these CPU changes (NCHW convolutions, the decoder's stride-1 layers as transposed convolutions, torch's
  per-tensor AdamW), rebuilt here from the current module. Ours: fp32 and bf16 with the trainer's optimizer.

``--allocator`` sets the process's ``train.cpu_allocator`` (:mod:`cjepa.utils.cpu_allocator`; default
``system``, glibc as it comes). It is process-wide, so ``--processes N`` compares the two allocators across
processes: N pairs of child processes (one ``system``, one ``tuned``, their order alternating pair by pair), each
timing the whole section interleaved as above; the table then gives every provider under both allocators, each
ratio taken against the baseline of the ``system`` process of the same pair, round by round.

Every provider also reports its minor page faults per step (fresh pages the kernel zeroed). Rows (``--save`` /
``--out``) carry the CPU model, its bf16 instructions, torch's CPU capability, thread count,
torch version and the command, next to the git SHA and date.

    python benchmarks/bench_cpu.py --reference-src ../cjepa --save
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predictor import (  # noqa: E402
    CONFIGS,
    add_predictor_shape_args,
    check_original_matches,
    load_original,
    make_step,
)
from common import ROOT, write_rows  # noqa: E402

from cjepa.config import load_config  # noqa: E402
from cjepa.distributed.engine import build_optimizer  # noqa: E402
from cjepa.masking import MaskSampler  # noqa: E402
from cjepa.models.encoder_factory import build_object_encoder  # noqa: E402
from cjepa.models.predictor import MaskedSlotPredictor  # noqa: E402
from cjepa.models.savi import ConvTranspose2d  # noqa: E402
from cjepa.utils.cpu_allocator import ALLOCATORS, tune_cpu_allocator  # noqa: E402
from cjepa.utils.precision import autocast, autocast_dtype, cpu_bf16_instructions  # noqa: E402


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict:
    return {"cpu_model": cpu_model(), "cpu_bf16": cpu_bf16_instructions(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d", time.gmtime())}


def minor_faults() -> int:
    """Page faults of this process so far that the kernel served without I/O: mostly fresh pages being zeroed."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved(steps: dict[str, Callable[[], None]], base: str, rounds: int, warmup: int) -> dict[str, dict]:
    """Time each step once per round, in turn; per provider the median/p20/p80 ms and the ratio base/provider."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    ms: dict[str, list[float]] = {k: [] for k in steps}
    faults: dict[str, int] = {k: 0 for k in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            f = minor_faults()
            t = time.perf_counter()
            fn()
            ms[name].append((time.perf_counter() - t) * 1e3)
            faults[name] += minor_faults() - f
    out = {}
    for name, samples in ms.items():
        ratios = [b / s for b, s in zip(ms[base], samples)]
        q = statistics.quantiles(samples, n=10)
        rq = statistics.quantiles(ratios, n=10)
        out[name] = {"median_ms": statistics.median(samples), "p20_ms": q[1], "p80_ms": q[7],
                     "speedup_median": statistics.median(ratios), "speedup_p20": rq[1], "speedup_p80": rq[7],
                     "rounds": rounds, "page_faults_per_step": faults[name] / rounds, "samples_ms": samples}
    return out


def print_table(title: str, res: dict[str, dict], base: str) -> None:
    print(f"\n{title}")
    print(f"{'provider':34s} {'median ms':>10s} {'p20 ms':>9s} {'p80 ms':>9s} {'faults':>8s}  "
          f"speedup vs {base} (p20-p80)")
    for name, r in res.items():
        print(f"{name:34s} {r['median_ms']:10.0f} {r['p20_ms']:9.0f} {r['p80_ms']:9.0f} "
              f"{r['page_faults_per_step']:8.0f}  "
              f"{r['speedup_median']:.2f}x ({r['speedup_p20']:.2f}-{r['speedup_p80']:.2f})")


# ---------------------------------------------------------------------------------------------- predictor


def predictor_steps(args) -> tuple[dict[str, Callable[[], None]], str, dict]:
    cfg = CONFIGS["clevrer"]
    T_h, S, D = cfg["history_frames"], cfg["num_slots"], args.dim
    torch.manual_seed(0)
    slots = torch.randn(args.batch, T_h + cfg["pred_frames"], S, D)
    masked = MaskSampler(S, args.num_masked).global_masks(0, args.batch)
    optim_cfg = load_config([], ["optim.lr=5e-4", "optim.weight_decay=0.01"]).optim

    def ours():
        torch.manual_seed(0)
        return MaskedSlotPredictor(num_slots=S, slot_dim=D, history_frames=T_h, pred_frames=cfg["pred_frames"],
                                   depth=args.depth, heads=args.heads, mlp_dim=args.mlp, dropout=args.dropout,
                                   layout="reference", attention_backend="torch")

    def step_of(model, opt, precision: str, original: bool):
        return make_step(model, opt, slots, masked, T_h, autocast_dtype(precision), original)

    steps: dict[str, Callable[[], None]] = {}
    base = "reference fp32"
    extra = {}
    if args.reference_src:
        Original = load_original(args.reference_src)
        orig = check_original_matches(Original, ours(), cfg, args, torch.device("cpu"))
        steps["original fp32"] = step_of(orig, torch.optim.AdamW(orig.parameters(), lr=5e-4), "fp32", True)
        base = "original fp32"
        src = Path(args.reference_src) / "src" / "cjepa_predictor.py"
        extra["original_sha256"] = hashlib.sha256(src.read_bytes()).hexdigest()
    for precision in ("fp32", "bf16"):
        m = ours()
        steps[f"reference {precision}"] = step_of(m, build_optimizer([{"params": m.parameters()}], optim_cfg),
                                                  precision, False)
    if args.compile:
        m = ours()
        steps["reference bf16+compile"] = step_of(torch.compile(m),
                                                  build_optimizer([{"params": m.parameters()}], optim_cfg), "bf16",
                                                  False)
    return steps, base, extra


# ---------------------------------------------------------------------------------------------- SAVi


def as_before(model: torch.nn.Module) -> torch.nn.Module:
    """The SAVi layout of before the CPU changes: NCHW weights, stride-1 decoder layers as transposed convs."""
    for mod in model.modules():
        if isinstance(mod, ConvTranspose2d):
            mod.__class__ = torch.nn.ConvTranspose2d  # the parent class: same parameters, its own forward
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            mod.weight.data = mod.weight.data.contiguous()
    return model


def savi_steps(args) -> tuple[dict[str, Callable[[], None]], str, dict]:
    cfg = load_config([str(ROOT / "configs" / "world" / "demo_encoder.yaml")], [])
    B, T, S = args.savi_batch, cfg.encoder.data.clip_frames, cfg.encoder.num_slots
    R = cfg.encoder.savi.resolution
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(B, T, 3, R, R, generator=g)
    cues = torch.zeros(B, S, 3)
    cues[:, 1:4, 0] = 1.0  # three objects per clip at random centres
    cues[:, 1:4, 1:] = torch.rand(B, 3, 2, generator=g) * 2 - 1

    def build(before: bool):
        torch.manual_seed(0)
        model = build_object_encoder(cfg.encoder, slot_attention_backend=cfg.kernels.slot_attention)
        return as_before(model) if before else model

    def step_of(model, opt, precision: str):
        def step():
            gens = [torch.Generator().manual_seed(i) for i in range(B)]
            with autocast(precision, "cpu"):
                losses, _ = model(frames, generator=gens, cues=cues)
            losses["loss"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    ref, new = build(True), build(False)
    with torch.no_grad():  # same weights, same math: the layouts must agree before they are timed
        a = ref.encode(frames[:2], generator=torch.Generator().manual_seed(1), cues=cues[:2]).slots
        b = new.encode(frames[:2], generator=torch.Generator().manual_seed(1), cues=cues[:2]).slots
    err = float((a - b).abs().max())
    if err > 1e-3:
        raise SystemExit(f"savi: the current layout differs from the earlier one by {err:.3g}; not timing it")
    lr = cfg.optim.lr
    steps = {"before fp32": step_of(ref, torch.optim.AdamW(ref.parameters(), lr=lr), "fp32")}
    for precision in ("fp32", "bf16"):
        m = build(False)
        steps[f"now {precision}"] = step_of(m, build_optimizer([{"params": m.parameters()}], cfg.optim), precision)
    if args.compile:
        m = build(False)
        steps["now bf16+compile"] = step_of(torch.compile(m), build_optimizer([{"params": m.parameters()}], cfg.optim),
                                            "bf16")
    return steps, "before fp32", {"savi_layout_max_err": err}


def redacted_command(argv: list[str]) -> str:
    """The command line with the --reference-src path replaced by a placeholder (rows hold no machine paths)."""
    out, skip = ["python", "benchmarks/bench_cpu.py"], False
    for a in argv[1:]:
        if skip:
            out.append("<galilai-group/cjepa checkout>")
            skip = False
        elif a == "--reference-src":
            out.append(a)
            skip = True
        elif a.startswith("--reference-src="):
            out.append("--reference-src=<galilai-group/cjepa checkout>")
        else:
            out.append(a)
    return " ".join(out)


def stats_of(samples: list[float], ratios: list[float]) -> dict:
    q, rq = statistics.quantiles(samples, n=10), statistics.quantiles(ratios, n=10)
    return {"median_ms": statistics.median(samples), "p20_ms": q[1], "p80_ms": q[7],
            "speedup_median": statistics.median(ratios), "speedup_p20": rq[1], "speedup_p80": rq[7]}


def combine_pairs(pairs: list[dict[str, dict]], base: str) -> dict[str, dict]:
    """Per-allocator results of N process pairs -> one entry per "provider @ allocator"; every ratio is the
    ``system`` process's baseline over the provider, round by round within the same pair."""
    out = {}
    for provider in pairs[0]["system"]:
        for alloc in ALLOCATORS[::-1]:  # system first
            samples, ratios, faults = [], [], []
            for pair in pairs:
                faults.append(pair[alloc][provider]["page_faults_per_step"])
                mine = pair[alloc][provider]["samples_ms"]
                samples += mine
                ratios += [b / m for b, m in zip(pair["system"][base]["samples_ms"], mine)]
            out[f"{provider} @ {alloc}"] = {**stats_of(samples, ratios), "rounds": len(samples),
                                            "page_faults_per_step": statistics.mean(faults)}
    return out


def child_argv(argv: list[str]) -> list[str]:
    """The command's own options, less those the parent keeps (--processes, --allocator, --save, --out)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--processes", "--allocator", "--out", "--json-out"):
            skip = True
        elif a == "--save" or a.split("=")[0] in ("--processes", "--allocator", "--out", "--json-out"):
            continue
        else:
            out.append(a)
    return out


def run_pairs(args, section: str) -> tuple[list[dict[str, dict]], str]:
    """``--processes N``: N pairs of child processes, one per allocator, their order alternating. Returns each
    pair's results per allocator and the section's baseline provider."""
    pairs, base = [], ""
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.processes):
            pair = {}
            for alloc in (ALLOCATORS[::-1] if i % 2 == 0 else ALLOCATORS):
                out = Path(tmp) / f"{i}_{alloc}.json"
                cmd = [sys.executable, __file__, *child_argv(sys.argv[1:]), "--section", section,
                       "--allocator", alloc, "--json-out", str(out)]
                print(f"pair {i + 1}/{args.processes}: {alloc}", flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                child = json.loads(out.read_text())[section]
                pair[alloc], base = child["results"], child["base"]
            pairs.append(pair)
    return pairs, base


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", choices=["predictor", "savi", "all"], default="all")
    p.add_argument("--batch", type=int, default=64, help="predictor batch")
    p.add_argument("--savi-batch", type=int, default=16, help="SAVi clips per step (the demo's data.batch_size)")
    add_predictor_shape_args(p)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the bf16 providers")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--allocator", choices=ALLOCATORS, default="system",
                   help="train.cpu_allocator of this process (system: glibc as it comes)")
    p.add_argument("--processes", type=int, default=0,
                   help="N > 0: compare the allocators over N pairs of child processes")
    p.add_argument("--json-out", default="", help=argparse.SUPPRESS)  # a child's raw samples, for its parent
    p.add_argument("--reference-src", default="", help="checkout of galilai-group/cjepa (the original predictor)")
    p.add_argument("--save", action="store_true", help="append rows to benchmarks/results/cpu_<date>.jsonl")
    p.add_argument("--out", default="", help="JSONL path instead")
    args = p.parse_args()
    if args.rounds < 5:  # fewer rounds make the p20/p80 quantiles extrapolate (even below zero)
        p.error(f"--rounds {args.rounds}: give at least 5 rounds for the p20-p80 spread")
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = tune_cpu_allocator(args.allocator) if not args.processes else "per process"
    facts = {**machine_facts(), "allocator": allocator}
    print(" ".join(f"{k}={v}" for k, v in facts.items()))
    rows, raw = [], {}
    sections = ["predictor", "savi"] if args.section == "all" else [args.section]
    for section in sections:
        batch = args.batch if section == "predictor" else args.savi_batch
        if args.processes:
            pairs, base = run_pairs(args, section)
            res, extra = combine_pairs(pairs, base), {"processes": args.processes}
            title = f"{section}: training step, batch {batch}, {args.processes} process pairs x {args.rounds} rounds"
            base = f"{base} @ system"
        else:
            steps, base, extra = predictor_steps(args) if section == "predictor" else savi_steps(args)
            with contextlib.redirect_stderr(sys.stdout) if args.compile else contextlib.nullcontext():
                res = interleaved(steps, base, args.rounds, args.warmup)
            raw[section] = {"base": base, "results": res}
            title = f"{section}: training step, batch {batch}, {args.rounds} interleaved rounds"
        print_table(title, res, base)
        for name, r in res.items():
            r = {k: v for k, v in r.items() if k != "samples_ms"}
            rows.append({"section": section, "provider": name, "baseline": base, "batch": batch, **r, **extra,
                         **facts, "command": redacted_command(sys.argv)})
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(raw))
    if args.save or args.out:
        out = args.out or str(ROOT / "benchmarks" / "results" / f"cpu_{time.strftime('%Y%m%d', time.gmtime())}.jsonl")
        print(f"\nrows appended to {write_rows(rows, torch.device('cpu'), 'bench_cpu', out)}")


if __name__ == "__main__":
    main()
