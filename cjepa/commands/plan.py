"""cjepa plan: evaluate Push-T world models with CEM-MPC (spec section 3.4).

For ``plan.checkpoint`` (and, if given, ``plan.baseline_checkpoint``, e.g. the no-masking OC-JEPA model) it
runs ``plan.episodes`` start/goal pairs (goal 25 steps later in a held-out expert episode) per seed in
``plan.seeds``, with a 50-step budget, and reports success rate per seed, mean +- std, the 95 % t-interval
over seeds, and planning time per CEM plan and per episode; a zero-action baseline on the same pairs bounds
the task from below. Writes to ``plan.out`` (default runs/<run.name>/plan): ``results.json`` (everything,
per episode, and per model the cumulative success curve: percent solved within k = 1 .. budget steps),
``results.md`` (the printed table), ``episodes.jsonl`` (as episodes finish), ``tb/`` (tensorboard: success
curve, per-seed success and time per plan) and ``plan.videos`` rendered episodes per model (mp4: observation
| goal | the model's predicted final frame of the plan being executed, see :mod:`cjepa.plan.video`). With
``plan.oracle=true`` the simulator itself is also evaluated as the world model (true dynamics, same embedding
and cost): the upper bound of the planner under this protocol. With ``plan.ensemble`` the model row plans with the
mean cost of ``plan.checkpoint`` and those models (:class:`cjepa.plan.world_model.EnsembleWorldModel`).

One evaluation writes into a folder at a time (``run.lock``). A rerun into the same folder resumes an evaluation
that was interrupted (Ctrl-C, a crash, a preempted job: ``episodes.jsonl`` but no ``results.json``) when it is the
same evaluation (``plan_run.json``: the resolved config less ``plan.workers`` and ``plan.out``, and the size and
time of every checkpoint file): the episodes it finished are kept, not planned again, and since every episode
draws from its own CEM stream the results are those of an uninterrupted run (:func:`resumable_episodes`).
Otherwise (a finished evaluation, another config or checkpoint, or ``--fresh``) the rerun first moves the previous
run's outputs to ``previous/<n>/`` (:func:`set_aside_previous`), so episodes.jsonl and tensorboard hold one run and
nothing earlier is lost.

A checkpoint is one of our checkpoint (or run) directories, or a plain state_dict file: ours, or the original
Push-T world model's (``model.``-prefixed, frozen encoder included; load it with ``model.layout=reference``). A
plain file carries no proprio/action statistics, so they are fitted on the store's training split
(:func:`cjepa.plan.world_model.load_predictor_checkpoint`); each model's line in the output and its ``loaded``
entry in ``results.json`` say what was loaded and where its statistics came from.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--checkpoint", default=None, help="world model checkpoint or run dir, or a plain state_dict file "
                   "(ours or the original Push-T world model's; built from the config's model section) "
                   "(plan.checkpoint)")
    p.add_argument("--baseline", default=None, help="second model on the same episodes (plan.baseline_checkpoint)")
    p.add_argument("--dataset", default=None, help="Push-T state-slot store made by `cjepa pusht` (plan.dataset)")
    p.add_argument("--fresh", action="store_true", help="start over even where plan.out holds an interrupted run of "
                   "the same evaluation (its outputs are moved to previous/<n>/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:

    import torch

    from cjepa.config import ConfigError, load_config
    from cjepa.distributed.env import DistEnv, pick_device

    overrides = list(args.overrides)
    flags = ((args.checkpoint, "plan.checkpoint"), (args.baseline, "plan.baseline_checkpoint"),
             (args.dataset, "plan.dataset"))
    for flag, key in flags:
        if flag:
            overrides.append(f"{key}={flag}")
    cfg = load_config(args.config, overrides)
    pc = cfg.plan
    if not pc.checkpoint or not pc.dataset:
        raise ConfigError("cjepa plan needs plan.checkpoint (--checkpoint) and plan.dataset (--dataset)")
    device = pick_device(cfg.run.device, DistEnv())
    if pc.workers > 1 and torch.device(device).type != "cpu":
        raise ConfigError(f"plan.workers={pc.workers} forks worker processes, which a {torch.device(device).type} "
                          "context does not survive: use plan.workers=1 off the CPU")
    with torch.no_grad():  # planning never differentiates; scoped, so callers keep their grad mode
        return _evaluate(args, cfg, pc, device)


def _evaluate(args, cfg, pc, device) -> int:
    """One evaluation at a time into ``plan.out``; a rerun sets the previous run's outputs aside once its first model
    has loaded."""
    from cjepa.utils.run_dir import RunLock

    out = Path(pc.out or Path(cfg.run.out_dir) / cfg.run.name / "plan")
    lock = RunLock(out).acquire()  # two evaluations into one folder would interleave episodes.jsonl
    finished = False
    try:
        code = _evaluate_into(out, args, cfg, pc, device)
        finished = True
        return code
    finally:
        lock.release(discard_if_unused=not finished)  # a failed start (a mistyped checkpoint) leaves no empty folder


def _evaluate_into(out, args, cfg, pc, device) -> int:
    import statistics

    from tqdm import tqdm

    from cjepa.config import to_dict
    from cjepa.plan.cem import CEM
    from cjepa.plan.evaluate import evaluate_planner, load_expert_episodes, sample_start_goal_pairs, zero_action_success
    from cjepa.plan.mpc import MPCPlanner
    from cjepa.plan.world_model import EnsembleWorldModel, SimulatorWorldModel, build_world_model
    from cjepa.utils.report import table

    episodes = load_expert_episodes(pc.dataset, pc.eval_split)
    models = [("model", pc.checkpoint)] + ([("baseline", pc.baseline_checkpoint)] if pc.baseline_checkpoint else [])
    if pc.oracle:
        models.append(("simulator", pc.checkpoint))
    bar = tqdm(total=len(models) * len(pc.seeds) * pc.episodes, desc="plan", unit="ep", file=sys.stderr,
               dynamic_ncols=True, disable=args.no_progress)
    evals, loaded = [], {}

    def report(note, name):
        loaded[name] = note
        tqdm.write(f"{name}: {note}")

    for name, ckpt in models:
        wm = build_world_model(ckpt, pc, dataset=pc.dataset, device=device, attention_backend=cfg.kernels.attention,
                               config=cfg, report=lambda note, name=name: report(note, name))
        # Rendered frames at this side for a pixel encoder (else None), with masks for a conditional one.
        pixel_size, pixel_masks = wm.encoder.pixel_size, wm.encoder.needs_masks
        if name == "simulator":
            wm = SimulatorWorldModel.from_config(wm, pc)
        elif name == "model" and pc.ensemble:
            wm = EnsembleWorldModel([wm] + [
                build_world_model(c, pc, dataset=pc.dataset, device=device, attention_backend=cfg.kernels.attention,
                                  config=cfg, report=lambda note, i=i: report(note, f"ensemble member {i}"))
                for i, c in enumerate(pc.ensemble, 1)])

        def make_planner(seed, wm=wm):
            return MPCPlanner(wm, CEM.from_config(pc, seed, device), horizon=pc.horizon,
                              receding_horizon=pc.receding_horizon,
                              history_obs=pc.history_obs, warm_start=pc.warm_start, clip_actions=pc.clip_actions)

        if not evals:  # the first model loaded: only now does this run write, so a failed load leaves out as it was
            identity = evaluation_identity(cfg, models)
            done = None if args.fresh else resumable_episodes(out, identity)
            if done is None:
                previous = set_aside_previous(out)
                if previous is not None:
                    tqdm.write(f"plan: the previous results in {out} were moved to {previous}")
                (out / RUN_FILE).write_text(json.dumps(identity, indent=1))
                done = {}
            else:
                tqdm.write(f"plan: resuming the interrupted evaluation in {out}: {len(done)} episode(s) already done")
        mine = {(seed, index): res for (model, seed, index), res in done.items() if model == name}
        evals.append((ckpt, evaluate_planner(name, make_planner, episodes, pc, out_dir=out, progress=bar, done=mine,
                                                pixel_size=pixel_size, pixel_masks=pixel_masks)))
    bar.close()
    zero = statistics.fmean(zero_action_success(episodes,
                                                sample_start_goal_pairs(episodes, pc.episodes, s, pc.goal_offset),
                                                pc.goal_offset, pc.budget) for s in pc.seeds)
    headers, rows = _table(evals, zero, pc)
    print(table(rows, headers))
    results = {
        "config": to_dict(cfg),
        "device": str(device),
        "eval_expert_episodes": len(episodes),
        "zero_action_success": zero,
        "models": [{"checkpoint": ckpt, "loaded": loaded[ev.name], **ev.summary()} for ckpt, ev in evals],
        "ensemble": [{"checkpoint": c, "loaded": loaded[f"ensemble member {i}"]}
                     for i, c in enumerate(pc.ensemble, 1)],
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(_markdown(rows, headers, pc))
    _tensorboard(out / "tb", [ev for _, ev in evals])
    print(f"\nresults: {out / 'results.json'}, {out / 'results.md'}; tensorboard: {out / 'tb'}")
    for _, ev in evals:
        for v in ev.videos:
            print(f"video: {v}")
    return 0


RUN_FILE = "plan_run.json"  # which evaluation plan.out holds (evaluation_identity)
# What one evaluation writes into plan.out (see the module docstring).
PLAN_OUTPUTS = ("results.json", "results.md", "episodes.jsonl", "tb", "videos", RUN_FILE)


def evaluation_identity(cfg, models: list[tuple[str, str]]) -> dict:
    """What makes two runs the same evaluation: the resolved config less the keys that change how it runs, not what
    it finds (``plan.workers``, ``plan.out``), and each checkpoint file's resolved path, size and modification
    time (a run directory trained further resolves to a newer checkpoint)."""
    from cjepa.config import to_dict
    from cjepa.utils.checkpoint import resolve_checkpoint

    conf = to_dict(cfg)
    for key in ("workers", "out"):
        conf["plan"].pop(key)
    files = {}
    if cfg.plan.encoder == "pixels":  # a retrained encoder in the same directory is another evaluation
        models = [*models, ("encoder", cfg.plan.encoder_checkpoint)]
    models = [*models, *((f"ensemble member {i}", c) for i, c in enumerate(cfg.plan.ensemble, 1))]
    for name, path in models:
        resolved = resolve_checkpoint(path)
        st = (resolved / "model.pt" if resolved.is_dir() else resolved).stat()
        files[name] = {"path": str(resolved), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    return json.loads(json.dumps({"config": conf, "checkpoints": files}))  # as it reads back from plan_run.json


def resumable_episodes(out: Path, identity: dict):
    """{(model, seed, index): EpisodeResult} of an interrupted run of the same evaluation in ``out``, or None when
    there is none to resume (no run, a finished one, another evaluation). ``episodes.jsonl`` is rewritten with the
    rows read, so that a line cut short by the interruption does not run into the next one appended."""
    from dataclasses import fields

    from cjepa.plan.evaluate import EpisodeResult

    run_file, rows_file = out / RUN_FILE, out / "episodes.jsonl"
    if (out / "results.json").exists() or not run_file.is_file():
        return None
    try:
        if json.loads(run_file.read_text()) != identity:
            return None
    except ValueError:
        return None
    names = {f.name for f in fields(EpisodeResult)} - {"frames"}
    done, kept = {}, []
    for line in rows_file.read_text().splitlines() if rows_file.is_file() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # cut short by the interruption: that episode is planned again
        if isinstance(row, dict) and names | {"model", "seed", "index"} <= row.keys():
            done[row["model"], row["seed"], row["index"]] = EpisodeResult(**{k: row[k] for k in names})
            kept.append(line)
    tmp = rows_file.with_name(rows_file.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, rows_file)
    return done


def set_aside_previous(out: Path) -> Path | None:
    """Move the outputs of an earlier evaluation in ``out`` to ``out/previous/<n>`` (n = 1, 2, ...), so that a rerun
    starts clean (episodes.jsonl is appended to as episodes finish; tensorboard would show both runs' curves) and
    nothing written before is lost. Returns that folder, or None when ``out`` held no outputs."""
    out = Path(out)
    found = [out / name for name in PLAN_OUTPUTS if (out / name).exists()]
    if not found:
        return None
    n = 1
    while (out / "previous" / str(n)).exists():
        n += 1
    dest = out / "previous" / str(n)
    dest.mkdir(parents=True)
    for path in found:
        os.replace(path, dest / path.name)
    return dest


def _table(evals, zero: float, pc) -> tuple[list[str], list[tuple]]:
    """The summary table: one row per model, then the zero-action bound (printed and written as results.md)."""
    headers = ["model", *[f"seed {s} %" for s in pc.seeds], "success % (mean +- std)", "95 % CI (t, over seeds)",
               "s / plan",
               "planning s / episode", f"planning s / {pc.episodes} episodes"]
    rows = []
    for _, ev in evals:
        s, ci = ev.summary(), ev.ci95()
        interval = "-" if ci.half_width is None else f"[{ci.low:.1f}, {ci.high:.1f}]"
        rows.append((ev.name, *[f"{ev.success_rate[seed]:.1f}" for seed in pc.seeds], f"{ev.mean:.1f} +- {ev.std:.1f}",
                     interval,
                     s["plan_seconds_median"], s["episode_planning_seconds_mean"],
                     s["episodes_total_planning_seconds_per_seed"]))
    rows.append(("zero action", *["-" for _ in pc.seeds], f"{zero:.1f}", "-", "-", "-", "-"))
    return headers, rows


def _markdown(rows, headers, pc) -> str:
    """results.md: the printed table as a markdown table, with what its columns mean."""
    from cjepa.utils.report import fmt

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    note = (f"Success: percent of {pc.episodes} start/goal pairs per seed (goal {pc.goal_offset} steps later) solved "
            "within "
            f"{pc.budget} steps. 95 % CI: Student-t interval of the mean over the {len(pc.seeds)} per-seed rates "
            "(none with one seed; not clipped to 0..100). Times: median CEM plan, mean planning time per episode, and "
            "per seed in total.")
    return "# Push-T planning\n\n" + "\n".join(lines) + "\n\n" + note + "\n"


def _tensorboard(log_dir, evals) -> None:
    """Per model: the cumulative success curve (percent solved within k steps, step = k), the success rate and
    median time per plan per seed (step = seed), and the recorded episodes as videos."""
    import statistics

    from torch.utils.tensorboard import SummaryWriter

    from cjepa.plan.video import log_episode_videos

    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for ev in evals:
            log_episode_videos(writer, ev.name, ev.videos)
            for k, rate in enumerate(ev.success_by_step(), start=1):
                writer.add_scalar(f"{ev.name}/success_by_step", rate, k)
            for seed, rate in ev.success_rate.items():
                writer.add_scalar(f"{ev.name}/success_rate_per_seed", rate, seed)
                per_plan = [e.plan_seconds / max(e.plans, 1) for e in ev.episodes[seed]]
                writer.add_scalar(f"{ev.name}/plan_seconds_median_per_seed", statistics.median(per_plan), seed)
