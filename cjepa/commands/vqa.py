"""cjepa vqa: CLEVRER-style VQA with the ALOE reasoner on slot videos, and the masking study.

Actions:
  train           train the reasoner on slot videos + CLEVRER-schema questions (vqa.*), evaluate on val
  evaluate        evaluate a trained reasoner (vqa.checkpoint) on vqa.eval_split under vqa.protocol
  counterfactual  roll out "object removed" videos for the counterfactual questions (vqa.predictor_checkpoint)
  score           score a CLEVRER-format prediction file against a question file
  study           the masking study: predictors x masked slots x seeds -> rollout -> VQA -> table + plot
  make-billiards  write the built-in billiards VQA world (slot store with object ids, questions, annotations)
  demo            make-billiards + a small study on it, CPU, minutes
"""

from __future__ import annotations

import sys

from cjepa.cli import add_config_args

ACTIONS = {
    "train": "train the ALOE reasoner (vqa.*) and evaluate it on the val questions",
    "evaluate": "evaluate a reasoner checkpoint (vqa.checkpoint) under vqa.protocol",
    "counterfactual": "build the counterfactual slot store (object-removed rollouts) for "
                      "vqa.protocol=counterfactual_rollout",
    "score": "score a CLEVRER-format prediction file (accuracies as the original scoring script)",
    "study": "masking study: train predictors over study.grid, roll out, train/evaluate reasoners, table + plot",
    "make-billiards": "write the built-in billiards VQA world: slot store + object ids, questions, annotations",
    "demo": "the masking study end to end on a small billiards VQA world, on CPU",
}


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="vqa_action", metavar="ACTION")
    for name, help_text in ACTIONS.items():
        a = sub.add_parser(name, help=help_text, description=help_text)
        if name == "score":
            a.add_argument("--questions", required=True, help="labelled question JSON (CLEVRER schema)")
            a.add_argument("--predictions", required=True, help="predictions in CLEVRER's submission format")
            continue
        if name == "make-billiards":
            a.add_argument("--out", required=True, help="directory to write (slots/, questions/, annotations.json)")
            a.add_argument("--train", type=int, default=512, help="training videos")
            a.add_argument("--val", type=int, default=128, help="validation videos")
            a.add_argument("--observed", type=int, default=128, help="observed frames stored per video")
            a.add_argument("--total", type=int, default=160,
                           help="simulated frames (predictive questions look past --observed)")
            a.add_argument("--min-objects", type=int, default=3)
            a.add_argument("--max-objects", type=int, default=6, help="at most --slots and 8 (the colours)")
            a.add_argument("--slots", type=int, default=7)
            a.add_argument("--slot-dim", type=int, default=128)
            a.add_argument("--seed", type=int, default=0)
            a.add_argument("--oracle", action="store_true",
                           help="also write <out>/oracle: true slots of every simulated frame and the simulator's "
                                "re-run "
                                "without each object (vqa.protocol=oracle, the reasoner's ceiling)")
            continue
        add_config_args(a)
        a.add_argument("--no-progress", action="store_true", help="no progress bars")
        if name == "counterfactual":
            a.add_argument("--splits", default="",
                           help="comma-separated splits (default: data.train_split,data.val_split)")
        if name == "study":
            g = a.add_mutually_exclusive_group()
            g.add_argument("--cell", type=int, default=None,
                           help="run only cell I of the grid (e.g. $SLURM_ARRAY_TASK_ID)")
            g.add_argument("--list", action="store_true", help="list the grid cells and their state, run nothing")
            g.add_argument("--collect", action="store_true",
                           help="only aggregate finished cells into the table and plot")
        if name == "demo":
            a.add_argument("--world", default="",
                           help="billiards world directory (default: <run.out_dir>/billiards_vqa)")
    p.set_defaults(_vqa_parser=p)


def run(args) -> int:
    action = getattr(args, "vqa_action", None)
    if not action:
        args._vqa_parser.print_help()
        return 0
    return {
        "train": _train,
        "evaluate": _evaluate,
        "counterfactual": _counterfactual,
        "score": _score,
        "study": _study,
        "make-billiards": _make_billiards,
        "demo": _demo,
    }[action](args)


# --------------------------------------------------------------------------------------------- tables


def metrics_table(result: dict) -> str:
    """Headline accuracies (%): mean ± spread over evaluation offsets, and the offset-ensemble answers."""
    from cjepa.eval.vqa.metrics import headline
    from cjepa.utils.report import table

    m, s, e = result["metrics"], result.get("metrics_std", {}), result.get("ensemble", {})

    def pct(v):
        return "-" if v is None or v != v else f"{100 * v:.2f}"

    rows = [(label, pct(m.get(key)), pct(s.get(key)), pct(e.get(key))) for label, key in headline(m)]
    counts = ", ".join(f"{t} {int(m.get(f'{t}_questions') or 0)}" for t in ("descriptive", "explanatory", "predictive",
                                                                            "counterfactual"))
    return (
        table(rows, ["metric (%)", f"mean over {len(result.get('offsets', []))} offsets", "std", "offset ensemble"])
        + f"\nquestions: {counts}"
    )


