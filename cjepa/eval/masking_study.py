"""The masking study: does object-level masking make the world model better at counterfactual reasoning?

The paper's claim (Table 1; anchors 1.2): CLEVRER VQA with ALOE on C-JEPA rollouts, counterfactual
per-question accuracy rises by about 20 points from 0 to the best number of masked slots. This module runs
the whole experiment from one config:

    for every cell of study.grid (default: masking.num_masked = 0..4 x run.seed = 0, 1, 2):
        1. train the C-JEPA predictor on the observed slot store (data.*, model.*, masking.*), or take the one
           a job of a `cjepa sweep` trained (study.predictors: the grid as a SLURM array), and probe its
           attention around collisions (cjepa.eval.probe; needs vqa.annotations)
        2. roll the study splits out to rollout.target_frames (factual store)
        3. for protocol counterfactual_rollout: roll out every (video, removed object) of the counterfactual
           questions with that object's slot dropped (counterfactual store)
        4. train + evaluate one ALOE reasoner per protocol in study.protocols (vqa.*), or evaluate the one
           trained reasoner of study.reasoner on this cell's val rollouts
    then aggregate: a table (mean and 95 % Student-t interval over the replicate axes, the counterfactual
    per-question gain over the first grid value paired by replicate with its interval, and the probe's attention
    ratio partner / other objects) and a plot of accuracy per question type against the first grid axis.

Each step is skipped when its output is complete (a run's summary.json, a store's videos), so a study
resumes where it stopped and SLURM array tasks can each run one cell (``--cell i``) before a final
``--collect``. Layout: ``<run.out_dir>/<study.name>/<cell>/{predictor,probe,rollout,counterfactual,vqa_<protocol>}``,
``<cell>/results.json``, and at the top ``study_results.json``, ``study_table.md`` (the same table as
``study_table.csv``), ``study_plot.png``. Collecting also writes each finished cell's tensorboard HParams session
(``<cell>/hparams``: its grid values, every protocol's accuracies, the probe ratio, the predictor's losses), so
``tensorboard --logdir <run.out_dir>/<study.name>`` compares the cells in its HParams view.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import yaml

from cjepa.config import Config, ConfigError, dump_yaml, merge, parse_override, validate
from cjepa.data.slot_store import open_split
from cjepa.distributed.env import DistEnv, pick_device
from cjepa.eval.probe import ProbeError, run_probe, store_videos
from cjepa.eval.vqa.evaluate import jsonable
from cjepa.eval.vqa.questions import QuestionError
from cjepa.eval.vqa.reasoner import evaluate_checkpoint, train_reasoner
from cjepa.eval.vqa.rollouts import counterfactuals_for_split, load_predictor, write_factual_rollouts
from cjepa.trainer import train
from cjepa.utils.report import table, write_csv
from cjepa.utils.stats import mean_ci
from cjepa.utils.tensorboard import hparam_value, write_hparams

# (column label, metric key) of the study table and plot
STUDY_METRICS = (
    ("overall", "overall"),
    ("descriptive", "descriptive"),
    ("explanatory/q", "explanatory_per_question"),
    ("predictive/q", "predictive_per_question"),
    ("counterfactual/opt", "counterfactual_per_option"),
    ("counterfactual/q", "counterfactual_per_question"),
)
# per-cell attention probe (cjepa.eval.probe): attention to the collision partner / mean other object, last layer
PROBE_KEY = "probe_ratio"


# --------------------------------------------------------------------------------------------- grid


def grid_axes(grid: list[str]) -> list[tuple[str, list[str]]]:
    """["masking.num_masked=0,1", "run.seed=0,1,2"] -> [("masking.num_masked", ["0", "1"]), ("run.seed", [...])]."""
    axes = []
    for item in grid:
        key, values = item.split("=", 1)
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise ConfigError(f"study.grid entry {item!r} has no values")
        axes.append((key.strip(), vals))
    return axes


def expand_grid(grid: list[str]) -> list[list[str]]:
    """Cartesian product of the grid as lists of dotted overrides (first axis slowest)."""
    axes = grid_axes(grid)
    return [[f"{k}={v}" for k,
             v in zip([a[0] for a in axes], combo)] for combo in itertools.product(*[a[1] for a in axes])]


def cell_name(overrides: list[str]) -> str:
    """["masking.num_masked=2", "run.seed=1"] -> "num_masked2_seed1" (a directory name)."""
    parts = []
    for ov in overrides:
        key, value = ov.split("=", 1)
        parts.append(key.split(".")[-1] + "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in value))
    return "_".join(parts)


def cell_config(cfg: Config, overrides: list[str]) -> Config:
    c = copy.deepcopy(cfg)
    for ov in overrides:
        merge(c, parse_override(ov), "", f"study cell override '{ov}'")
    validate(c)
    return c


def study_root(cfg: Config) -> Path:
    return Path(cfg.run.out_dir) / cfg.study.name


def check_inputs(cfg: Config) -> None:
    """Fail before hours of training if the study cannot run."""
    if cfg.data.source not in ("store", "pickle"):
        raise ConfigError("the masking study trains on a slot store or pickle (data.source=store|pickle with "
                          "data.path)")
    if cfg.model.kind != "slots":
        raise ConfigError("the masking study is for slot videos (model.kind=slots)")
    for key in ("questions_train", "questions_val"):
        p = getattr(cfg.vqa, key)
        if not p or not Path(p).exists():
            raise ConfigError(f"vqa.{key} must name a question file or a video-shard split; got {p!r}")
    if "counterfactual_rollout" in cfg.study.protocols and not cfg.vqa.annotations:
        raise ConfigError("study.protocols includes counterfactual_rollout, which needs vqa.annotations (object "
                          "tables)")
    needed = reasoner_splits(cfg)
    if not needed <= set(cfg.study.splits):
        raise ConfigError(f"study.splits {cfg.study.splits} must include the reasoner's splits {sorted(needed)}")
    if cfg.study.reasoner and not Path(cfg.study.reasoner).exists():
        raise ConfigError(f"study.reasoner={cfg.study.reasoner!r} does not exist: name a reasoner checkpoint or run "
                          "dir")
    if cfg.vqa.video_len > cfg.rollout.obs_frames:
        raise ConfigError(f"vqa.video_len={cfg.vqa.video_len} exceeds rollout.obs_frames={cfg.rollout.obs_frames}")


# What must agree between a study cell and the sweep job that trained its predictor (study.predictors), besides the
# grid keys: everything that shapes the predictor and the data it learnt from.
PREDICTOR_KEYS = ("model", "masking", "data", "optim", "train.max_steps", "train.epochs", "run.seed")


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= _flat(v, key + ".") if isinstance(v, dict) else {key: v}
    return out


def _agreeing_keys(keys: list[str], flat: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in flat.items() if any(k == p or k.startswith(p + ".") for p in keys)}


def _same_value(want: object, got: object) -> bool:
    """Equal, or two spellings of one existing path (a launcher makes the job's relative data paths absolute)."""
    if want == got:
        return True
    return (isinstance(want, str) and isinstance(got, str) and bool(want) and Path(want).exists()
            and Path(want).resolve() == Path(got).resolve())


def sweep_predictor(ccfg: Config, overrides: list[str], sweep: str) -> Path:
    """The run dir of the job of the ``cjepa sweep`` folder ``sweep`` that trained this cell's predictor: the one
    whose saved config (``config.yaml``) agrees with the cell's on the grid keys and PREDICTOR_KEYS. A missing,
    ambiguous or unfinished job is a ConfigError naming the cell, so no cell silently trains or uses another."""
    record = Path(sweep) / "sweep.json"
    if not record.is_file():
        raise ConfigError(f"study.predictors={sweep!r}: no sweep.json there; give the folder `cjepa sweep` wrote")
    keys = [o.split("=", 1)[0] for o in overrides] + list(PREDICTOR_KEYS)
    want = _agreeing_keys(keys, _flat(yaml.safe_load(dump_yaml(ccfg))))
    name, matches, nearest = cell_name(overrides), [], None
    for job in json.loads(record.read_text())["jobs"]:
        cfg_file = Path(job["run_dir"]) / "config.yaml"
        if not cfg_file.is_file():
            continue  # not started yet: cannot be compared (and cannot be used)
        got = _agreeing_keys(keys, _flat(yaml.safe_load(cfg_file.read_text()) or {}))
        diff = sorted(k for k in want if not _same_value(want[k], got.get(k)))
        if not diff:
            matches.append(Path(job["run_dir"]))
        elif nearest is None or len(diff) < len(nearest[1]):
            nearest = (job["run_dir"], diff)
    if not matches:
        hint = "" if nearest is None else (
            f"; nearest {nearest[0]} differs at {', '.join(nearest[1][:3])}" + (" ..." if len(nearest[1]) > 3 else ""))
        raise ConfigError(f"study.predictors={sweep!r}: no job of that sweep trained cell {name} "
                          f"({' '.join(overrides)}){hint}")
    if len(matches) > 1:
        raise ConfigError(f"study.predictors={sweep!r}: {len(matches)} jobs match cell {name} "
                          f"({', '.join(map(str, matches))}); sweep the study's grid axes only")
    if not (matches[0] / "summary.json").is_file():
        raise ConfigError(f"study.predictors: the predictor of cell {name} ({matches[0]}) has not finished (no "
                          "summary.json); wait for the sweep, or rerun that job")
    return matches[0]


def reasoner_splits(cfg: Config) -> set[str]:
    """The splits whose rollouts the reasoners read: val only when a trained reasoner is given (study.reasoner)."""
    return {cfg.data.val_split} if cfg.study.reasoner else {cfg.data.train_split, cfg.data.val_split}


# --------------------------------------------------------------------------------------------- one cell


def _log(msg: str) -> None:
    print(f"[cjepa study] {msg}", file=sys.stderr, flush=True)


def run_cell(cfg: Config, overrides: list[str], *, progress: bool = True, log: Callable[[str], None] = _log) -> dict:
    """Steps 1-4 for one grid cell; returns (and writes) ``<cell>/results.json``."""
    import torch
    from tqdm import tqdm

    name = cell_name(overrides)
    cdir = study_root(cfg) / name
    done = cdir / "results.json"
    if done.is_file():
        log(f"{name}: done already ({done})")
        return json.loads(done.read_text())
    ccfg = cell_config(cfg, overrides)
    ccfg.run.out_dir = str(cdir)
    check_inputs(ccfg)
    device = pick_device(ccfg.run.device, DistEnv())

    # 1. predictor: trained here, or by the job of a sweep (study.predictors)
    pcfg = copy.deepcopy(ccfg)
    pcfg.run.name = "predictor"
    if ccfg.study.predictors:
        pdir = sweep_predictor(ccfg, overrides, ccfg.study.predictors)
        log(f"{name}: predictor trained by the sweep: {pdir}")
    else:
        pdir = cdir / "predictor"
        if not (pdir / "summary.json").is_file():
            log(f"{name}: training the predictor ({' '.join(overrides)})")
            train(pcfg, progress=progress)
    psum = json.loads((pdir / "summary.json").read_text())
    predictor = load_predictor(str(pdir), pcfg.model, pcfg.kernels.attention, device)
    probe = probe_cell(ccfg, predictor, cdir / "probe", device)
    log(f"{name}: attention probe: {probe}")

    # 2. factual rollouts
    fs = ccfg.data.frameskip
    for split in ccfg.study.splits:
        videos = open_split(ccfg.data.source, ccfg.data.path, split)
        bar = tqdm(total=len(videos), desc=f"{name} rollout {split}", disable=not progress, file=sys.stderr)
        new = write_factual_rollouts(
            predictor,
            videos,
            cdir / "rollout",
            split,
            obs_frames=ccfg.rollout.obs_frames,
            target_frames=ccfg.rollout.target_frames,
            frameskip=fs,
            batch_size=ccfg.rollout.batch_size,
            device=device,
            producer={"rollout_of": str(pdir)},
            progress=bar,
        )
        bar.close()
        log(f"{name}: rollout {split}: {new} videos rolled out now")

    # 3. counterfactual rollouts
    cf_stats = {}
    if "counterfactual_rollout" in ccfg.study.protocols:
        for split, qpath in ((ccfg.data.train_split, ccfg.vqa.questions_train),
                             (ccfg.data.val_split, ccfg.vqa.questions_val)):
            if split not in reasoner_splits(ccfg):
                continue
            cf_stats[split] = counterfactuals_for_split(
                predictor,
                source=ccfg.data.source,
                path=ccfg.data.path,
                split=split,
                questions=qpath,
                annotations=ccfg.vqa.annotations,
                out=cdir / "counterfactual",
                cf_frames=ccfg.vqa.cf_frames,
                frameskip=fs,
                batch_size=ccfg.rollout.batch_size,
                device=device,
                producer={"counterfactual_of": str(pdir)},
                progress=progress,
            )
            log(f"{name}: counterfactual {split}: {cf_stats[split]}")
    del predictor
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 4. reasoners: trained per protocol, or the given one evaluated
    vqa = {}
    for protocol in ccfg.study.protocols:
        vcfg = copy.deepcopy(ccfg)
        vcfg.run.name = f"vqa_{protocol}"
        vcfg.vqa.slots, vcfg.vqa.slots_source, vcfg.vqa.protocol = str(cdir / "rollout"), "store", protocol
        vcfg.vqa.cf_slots = str(cdir / "counterfactual")
        if ccfg.study.reasoner:
            vqa[protocol] = evaluate_given_reasoner(vcfg, cdir / vcfg.run.name, progress, log, name)
            continue
        vsum_path = cdir / vcfg.run.name / "summary.json"
        if not vsum_path.is_file():
            log(f"{name}: training the reasoner, protocol {protocol}")
            train_reasoner(vcfg, progress=progress)
        fe = json.loads(vsum_path.read_text())["final_eval"]
        vqa[protocol] = {k: fe.get(k) for k in ("metrics", "metrics_std", "ensemble", "data", "offsets")}

    results = {
        "cell": name,
        "overrides": overrides,
        "predictor_run": str(pdir),
        "predictor": {k: psum.get(k) for k in ("val/loss_future", "train/loss", "steps", "wall_time_s")}
        | {"rollout_mse": psum.get("final_eval", {}).get("mse"),
           "baseline_mse": psum.get("final_eval", {}).get("baseline_mse")},
        "counterfactual": cf_stats,
        "probe": probe,
        "reasoner": ccfg.study.reasoner or "trained per protocol",
        "vqa": vqa,
    }
    done.write_text(json.dumps(results, indent=1))
    return results


def evaluate_given_reasoner(vcfg: Config, out: Path, progress: bool, log: Callable[[str], None], name: str) -> dict:
    """Step 4 with ``study.reasoner``: that reasoner answers the val questions from this cell's rollouts (its own
    architecture and frame sampling, from its checkpoint); outputs and ``evaluation.json`` go to ``out``."""
    done = out / "evaluation.json"
    if not done.is_file():
        vcfg.vqa.checkpoint, vcfg.vqa.eval_split = vcfg.study.reasoner, vcfg.data.val_split
        log(f"{name}: evaluating {vcfg.study.reasoner}, protocol {vcfg.vqa.protocol}")
        res, info, _ = evaluate_checkpoint(vcfg, progress=progress, out_dir=out)
        record = {k: res.get(k) for k in ("metrics", "metrics_std", "ensemble", "offsets")}
        record |= {"data": {"val": info}, "reasoner": vcfg.study.reasoner}
        done.write_text(json.dumps(jsonable(record), indent=1))
    return json.loads(done.read_text())


def probe_cell(cfg: Config, predictor, out: Path, device) -> dict:
    """The cell predictor's attention ratio (partner / other objects) on the val split's collisions, or
    ``{"skipped": reason}`` when the data cannot say which slots collide (no annotations, no object ids)."""
    try:
        videos = store_videos(cfg.data.source, cfg.data.path, cfg.data.val_split, cfg.vqa.annotations)
        res = run_probe(predictor, videos, frameskip=cfg.data.frameskip, k=1, device=device, out=out)
    except (ProbeError, QuestionError) as err:
        return {"skipped": str(err)}
    return {k: res[k] for k in ("ratio", "ratio_ci95", "ratio_layer_mean", "ratio_per_layer", "events")}


# --------------------------------------------------------------------------------------------- aggregate


def collect(cfg: Config) -> dict:
    """Read every finished cell; aggregate over all grid axes but the first; write JSON, a table and a plot."""
    axes = grid_axes(cfg.study.grid)
    x_key = axes[0][0]
    root = study_root(cfg)
    cells = expand_grid(cfg.study.grid)
    found, missing = [], []
    for ov in cells:
        p = root / cell_name(ov) / "results.json"
        (found if p.is_file() else missing).append((ov, p))
    # (protocol, x) -> {replicate: metrics}; a replicate is the cell's other grid values (e.g. its seed)
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for ov, p in found:
        res = json.loads(p.read_text())
        write_cell_hparams(p.parent / "hparams", ov, res)
        x = dict(o.split("=", 1) for o in ov)[x_key]
        replicate = " ".join(o for o in ov if o.split("=", 1)[0] != x_key)
        ratio = (res.get("probe") or {}).get("ratio")  # cells run before the probe existed have none
        for protocol, r in res["vqa"].items():
            groups.setdefault((protocol, x), {})[replicate] = r["metrics"] | {PROBE_KEY: ratio}
    rows = []
    for (protocol, x), ms in sorted(groups.items(), key=lambda kv: (kv[0][0], _num(kv[0][1]))):
        row = {"protocol": protocol, x_key: x, "replicates": len(ms)}
        for key in [key for _, key in STUDY_METRICS] + [PROBE_KEY]:
            row[key] = summary_stat([m.get(key) for m in ms.values()])
        rows.append(row)
    order = {p: i for i, p in enumerate(cfg.study.protocols)}
    rows.sort(key=lambda r: (order.get(r["protocol"], len(order)), _num(r[x_key])))
    # The claim in one number: counterfactual per-question accuracy relative to the first grid value (M = 0), paired
    # by replicate (the same seed with and without masking), with its 95 % interval over the replicates.
    for r in rows:
        first = next(b for b in rows if b["protocol"] == r["protocol"])
        base, this = groups[(r["protocol"], first[x_key])], groups[(r["protocol"], r[x_key])]
        pairs = [(this[k].get("counterfactual_per_question"), base[k].get("counterfactual_per_question"))
                 for k in this.keys() & base.keys()]
        gains = [a - b for a, b in pairs if a is not None and b is not None]  # NaN differences are skipped below
        gain = summary_stat(gains)
        r["counterfactual_gain"] = gain["mean"]
        r["counterfactual_gain_ci95"] = gain["ci95"]
    out = {"x": x_key, "rows": rows, "cells_done": len(found), "cells_missing": [cell_name(o) for o, _ in missing]}
    root.mkdir(parents=True, exist_ok=True)
    (root / "study_results.json").write_text(json.dumps(out, indent=1))
    (root / "study_table.md").write_text(study_table(out, markdown=True) + "\n")
    headers, body = study_rows(out)
    write_csv(root / "study_table.csv", body, headers)
    if rows:
        plot_study(out, root / "study_plot.png")
    return out


def summary_stat(values: list) -> dict:
    """Mean, standard deviation, half-width of the 95 % Student-t interval over replicates (None with fewer than
    two) and count of the finite values among ``values`` (missing and NaN ones skipped)."""
    vals = [float(v) for v in values if v is not None and not _isnan(v)]
    if not vals:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    ci = mean_ci(vals)
    return {"mean": ci.mean, "std": float(np.std(vals)), "ci95": ci.half_width, "n": len(vals)}


def cell_metrics(res: dict) -> dict[str, float]:
    """A finished cell's numbers for the HParams view: ``<protocol>/<metric>`` accuracies, the probe's attention
    ratio and the predictor's final losses (absent ones left out)."""
    out = {f"{protocol}/{key}": r["metrics"].get(key) for protocol, r in res.get("vqa", {}).items()
           for _, key in STUDY_METRICS}
    pred = res.get("predictor") or {}
    mse = pred.get("rollout_mse")
    out |= {f"probe/{PROBE_KEY}": (res.get("probe") or {}).get("ratio"),
            "predictor/val_loss_future": pred.get("val/loss_future"), "predictor/train_loss": pred.get("train/loss"),
            "predictor/rollout_mse": sum(mse) / len(mse) if mse else None}
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not _isnan(v)}


