"""A grid or list of overrides -> one SLURM job array (submitit ``executor.batch()``) -> one summary table.

``python launchers/sweep.py -c configs/smoke/cpu.yaml masking.num_masked=0,1,2,3,4 run.seed=0,1,2`` (or ``cjepa
sweep ...``): an override with several comma-separated values is an axis; the grid is their product (``--zip``
pairs them instead), single values apply to every job, ``--list FILE`` adds a YAML list of override sets. Every
job's config is resolved and validated (including the batch split over the job's ranks) before anything is
submitted; ``--dry-run`` stops there and prints them.

Layout: ``<run.out_dir>/<sweep name>/`` holds one run dir per job (``000_num_masked=0_seed=0``, ...) and ``job/``
(one code snapshot for the whole array, each job's resolved config under ``configs/``, submitit logs,
``sweep.json``). The command waits for the array and prints every job's final metrics; ``--summary DIR`` prints
that table again later from the run dirs alone. Either also writes the table as CSV (``--csv FILE``) and, for
every finished job, a tensorboard HParams session (its swept values and final metrics, ``<run dir>/tb/hparams``),
so ``tensorboard --logdir <sweep dir>`` compares the jobs in its HParams view.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as a script: python launchers/sweep.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from cjepa.cli import main as cli_main  # noqa: E402
from cjepa.config import Config, ConfigError, derive, dump_yaml, to_dict  # noqa: E402
from cjepa.errors import UserError  # noqa: E402
from cjepa.trainer import run_dir_of  # noqa: E402
from cjepa.utils.report import table, write_csv  # noqa: E402
from cjepa.utils.tensorboard import hparam_value, write_hparams  # noqa: E402
from launchers.clusters import ClusterError, executor_parameters, get_preset  # noqa: E402
from launchers.job import TrainJob
from launchers.rendezvous import world_size  # noqa: E402
from launchers.submit import job_result, make_executor, resolve_config, write_config, write_job_folder  # noqa: E402

# --------------------------------------------------------------------------------------------- expansion


def split_values(text: str) -> list[str]:
    """'0,1,[2,3],"a,b"' -> ['0', '1', '[2,3]', '"a,b"']: commas inside brackets, braces or quotes stay."""
    parts, cur, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    if quote or depth:
        raise ConfigError(f"unbalanced brackets or quotes in sweep values {text!r}")
    values = [p.strip() for p in parts]
    if any(v == "" for v in values):
        raise ConfigError(f"empty value in sweep values {text!r}")
    return values


def parse_axis(spec: str) -> tuple[str, list[str]]:
    if "=" not in spec:
        raise ConfigError(f"sweep override {spec!r} must look like section.key=value or section.key=v1,v2,...")
    key, raw = spec.split("=", 1)
    key = key.strip()
    if key.startswith("launch.") or key == "launch":
        values = split_values(raw)
        if len(values) > 1:
            raise ConfigError(f"{key}: launch settings are shared by the whole job array and cannot be swept")
    return key, split_values(raw)


def expand(specs: list[str], zip_axes: bool = False) -> list[list[str]]:
    """Override specs -> one override list per job (grid product, or zipped axes)."""
    axes = [parse_axis(s) for s in specs]
    keys = [k for k, _ in axes]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ConfigError(f"sweep key given twice: {', '.join(sorted(dup))}")
    if zip_axes:
        lengths = {len(v) for _, v in axes if len(v) > 1}
        if len(lengths) > 1:
            raise ConfigError(f"--zip needs every swept key to have the same number of values, got {sorted(lengths)}")
        n = lengths.pop() if lengths else 1
        return [[f"{k}={v[i] if len(v) > 1 else v[0]}" for k, v in axes] for i in range(n)]
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*(v for _, v in axes))]


def load_override_list(path: str) -> list[list[str]]:
    """A YAML list whose items are mappings ({optim.lr: 3e-4, ...}) or lists of 'key=value' strings."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"sweep list {path}: {err}") from err
    if not isinstance(data, list) or not data:
        raise ConfigError(f"sweep list {path} must be a non-empty YAML list of override sets")
    sets = []
    for i, item in enumerate(data):
        if isinstance(item, dict):
            sets.append([f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in item.items()])
        elif isinstance(item, list) and all(isinstance(s, str) and "=" in s for s in item):
            sets.append(list(item))
        else:
            raise ConfigError(f"sweep list {path}, item {i}: expected a mapping or a list of 'key=value' strings")
    return sets