# --------------------------------------------------------------------------------------------- actions


def _train(args) -> int:
    from cjepa.config import load_config
    from cjepa.distributed.env import detect_env
    from cjepa.eval.vqa.reasoner import train_reasoner
    from cjepa.trainer import EXIT_PREEMPTED, NonFiniteLoss, Preempted

    cfg = load_config(args.config, args.overrides)
    try:
        summary = train_reasoner(cfg, progress=not args.no_progress)
    except NonFiniteLoss as err:
        print(f"cjepa vqa train: {err}", file=sys.stderr)
        return 1
    except Preempted as err:
        print(f"cjepa vqa train: {err}", file=sys.stderr)
        return EXIT_PREEMPTED
    if detect_env().is_main:
        fe = summary["final_eval"]
        print(metrics_table(fe))
        _print_cf_usage(fe.get("data", {}).get("val", {}))
        print(f"\nprotocol {fe['protocol']}; run directory {summary['run_dir']}; checkpoint {summary['checkpoint']}")
        print(f"tensorboard --logdir {summary['tensorboard']}")
    return 0


def _print_cf_usage(info: dict) -> None:
    if "cf_questions" in info:
        print(
            "counterfactual questions answered from a counterfactual rollout: "
            f"{info['cf_from_rollout']}/{info['cf_questions']} "
            f"(the rest from the factual video; removed-object resolution: {info.get('cf_resolution')})"
        )


def _evaluate(args) -> int:
    from cjepa.config import load_config
    from cjepa.eval.vqa.evaluate import jsonable
    from cjepa.eval.vqa.reasoner import evaluate_checkpoint

    cfg = load_config(args.config, args.overrides)
    res, info, out_dir = evaluate_checkpoint(cfg, progress=not args.no_progress)
    if info["labelled"]:
        print(metrics_table(jsonable(res)))
    else:
        print(f"{cfg.vqa.questions_val} has no answers: wrote predictions only (CLEVRER submission format)")
    _print_cf_usage(info)
    print(f"\nprotocol {cfg.vqa.protocol}, split {cfg.vqa.eval_split}; results in {out_dir}")
    return 0


def _counterfactual(args) -> int:
    from cjepa.config import ConfigError, load_config
    from cjepa.distributed.env import DistEnv, pick_device
    from cjepa.eval.vqa.rollouts import counterfactuals_for_split, load_predictor
    from cjepa.utils.report import table

    cfg = load_config(args.config, args.overrides)
    v = cfg.vqa
    if not v.cf_slots:
        raise ConfigError("vqa.cf_slots must name the counterfactual store to write")
    if not v.annotations:
        raise ConfigError("vqa.annotations is required: object tables that name the removed objects")
    if cfg.data.source not in ("store", "pickle") or not cfg.data.path:
        raise ConfigError("data.source=store and data.path: the observed slot store with per-slot object ids")
    device = pick_device(cfg.run.device, DistEnv())
    predictor = load_predictor(v.predictor_checkpoint, cfg.model, cfg.kernels.attention, device)
    splits = [s for s in (args.splits.split(",") if args.splits else [cfg.data.train_split, cfg.data.val_split]) if s]
    questions = {cfg.data.train_split: v.questions_train, cfg.data.val_split: v.questions_val}
    rows = []
    for split in splits:
        if not questions.get(split):
            raise ConfigError(f"no question file for split {split!r} (vqa.questions_train / vqa.questions_val)")
        st = counterfactuals_for_split(
            predictor, source=cfg.data.source, path=cfg.data.path, split=split, questions=questions[split],
            annotations=v.annotations, out=v.cf_slots, cf_frames=v.cf_frames, frameskip=cfg.data.frameskip,
            batch_size=cfg.rollout.batch_size, device=device, producer={"counterfactual_of": v.predictor_checkpoint},
            progress=not args.no_progress,
        )
        rows.append((split, st["questions"], st["planned"], st["videos"], st["videos_new"],
                     st["removed object unresolved"], st["object never bound to a slot"], st["no slots for the video"]))
    print(table(rows,
                ["split", "cf questions", "with a rollout", "cf videos", "new", "object unresolved",
                 "object not in slots", "no slots"]))
    print(f"\ncounterfactual store: {v.cf_slots}")
    return 0


def _score(args) -> int:
    import json
    from pathlib import Path

    from cjepa.eval.vqa.metrics import score_predictions
    from cjepa.eval.vqa.questions import load_question_file

    questions = load_question_file(args.questions)
    p = Path(args.predictions)
    if not p.is_file():
        print(f"cjepa vqa score: prediction file not found: {p}", file=sys.stderr)
        return 2
    try:
        predictions = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        from cjepa.errors import UserError

        raise UserError(f"prediction file {p} is not valid JSON: {err}") from err
    m = score_predictions(questions, predictions)
    print(metrics_table({"metrics": m, "offsets": []}))
    print(f"missing predictions (counted wrong): {int(m['missing'])}")
    return 0


