"""Scaling benchmark: DDP vs DeepSpeed ZeRO-1/2/3, throughput and per-rank memory, at world sizes 1 and 2.

For each world size the script spawns that many ranks (gloo on CPU, nccl on GPUs), and in each rank builds the
C-JEPA predictor once per engine through the same ``build_engine`` the trainer uses, from the same seed and
data. Before anything is timed it checks that every engine's parameters after two steps equal DDP's (the full
parameters, gathered under ZeRO-3). Then it measures, on rank 0:

* memory per rank, by category, counted from the tensors the engine holds (shared storage counted once):
  parameters (the module's, or its ZeRO-3 partition), gradients (what exists between backward and the
  optimizer step: ``.grad`` or ZeRO's gradient partitions), optimizer states (Adam moments plus ZeRO's fp32
  master partitions); communication buckets are not included;
* step time (median, p20, p80 over repeats after warm-up) and samples/s of the global batch.

Next to the measured memory ratio (engine / DDP at the same world size) it prints the ratio expected from the ZeRO
paper's model (Rajbhandari et al. 2020, section 5), evaluated for this run's bytes per element (fp32 training:
4-byte parameters and gradients; DeepSpeed keeps a 4-byte fp32 master copy next to the 8 bytes of Adam moments
even when the parameters themselves are fp32) and, for reference, the paper's own mixed-precision ratio
(2-byte parameters and gradients, K = 12 bytes of optimizer state per parameter).

    python benchmarks/bench_scaling.py --quick            # tiny model, world 1 and 2, a minute on 2 CPU cores
    python benchmarks/bench_scaling.py --worlds 1 2 4 --write

Placement (``--placement``): ``spawn`` (default) starts the ranks here, as processes of this machine. On a SLURM
cluster, ``per-node`` runs one rank per node (``srun -N W --ntasks-per-node 1``) and ``one-node`` puts all W ranks
on one node (``srun -N 1 -n W``), so the same engines are timed with their collectives crossing the nodes' links
or staying inside a node. With ``cluster/local_slurm.sh up --nodes 4 --cpus 4`` the nodes are network namespaces
of this machine: the links are virtual and the ranks share its cores, so the comparison isolates the network
path (TCP over a bridge vs loopback inside a node), not more hardware.

    python benchmarks/bench_scaling.py --quick --worlds 1 2 4 --placement per-node --write
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, device_name, table, time_fn, timing_row, write_rows, zero_expected_bytes  # noqa: E402

ENGINES = ("ddp", "zero1", "zero2", "zero3")
MB = 2**20
# Optimizer-state bytes per parameter K in fp32 training: Adam's two moments (8), plus DeepSpeed's fp32 master copy
# (4) under ZeRO-1/2, which copy the partition even when the parameters are fp32. ZeRO-3 steps its fp32 parameter
# partition in place (DeepSpeed 0.19 stage3.py: "we don't need another copy of the weights"), and DDP's AdamW
# updates the parameters themselves.
OPTIM_BYTES_FP32 = {0: 8, 1: 12, 2: 12, 3: 8}
NOTES = """mem vs DDP: measured per-rank bytes (parameters + gradients + optimizer states) / DDP's at the same world
size.
expected: the ZeRO paper's model with this run's bytes (p = g = 4, K = 12 for ZeRO-1/2, 8 for DDP and ZeRO-3).
paper (mixed prec.): the paper's own ratios (p = g = 2, K = 12).
Gradients are measured between backward and the optimizer step. DeepSpeed's ZeRO-1 has reduced them into this
rank's partition by then; the full gradient the paper counts for stage 1 exists only while backward runs."""


# --------------------------------------------------------------------------------------------- memory accounting