def write_cell_hparams(log_dir: Path, overrides: list[str], res: dict) -> None:
    """The cell's HParams session: its grid values (``masking.num_masked``, ``run.seed``, ...) and
    :func:`cell_metrics`, rewritten whole at every collect."""
    hparams = {k: hparam_value(v) for k, v in (o.split("=", 1) for o in overrides)}
    write_hparams(log_dir, hparams, cell_metrics(res), int((res.get("predictor") or {}).get("steps") or 0))


def _num(x: str) -> float:
    try:
        return float(x)
    except ValueError:
        return math.inf


def _isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _cell(stat: Optional[dict]) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("ci95") is None:
        return f"{100 * stat['mean']:.2f}"  # one replicate: no interval to show
    return f"{100 * stat['mean']:.2f} ± {100 * stat['ci95']:.2f}"


def _ratio_cell(stat: Optional[dict]) -> str:
    """The probe's attention ratio (1.00 = no preference for the collision partner), mean ± 95 % CI half-width."""
    if not stat or stat.get("mean") is None:
        return "-"
    return f"{stat['mean']:.2f}" if stat.get("ci95") is None else f"{stat['mean']:.2f} ± {stat['ci95']:.2f}"


def study_rows(out: dict) -> tuple[list[str], list[list]]:
    """(headers, rows) of the study table: accuracies in percent, mean ± half-width of the 95 % Student-t interval
    over replicates; the counterfactual gain paired by replicate."""
    headers = ["protocol", out["x"], "n", *[label for label, _ in STUDY_METRICS], "Δ counterfactual/q",
               "attn partner/others"]

    def gain(r):
        g, ci = r.get("counterfactual_gain"), r.get("counterfactual_gain_ci95")
        return "-" if g is None else f"{100 * g:+.2f}" + ("" if ci is None else f" ± {100 * ci:.2f}")

    body = [[r["protocol"], r[out["x"]], r["replicates"], *[_cell(r[key]) for _, key in STUDY_METRICS], gain(r),
             _ratio_cell(r.get(PROBE_KEY))]
            for r in out["rows"]]
    return headers, body