# --------------------------------------------------------------------------------------------- planning


@dataclass
class SweepJob:
    index: int
    overrides: list[str]  # the ones that differ between jobs (plus the list file's)
    cfg: Config
    config_file: Optional[Path] = None
    job: Any = None

    @property
    def run_dir(self) -> Path:
        return run_dir_of(self.cfg)


def _tag(overrides: list[str]) -> str:
    short = "_".join(o.split("=", 1)[0].split(".")[-1] + "=" + o.split("=", 1)[1] for o in overrides)
    return re.sub(r"[^A-Za-z0-9=._+-]+", "-", short)[:80].strip("-")


def plan(config_paths: list[str], specs: list[str], *, name: str, zip_axes: bool = False,
         list_file: Optional[str] = None) -> list[SweepJob]:
    """Every job's resolved, validated config (the batch split over the job's ranks included)."""
    grid = expand(specs, zip_axes)
    sets = [g + extra for g in grid for extra in (load_override_list(list_file) if list_file else [[]])]
    swept = {o.split("=", 1)[0] for s in sets for o in s if sum(1 for t in sets if o not in t) > 0}
    jobs = []
    for i, overrides in enumerate(sets):
        varying = [o for o in overrides if o.split("=", 1)[0] in swept]
        run_name = f"{name}/{i:03d}" + (f"_{_tag(varying)}" if varying else "")
        try:
            cfg = resolve_config(config_paths, overrides + [f"run.name={run_name}"])
            derive(cfg, world_size(cfg.launch))
        except ConfigError as err:
            raise ConfigError(f"sweep job {i} ({' '.join(overrides)}): {err}") from err
        jobs.append(SweepJob(i, varying, cfg))
    launches = {json.dumps(to_dict(j.cfg.launch), sort_keys=True) for j in jobs}
    if len(launches) > 1:
        raise ConfigError("the sweep's jobs ask for different launch settings; a job array shares one")
    return jobs


def sweep_dir(jobs: list[SweepJob]) -> Path:
    return jobs[0].run_dir.parent


# --------------------------------------------------------------------------------------------- submission


def submit(jobs: list[SweepJob], name: str) -> Path:
    """One code snapshot and one job array for all jobs; writes sweep.json; returns the job folder."""
    launch = jobs[0].cfg.launch
    preset = get_preset(launch.cluster)
    job_dir = Path(launch.folder).resolve() if launch.folder else sweep_dir(jobs) / "job"
    snapshot = launch.snapshot and preset.executor != "debug"
    first, rest = jobs[0], jobs[1:]
    first.config_file, code_dir = write_job_folder(job_dir, first.cfg, snapshot=snapshot,
                                                   name=f"configs/{first.index:03d}.yaml")
    for j in rest:
        j.config_file = write_config(job_dir / "configs" / f"{j.index:03d}.yaml", j.cfg)
    executor, params = make_executor(launch, job_dir / "logs", name=name, code_dir=code_dir)
    with executor.batch():
        for j in jobs:
            j.job = executor.submit(TrainJob(str(j.config_file), None if code_dir is None else str(code_dir)))
    record = {
        "name": name, "submitted_at": time.time(), "cluster": launch.cluster, "parameters": params,
        "jobs": [{"index": j.index, "overrides": j.overrides, "run_dir": str(j.run_dir), "config": str(j.config_file),
                  "job_id": j.job.job_id} for j in jobs],
    }
    (sweep_dir(jobs) / "sweep.json").write_text(json.dumps(record, indent=1, default=str))
    return job_dir