def _tensors(obj, depth: int = 0):
    """Tensors inside nested lists / tuples / dicts (the containers DeepSpeed keeps its partitions in)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 4 and isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o, depth + 1)
    elif depth < 4 and isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o, depth + 1)


class StorageCounter:
    """Bytes of distinct storages; a storage counted in one category is not counted again in the next."""

    def __init__(self):
        self.seen: set[int] = set()

    def add(self, tensors) -> int:
        total = 0
        for t in tensors:
            if t is None or t.numel() == 0:
                continue
            st = t.untyped_storage()
            if st.data_ptr() in self.seen:
                continue
            self.seen.add(st.data_ptr())
            total += st.nbytes()
        return total


def _module_param_tensors(module):
    for p in module.parameters():
        yield getattr(p, "ds_tensor", None) if hasattr(p, "ds_tensor") else p  # ZeRO-3 keeps only its partition


def _grad_tensors(engine):
    yield from (p.grad for p in engine.module.parameters() if p.grad is not None)
    opt = getattr(getattr(engine, "engine", None), "optimizer", None)  # DeepSpeed's ZeRO optimizer
    if opt is not None:
        for name, value in vars(opt).items():
            if "grad" in name.lower() and "norm" not in name.lower():
                yield from _tensors(value)


def _optimizer_tensors(engine):
    ds = getattr(engine, "engine", None)
    basic = ds.basic_optimizer if ds is not None else engine.optimizer
    for state in basic.state.values():
        yield from _tensors(state)
    for group in basic.param_groups:  # ZeRO's fp32 master partitions (DDP's are the module's own parameters)
        yield from group["params"]


def memory_by_category(engine, grads_snapshot: list[torch.Tensor]) -> dict[str, int]:
    counter = StorageCounter()
    params = counter.add(_module_param_tensors(engine.module))
    grads = counter.add(grads_snapshot)
    optim = counter.add(_optimizer_tensors(engine))
    return {"params": params, "grads": grads, "optim": optim}


# --------------------------------------------------------------------------------------------- one rank


def _config(opts, engine: str):
    from cjepa.config import load_config

    stage = {"ddp": None, "zero1": 1, "zero2": 2, "zero3": 3}[engine]
    overrides = [
        f"model.slot_dim={opts['dim']}", f"model.depth={opts['depth']}", f"model.heads={opts['heads']}",
        f"model.mlp_dim={opts['mlp']}", "model.num_slots=7", "model.history_frames=6", "model.pred_frames=10",
        "model.dropout=0.0", f"data.batch_size={opts['batch']}", "masking.num_masked=2", "optim.eps=1.0e-6",
        f"dist.reduce_bucket_size={opts['bucket']}", f"dist.allgather_bucket_size={opts['bucket']}",
        "dist.engine=ddp" if stage is None else "dist.engine=deepspeed",
    ]
    if stage is not None:
        overrides.append(f"dist.zero_stage={stage}")
    return load_config([str(ROOT / "configs" / "smoke" / "cpu.yaml")], overrides)


def _batch(cfg, rank: int, world: int, device):
    """This rank's slice of one fixed global batch: history, masks and targets."""
    g = torch.Generator().manual_seed(1234)
    m = cfg.model
    B = cfg.data.batch_size
    slots = torch.randn(B, m.history_frames + m.pred_frames, m.num_slots, m.slot_dim, generator=g)
    masked = torch.zeros(B, m.num_slots, dtype=torch.bool)
    masked[:, : cfg.masking.num_masked] = True
    micro = B // world
    sl = slice(rank * micro, (rank + 1) * micro)
    return slots[sl].to(device), masked[sl].to(device)


def _full_params(engine, stage: int) -> dict[str, torch.Tensor]:
    with torch.no_grad(), engine.eval_context():  # ZeRO-3: gathered on every rank for the copy
        return {k: v.detach().float().cpu().clone() for k, v in engine.module.state_dict().items()}