def study_table(out: dict, markdown: bool = False) -> str:
    """Accuracies in percent, mean ± 95 % CI half-width over replicates (:func:`study_rows`)."""
    headers, body = study_rows(out)
    if not markdown:
        return table(body, headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def plot_study(out: dict, path: Path) -> None:
    """One panel per protocol: accuracy per question type vs the first grid axis, error bars = 95 % CI over
    replicates (none for a single replicate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(r["protocol"] for r in out["rows"]))  # in study.protocols order
    fig, axs = plt.subplots(1, len(protocols), figsize=(5.2 * len(protocols), 3.8), squeeze=False, sharey=True)
    for ax, protocol in zip(axs[0], protocols):
        rows = [r for r in out["rows"] if r["protocol"] == protocol]
        xs = [_num(r[out["x"]]) for r in rows]
        for label, key in STUDY_METRICS:
            pts = [(x, r[key]["mean"], r[key]["ci95"] or 0.0) for x, r in zip(xs, rows) if r[key]["mean"] is not None]
            if pts:
                ax.errorbar(
                    [p[0] for p in pts],
                    [100 * p[1] for p in pts],
                    yerr=[100 * p[2] for p in pts],
                    marker="o",
                    capsize=3,
                    label=label,
                )
        ax.set_xticks(sorted(set(xs)))
        ax.set_title(f"protocol: {protocol}")
        ax.set_xlabel(out["x"])
        ax.grid(alpha=0.3)
    axs[0][0].set_ylabel("accuracy (%)")
    axs[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