def wait(jobs: list[SweepJob], poll_s: float = 2.0) -> dict[int, dict[str, Any]]:
    """Block until every job ended; rank 0's summary per job, or {'error': first line} for a failed one."""
    from submitit.local.debug import DebugJob
    from tqdm import tqdm

    outcome: dict[int, dict[str, Any]] = {}
    with tqdm(total=len(jobs), desc="sweep", file=sys.stderr, dynamic_ncols=True) as bar:
        while len(outcome) < len(jobs):
            for j in jobs:
                # a debug job runs (in this process) when its result is asked for
                if j.index in outcome or not (isinstance(j.job, DebugJob) or j.job.done(force_check=True)):
                    continue
                try:
                    outcome[j.index] = job_result(j.job)
                except Exception as err:  # noqa: BLE001 - a failed job is a row in the table, not a crash
                    lines = [ln for ln in str(err).splitlines() if ln.strip() and not ln.startswith("-")]
                    outcome[j.index] = {"error": lines[-1] if lines else type(err).__name__}
                bar.update(1)
            if len(outcome) < len(jobs):
                time.sleep(poll_s)
    return outcome


# --------------------------------------------------------------------------------------------- summary

METRICS = ("steps", "train/loss", "val/loss_future")


def summary_row(index: int, overrides: list[str], job_id: Any, result: Optional[dict]) -> list[Any]:
    blanks = ["-"] * (len(METRICS) + 2)
    if result is None:
        return [index, " ".join(overrides) or "-", job_id, "no summary (running, or failed: see logs)", *blanks]
    if "error" in result:
        return [index, " ".join(overrides) or "-", job_id, f"FAILED: {result['error'][:60]}", *blanks]
    mse = (result.get("final_eval") or {}).get("mse")
    return [index, " ".join(overrides) or "-", job_id, "COMPLETED", *[result.get(k, "-") for k in METRICS],
            sum(mse) / len(mse) if mse else "-", result.get("wall_time_s", "-")]


SUMMARY_HEADERS = ["#", "overrides", "job", "state", *METRICS, "rollout mse", "wall s"]


def read_sweep(sweep_path: Path) -> list[tuple[dict, Optional[dict]]]:
    """(job record of sweep.json, its run's summary.json or None while there is none) for every job."""
    if not (Path(sweep_path) / "sweep.json").is_file():
        raise UserError(f"--summary {sweep_path}: no sweep.json there; give the folder a submitted sweep wrote")
    record = json.loads((Path(sweep_path) / "sweep.json").read_text())
    jobs = []
    for j in record["jobs"]:
        summary = Path(j["run_dir"]) / "summary.json"
        jobs.append((j, json.loads(summary.read_text()) if summary.is_file() else None))
    return jobs


def summary_table(sweep_path: Path, csv_path: Optional[str] = None) -> tuple[str, int]:
    """The table of a submitted sweep from disk (sweep.json + each run's summary.json) and the count of jobs
    without a summary; ``csv_path`` also gets the table as CSV."""
    jobs = read_sweep(sweep_path)
    return results_table(jobs, csv_path), sum(result is None for _, result in jobs)


def results_table(jobs: list[tuple[dict, Optional[dict]]], csv_path: Optional[str] = None) -> str:
    rows = [summary_row(j["index"], j["overrides"], j["job_id"], result) for j, result in jobs]
    if csv_path:
        write_csv(csv_path, rows, SUMMARY_HEADERS)
    return table(rows, SUMMARY_HEADERS)