def _rank_main(rank: int, world: int, port: int, opts: dict, out: str, master: str = "127.0.0.1",
               local: tuple[int, int] | None = None, close_group: bool = True) -> None:
    local_rank, local_world = local or (rank, world)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank),
                      LOCAL_WORLD_SIZE=str(local_world), MASTER_ADDR=master, MASTER_PORT=str(port))  # as torchrun
    torch.set_num_threads(max(1, opts["threads"]))
    from cjepa.distributed.engine_factory import build_engine
    from cjepa.distributed.env import (
        destroy_process_group,
        detect_env,
        init_process_group,
        init_single_process_group,
    )
    from cjepa.losses import predictor_losses
    from cjepa.models.predictor import build_predictor

    device = torch.device("cuda", rank) if opts["cuda"] else torch.device("cpu")
    if opts["cuda"]:
        torch.cuda.set_device(device)
    env = detect_env()
    init_process_group(env, "auto", 600, device)
    init_single_process_group("auto", device, 600)  # world 1: DeepSpeed needs a group, DDP ignores it
    results, reference = [], None
    for name in opts["engines"]:
        cfg = _config(opts, name)
        torch.manual_seed(0)
        model = build_predictor(cfg.model)
        engine = build_engine(model, [{"params": list(model.parameters())}], cfg, env, device, total_steps=10**6)
        slots, masked = _batch(cfg, rank, world, device)
        T_h = cfg.model.history_frames
        grads: list[torch.Tensor] = []

        def step(keep_grads: bool = False):
            with engine.no_sync(True):
                pred = engine.model(slots[:, :T_h], masked)
                loss = predictor_losses(pred, slots, masked, T_h, False)["loss"]
            engine.backward(loss)
            if keep_grads:
                grads[:] = list(_grad_tensors(engine))
            engine.step()

        step()
        step(keep_grads=True)  # optimizer states exist after the first step; gradients are seen before the second
        mem = memory_by_category(engine, grads)
        grads.clear()
        params = _full_params(engine, cfg.dist.zero_stage)
        if reference is None:
            reference = params
        err = max(float((params[k] - reference[k]).abs().max()) for k in reference)
        if err > 1e-4:
            raise AssertionError(f"{name}: parameters after 2 steps differ from {opts['engines'][0]} by {err:.3g}")
        timing = time_fn(step, device, warmup=opts["warmup"], repeats=opts["repeats"])
        n_params = sum(v.numel() for v in params.values())
        results.append({"engine": name, "world": world, "engine_name": engine.name, "numel": n_params,
                        "max_err_vs_first": err,
                        **mem, **timing_row(timing), "samples_per_s": cfg.data.batch_size / (timing.median_ms / 1e3)})
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    # Leave together: no rank tears its connections down while a peer still uses them. A spawned rank then closes
    # its group; an srun rank exits without teardown instead (_worker).
    if world > 1:
        torch.distributed.barrier()
    if close_group:
        destroy_process_group()


# --------------------------------------------------------------------------------------------- report


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SRUN_SHAPE = {"per-node": lambda w: ["-N", str(w), "--ntasks-per-node", "1"],
              "one-node": lambda w: ["-N", "1", "-n", str(w)]}


def _srun_world(world: int, opts: dict, out: str, placement: str) -> None:
    """Run the ranks of one world size as one srun step; each calls this script back with --worker."""
    import subprocess

    opts_file = out + ".opts.json"
    Path(opts_file).write_text(json.dumps(opts))
    cmd = ["srun", *SRUN_SHAPE[placement](world), "--cpus-per-task", "1", "--kill-on-bad-exit=1",
           *(["-p", opts["partition"]] if opts["partition"] else []),
           sys.executable, str(Path(__file__).resolve()), "--worker", opts_file, out]
    subprocess.run(cmd, check=True, timeout=opts["srun_timeout_s"])