def _study(args) -> int:
    from cjepa.config import load_config
    from cjepa.eval.masking_study import cell_name, collect, expand_grid, run_cell, study_root, study_table
    from cjepa.utils.report import table

    cfg = load_config(args.config, args.overrides)
    cells = expand_grid(cfg.study.grid)
    root = study_root(cfg)
    if args.list:
        print(table([(i, cell_name(c), " ".join(c), "done" if (root / cell_name(c) / "results.json").is_file() else "-")
                     for i, c in enumerate(cells)], ["cell", "name", "overrides", "state"]))
        return 0
    if args.cell is not None:
        if not 0 <= args.cell < len(cells):
            print(f"cjepa vqa study: --cell {args.cell} out of range 0..{len(cells) - 1}", file=sys.stderr)
            return 2
        run_cell(cfg, cells[args.cell], progress=not args.no_progress)
        print(f"cell {args.cell} ({cell_name(cells[args.cell])}) done: "
              f"{root / cell_name(cells[args.cell]) / 'results.json'}")
        return 0
    if not args.collect:
        for c in cells:
            run_cell(cfg, c, progress=not args.no_progress)
    out = collect(cfg)
    print(study_table(out))
    if out["cells_missing"]:
        print(f"\ncells not finished: {', '.join(out['cells_missing'])}")
    print(f"\naccuracy in %, mean ± 95 % interval over replicates; results: {root}/study_results.json, study_table.md, "
          f"study_table.csv, study_plot.png; tensorboard HParams: tensorboard --logdir {root}")
    return 0


def _make_billiards(args) -> int:
    from tqdm import tqdm

    from cjepa.data.billiards_vqa import write_billiards_vqa
    from cjepa.utils.report import table

    bar = tqdm(total=args.train + args.val, desc="billiards VQA world", file=sys.stderr)
    try:
        summary = write_billiards_vqa(
            args.out, {"train": args.train, "val": args.val}, num_slots=args.slots, slot_dim=args.slot_dim,
            observed_frames=args.observed, total_frames=args.total, min_objects=args.min_objects,
            max_objects=args.max_objects,
            seed=args.seed, oracle=args.oracle, progress=bar,
        )
    except ValueError as err:
        print(f"cjepa vqa make-billiards: {err}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    types = ("descriptive", "explanatory", "predictive", "counterfactual")
    print(table([(s, d["videos"], *[d.get(t, 0) for t in types]) for s, d in summary.items()],
                ["split", "videos", *types]))
    print(f"\nslot store {args.out}/slots, questions {args.out}/questions/<split>.json, annotations "
          f"{args.out}/annotations.json")
    if args.oracle:
        print(f"oracle: vqa.protocol=oracle vqa.slots={args.out}/oracle/slots "
              f"vqa.cf_slots={args.out}/oracle/counterfactual")
    return 0


def _demo(args) -> int:
    import time
    from pathlib import Path

    from cjepa.config import load_config
    from cjepa.data.billiards_vqa import write_billiards_vqa
    from cjepa.eval.masking_study import collect, expand_grid, run_cell, study_root, study_table
    from cjepa.paths import config_path

    cfg = load_config([str(config_path("billiards/vqa_demo.yaml")), *args.config], args.overrides)
    world = Path(args.world or Path(cfg.run.out_dir) / "billiards_vqa")
    t0 = time.time()
    if not (world / "annotations.json").is_file():
        write_billiards_vqa(world,
                            {cfg.data.train_split: cfg.data.synthetic.num_train,
                             cfg.data.val_split: cfg.data.synthetic.num_val},
                            num_slots=cfg.model.num_slots, slot_dim=cfg.model.slot_dim,
                            observed_frames=cfg.rollout.obs_frames,
                            total_frames=cfg.rollout.target_frames, min_objects=cfg.data.synthetic.min_objects,
                            max_objects=cfg.data.synthetic.max_objects, noise=cfg.data.synthetic.noise,
                            seed=cfg.data.synthetic.seed)
    cfg.data.source, cfg.data.path = "store", str(world / "slots")
    cfg.vqa.questions_train = str(world / "questions" / f"{cfg.data.train_split}.json")
    cfg.vqa.questions_val = str(world / "questions" / f"{cfg.data.val_split}.json")
    cfg.vqa.annotations = str(world / "annotations.json")
    for c in expand_grid(cfg.study.grid):
        run_cell(cfg, c, progress=not args.no_progress)
    out = collect(cfg)
    print(study_table(out))
    print(f"\naccuracy in %, mean ± 95 % interval over replicates; {time.time() - t0:.0f} s; "
          f"results in {study_root(cfg)}")
    return 0