def final_metrics(result: dict) -> dict[str, float]:
    """A finished job's metrics for the HParams view: the table's numeric columns under ``final/``."""
    mse = (result.get("final_eval") or {}).get("mse")
    values = {**{k: result.get(k) for k in METRICS}, "rollout_mse": sum(mse) / len(mse) if mse else None,
              "wall_time_s": result.get("wall_time_s")}
    return {f"final/{k}": float(v) for k, v in values.items() if isinstance(v, (int, float))}


def write_hparams_sessions(jobs: list[tuple[dict, Optional[dict]]]) -> int:
    """One HParams session per finished job in ``<run dir>/tb/hparams`` (rewritten, not appended, when the table
    is printed again): its swept keys and values, and :func:`final_metrics`. Returns how many were written."""
    written = 0
    for j, result in jobs:
        if result is None or "error" in result:
            continue
        hparams = {k: hparam_value(v) for k, v in (o.split("=", 1) for o in j["overrides"])}
        step = int(result.get("steps", 0))
        write_hparams(Path(j["run_dir"]) / "tb" / "hparams", hparams, final_metrics(result), step)
        written += 1
    return written


def run_from_args(args) -> int:
    """`cjepa sweep` / `python launchers/sweep.py`."""
    if args.summary:
        jobs = read_sweep(Path(args.summary))
        print(results_table(jobs, args.csv))
        sessions = write_hparams_sessions(jobs)
        print(f"tensorboard HParams: {sessions} finished job(s); tensorboard --logdir {args.summary}")
        return 1 if any(result is None for _, result in jobs) else 0
    name = args.name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    specs = list(args.overrides) + ([f"launch.cluster={args.cluster}"] if args.cluster else [])
    try:
        jobs = plan(list(args.config), specs, name=name, zip_axes=args.zip, list_file=args.list)
        # The preset and its limits (the jobs share one launch section), as submitting checks them: a dry run
        # must not pass what a real sweep refuses.
        executor_parameters(jobs[0].cfg.launch, get_preset(jobs[0].cfg.launch.cluster), name=name)
    except (ConfigError, ClusterError) as err:
        print(f"sweep: {err}", file=sys.stderr)
        return 2
    la = jobs[0].cfg.launch
    print(f"sweep {name}: {len(jobs)} jobs x {world_size(la)} task(s) on {la.cluster} -> "
          f"{sweep_dir(jobs)}")
    if args.dry_run:
        print(table([[j.index, " ".join(j.overrides) or "-", j.run_dir] for j in jobs], ["#", "overrides", "run dir"]))
        if args.show_config:
            for j in jobs:
                print(f"\n# ---- job {j.index}: {' '.join(j.overrides)}\n{dump_yaml(j.cfg)}")
        print("dry run: configs valid, nothing submitted")
        return 0
    t0 = time.time()
    try:
        job_dir = submit(jobs, name)
    except ClusterError as err:
        print(f"sweep: {err}", file=sys.stderr)
        return 2
    print(f"job array {jobs[0].job.job_id.split('_')[0]} submitted; logs in {job_dir / 'logs'}")
    if args.no_wait:
        print(f"table later: cjepa sweep --summary {sweep_dir(jobs)}")
        return 0
    outcome = wait(jobs)
    done = [({"index": j.index, "overrides": j.overrides, "job_id": j.job.job_id, "run_dir": str(j.run_dir)},
             outcome[j.index]) for j in jobs]
    print(results_table(done, args.csv))
    write_hparams_sessions(done)
    failed = sum("error" in outcome[j.index] for j in jobs)
    print(f"sweep {name}: {len(jobs) - failed}/{len(jobs)} jobs completed in {time.time() - t0:.1f} s")
    return 1 if failed else 0


def main(argv: Optional[list[str]] = None) -> int:
    """``python launchers/sweep.py ARGS`` is ``cjepa sweep ARGS``: one parser, one place for the flags."""
    return cli_main(["sweep", *(sys.argv[1:] if argv is None else argv)])

if __name__ == "__main__":
    sys.exit(main())