def _worker(opts_file: str, out: str) -> None:
    """One rank of an srun step: rank, world and rendezvous from SLURM's variables (as the trainer reads them)."""
    from cjepa.distributed.env import detect_env

    env = detect_env()
    if env.source != "slurm":
        raise SystemExit("--worker runs inside an srun step of several tasks")
    _rank_main(env.rank, env.world_size, env.master_port, json.loads(Path(opts_file).read_text()), out,
               master=env.master_addr, local=(env.local_rank, env.local_world_size), close_group=False)
    # Every rank has passed the closing barrier and rank 0 has written the rows: leave without the interpreter's
    # teardown. Under load, destructors of the communication libraries' threads have aborted a rank here
    # ("terminate called without an active exception"), failing a step whose results were already on disk.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def report(rows: list[dict]) -> str:
    base = {r["world"]: r for r in rows if r["engine"] == "ddp"}
    out = []
    for r in rows:
        w, psi = r["world"], r["numel"]
        total = r["params"] + r["grads"] + r["optim"]
        stage = {"ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3}[r["engine"]]
        ours = zero_expected_bytes(stage, psi, w, param_bytes=4, grad_bytes=4, optim_bytes=OPTIM_BYTES_FP32[stage])
        ours_ddp = zero_expected_bytes(0, psi, w, param_bytes=4, grad_bytes=4, optim_bytes=8)
        paper = zero_expected_bytes(stage, psi, w, param_bytes=2, grad_bytes=2, optim_bytes=12)
        paper_ddp = zero_expected_bytes(0, psi, w, param_bytes=2, grad_bytes=2, optim_bytes=12)
        ddp = base.get(w)
        measured = total / (ddp["params"] + ddp["grads"] + ddp["optim"]) if ddp else float("nan")
        r.update(total=total, expected_bytes=ours["total"], measured_ratio=measured,
                 expected_ratio=ours["total"] / ours_ddp["total"], paper_ratio=paper["total"] / paper_ddp["total"])
        out.append([r["engine"], w, r["params"] / MB, r["grads"] / MB, r["optim"] / MB, total / MB, ours["total"] / MB,
                    measured, r["expected_ratio"], r["paper_ratio"], r["median_ms"],
                    f"{r['p20_ms']:.1f}-{r['p80_ms']:.1f}",
                    r["samples_per_s"], r["samples_per_s"] / ddp["samples_per_s"] if ddp else float("nan")])
    headers = ["engine", "world", "params MB", "grads MB", "optim MB", "total MB", "expected MB", "mem vs DDP",
               "expected", "paper (mixed prec.)", "step ms", "p20-p80 ms", "samples/s", "throughput vs DDP"]
    return table(out, headers)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--mlp", type=int, default=1024)
    p.add_argument("--batch", type=int, default=16, help="global batch (split over the ranks)")
    p.add_argument("--bucket", type=int, default=2**22, help="ZeRO reduce / all-gather bucket size (elements)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (CPU)")
    p.add_argument("--quick", action="store_true", help="tiny model, few repeats (CI smoke)")
    p.add_argument("--write", action="store_true", help="append JSONL rows to benchmarks/results/")
    p.add_argument("--out", default=None, help="with --write: this JSONL file instead of <device>_<date>.jsonl")
    p.add_argument("--placement", choices=("spawn", "per-node", "one-node"), default="spawn",
                   help="spawn: ranks on this machine; per-node / one-node: through srun, one rank per node or all on "
                        "one")
    p.add_argument("--partition", default="", help="SLURM partition for --placement per-node / one-node")
    p.add_argument("--srun-timeout-s", type=int, default=1200, help="wall-clock bound of one srun step")
    p.add_argument("--worker", nargs=2, metavar=("OPTS", "OUT"), help=argparse.SUPPRESS)  # one rank under srun
    args = p.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return 0
    if args.quick:
        args.dim, args.depth, args.heads, args.mlp, args.batch, args.repeats = 128, 2, 4, 512, 8, 5
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    elif max(args.worlds) > torch.cuda.device_count():
        p.error(f"world size {max(args.worlds)} needs as many GPUs; {torch.cuda.device_count()} visible")
    opts = {**vars(args), "cuda": cuda, "engines": ["ddp", *[e for e in args.engines if e != "ddp"]]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.worlds:
            out = os.path.join(tmp, f"world{w}.json")
            if args.placement == "spawn" or w == 1:  # one rank: no collective, nothing to place
                mp.spawn(_rank_main, args=(w, _free_port(), opts, out), nprocs=w, join=True)
            else:
                _srun_world(w, opts, out, args.placement)
            rows.extend({**r, "placement": args.placement} for r in json.loads(Path(out).read_text()))
    device = torch.device("cuda" if cuda else "cpu")
    print(f"device: {device_name(device)}; backend {'nccl' if cuda else 'gloo'}; model dim {args.dim} depth "
          f"{args.depth} "
          f"mlp {args.mlp} ({rows[0]['numel'] / 1e6:.2f} M parameters, fp32); global batch {args.batch}; "
          f"ZeRO buckets {args.bucket} elements")
    print(report(rows))
    print(NOTES)
    if args.write:
        path = write_rows([{k: v for k, v in r.items()} for r in rows], device, "bench_scaling", out=args.out)
        print(f"rows appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
