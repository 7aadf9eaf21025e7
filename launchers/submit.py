"""One config (+ overrides) -> one SLURM job, through submitit.

``python launchers/submit.py -c configs/smoke/cpu.yaml launch.cluster=local`` (or ``cjepa submit ...``) resolves
and validates the config, then prepares a job folder (``<run dir>/job`` unless ``launch.folder`` is set):

* ``config.yaml``: the fully resolved config the job trains (later edits of configs/ cannot change it);
* ``code/``: a snapshot of the repository's tracked files; the job imports cjepa from there (PYTHONPATH), so code
  edited after submission cannot change a queued or requeued job;
* ``git.txt`` (SHA, dirty state, diff stat) and ``diff.patch`` (uncommitted changes of tracked files);
* ``logs/``: submitit's pickles and the job's stdout/stderr; ``job.json``: job id and the SLURM parameters.

The job runs :class:`launchers.job.TrainJob` on every task (``launch.tasks_per_node`` x ``launch.nodes``
processes; the trainer reads rank and world from SLURM's variables) inside its code snapshot; relative paths in
the config that exist at submission are resolved against the submission directory first. It is checkpointable:
preemption and time-outs requeue it and it resumes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as a script: python launchers/submit.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cjepa.cli import main as cli_main  # noqa: E402
from cjepa.config import Config, dump_yaml, load_config  # noqa: E402
from cjepa.trainer import run_dir_of  # noqa: E402
from cjepa.utils.report import print_train_summary, table  # noqa: E402
from cjepa.utils.run_dir import SNAPSHOT_FILE  # noqa: E402
from launchers.clusters import ClusterError, ClusterPreset, executor_parameters, get_preset  # noqa: E402
from launchers.job import PREEMPT_SIGNAL, TrainJob  # noqa: E402
from launchers.rendezvous import describe_rendezvous  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------------------------- job folder


def _git(repo: Path, *args: str) -> Optional[str]:
    try:
        res = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


KERNELS_IMPORT_NAME = "cjepa_kernels"


def tracked_files(repo: Path = REPO) -> list[str]:
    """Files git tracks in `repo` (relative paths); without git, the packages and configs of an install."""
    out = _git(repo, "ls-files", "-z")
    if out is not None:
        return [f for f in out.split("\0") if f]
    found = []
    for top in ("cjepa", "kernels", "launchers", "configs"):
        for p in (repo / top).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts:
                found.append(str(p.relative_to(repo)))
    if not found:
        raise FileNotFoundError(f"{repo} is neither a git checkout nor an installed cjepa tree: nothing to snapshot")
    return found


def snapshot_code(dest: Path, repo: Path = REPO) -> Path:
    """Copy the tracked files (as they are in the working tree) to `dest`, with SNAPSHOT.json naming the commit
    (the run's git.txt and checkpoints record it; the snapshot itself is no git checkout); returns `dest`."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in tracked_files(repo):
        src = repo / rel
        if not src.is_file():  # tracked but deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    # kernels/ is imported as cjepa_kernels (setup.py's package_dir); the link makes the job import the snapshot's
    # kernels from PYTHONPATH, not the installed checkout's.
    if (dest / "kernels").is_dir():
        (dest / KERNELS_IMPORT_NAME).symlink_to("kernels", target_is_directory=True)
    git = git_state(repo)
    (dest / SNAPSHOT_FILE).write_text(json.dumps({"sha": git["sha"], "dirty": git["dirty"], "source": str(repo)}))
    untracked = [f for f in (_git(repo, "ls-files", "--others", "--exclude-standard") or "").splitlines()
                 if f.endswith(".py") and f.split("/")[0] in ("cjepa", "kernels", "launchers")]
    if untracked:
        print(f"warning: untracked source files are not in the snapshot (git add them): {', '.join(untracked[:5])}",
              file=sys.stderr)
    return dest


def git_state(repo: Path = REPO) -> dict[str, Any]:
    sha = (_git(repo, "rev-parse", "HEAD") or "").strip() or "unknown"
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return {
        "sha": sha,
        "dirty": bool(status.strip()) if status is not None else "unknown",
        "diff_stat": (_git(repo, "diff", "--stat", "HEAD") or "").strip(),
        "diff": _git(repo, "diff", "HEAD") or "",
    }


def write_config(path: Path, cfg: Config) -> Path:
    """The fully resolved config a job trains (loading it gives back `cfg`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(cfg))
    return path


def write_job_folder(job_dir: Path, cfg: Config, *, snapshot: bool,
                     name: str = "config.yaml") -> tuple[Path, Optional[Path]]:
    """Resolved config, git state and (optionally) the code snapshot; returns (config file, code dir)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    config_file = write_config(job_dir / name, cfg)
    git = git_state()
    (job_dir / "git.txt").write_text(f"sha: {git['sha']}\ndirty: {git['dirty']}\n{git['diff_stat']}\n")
    (job_dir / "diff.patch").write_text(git["diff"])
    code_dir = snapshot_code(job_dir / "code") if snapshot else None
    return config_file, code_dir


# --------------------------------------------------------------------------------------------- executor


def job_setup_lines(code_dir: Optional[Path]) -> tuple[str, ...]:
    """Shell lines of the sbatch script: the time-limit signal submitit listens to, and the snapshot as working
    directory and first on PYTHONPATH. Both are needed: ``python -m`` puts the working directory first on
    sys.path, so a job started from a checkout would otherwise import the checkout, not the snapshot."""
    # sbatch passes the submitting shell's environment on; rank variables from a torchrun or srun session there
    # must not make the job's tasks believe they are other ranks: inside the job they come from SLURM only.
    lines = [f"unset {' '.join(RANK_VARIABLES)}", f"export SUBMITIT_PREEMPT_SIGNAL={PREEMPT_SIGNAL}"]
    if code_dir is not None:
        quoted = shlex.quote(str(code_dir))
        lines += [f"export PYTHONPATH={quoted}${{PYTHONPATH:+:$PYTHONPATH}}", f"cd {quoted}"]
    return tuple(lines)


def make_executor(launch, folder: Path, *, name: str, code_dir: Optional[Path]):
    """A submitit executor for the preset ``launch.cluster`` with the ``launch`` section's resources."""
    import submitit

    preset = get_preset(launch.cluster)
    params = executor_parameters(launch, preset, name=name, setup=job_setup_lines(code_dir))
    if preset.executor == "slurm":
        if shutil.which("sbatch") is None:
            raise ClusterError(f"launch.cluster={launch.cluster} needs SLURM, but sbatch is not on PATH here; "
                               "try launch.cluster=debug to run in this process")
        # Forced here because submitit reads its signal name when first imported, which may predate this module.
        params["slurm_additional_parameters"]["signal"] = f"{PREEMPT_SIGNAL}@{launch.signal_delay_s}"
    ctor = {"slurm_max_num_timeout": params.pop("slurm_max_num_timeout")} if "slurm_max_num_timeout" in params else {}
    executor = submitit.AutoExecutor(folder=str(folder), cluster="debug" if preset.executor == "debug" else "slurm",
                                     **ctor)
    executor.update_parameters(**params)
    return executor, {**params, **ctor}


# --------------------------------------------------------------------------------------------- submit


@dataclass
class Submission:
    cfg: Config
    run_dir: Path
    job_dir: Path
    preset: ClusterPreset
    params: dict[str, Any]
    job: Any = None  # submitit Job; None for a dry run
    config_file: Optional[Path] = None
    code_dir: Optional[Path] = None
    info: dict[str, Any] = field(default_factory=dict)


# Config keys that name files or folders (data.path, run.out_dir, rollout.checkpoint, train.resume, ...); their
# relative values are resolved against the submission directory, because the job runs in its code snapshot.
PATH_KEY = re.compile(r"^(path|dir|out|root|file|checkpoint|resume|.*_(path|dir|root|file|checkpoint|pickle))$")


def absolutize_paths(section: Any, base: Path) -> None:
    """Relative paths that exist under `base`, in keys that name paths, become absolute (in place)."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            absolutize_paths(value, base)
        elif (isinstance(value, str) and value and PATH_KEY.search(f.name) and value not in ("auto", "never")
              and not Path(value).is_absolute() and "://" not in value and (base / value).exists()):
            setattr(section, f.name, str((base / value).resolve()))


def resolve_config(config_paths: list[str], overrides: list[str]) -> Config:
    """Load + validate; run.out_dir and existing relative data/checkpoint paths made absolute (the job runs in its
    code snapshot, and it and its requeues must find the same files and run dir)."""
    cfg = load_config(config_paths, overrides)
    absolutize_paths(cfg, Path.cwd())
    cfg.run.out_dir = str(Path(cfg.run.out_dir).expanduser().resolve())
    if cfg.train.resume == "never":
        print("warning: train.resume=never: a preempted or timed-out job will not resume; its requeue stops with an "
              "error "
              "once the run directory holds checkpoints (train.resume=auto resumes)", file=sys.stderr)
    return cfg


def submit(config_paths: list[str], overrides: list[str], *, dry_run: bool = False) -> Submission:
    cfg = resolve_config(config_paths, overrides)
    launch = cfg.launch
    preset = get_preset(launch.cluster)
    run_dir = run_dir_of(cfg)
    job_dir = Path(launch.folder).resolve() if launch.folder else run_dir / "job"
    snapshot = launch.snapshot and preset.executor != "debug"  # the debug executor runs in this process's code
    params = executor_parameters(launch, preset, name=cfg.run.name,
                                 setup=job_setup_lines(job_dir / "code" if snapshot else None))
    sub = Submission(cfg, run_dir, job_dir, preset, params)
    if dry_run:
        return sub
    sub.config_file, sub.code_dir = write_job_folder(job_dir, cfg, snapshot=snapshot)
    executor, sub.params = make_executor(launch, job_dir / "logs", name=cfg.run.name, code_dir=sub.code_dir)
    sub.job = executor.submit(TrainJob(str(sub.config_file), None if sub.code_dir is None else str(sub.code_dir)))
    sub.info = {"job_id": sub.job.job_id, "submitted_at": time.time(), "cluster": launch.cluster,
                "run_dir": str(run_dir),
                "config": str(sub.config_file), "code": str(sub.code_dir), "parameters": sub.params}
    (job_dir / "job.json").write_text(json.dumps(sub.info, indent=1, default=str))
    return sub


# --------------------------------------------------------------------------------------------- CLI


def job_result(job) -> dict[str, Any]:
    """Rank 0's return value (a job with several tasks returns one value per task)."""
    return job.results()[0]


def describe(sub: Submission) -> list[tuple[str, Any]]:
    la, p = sub.cfg.launch, sub.params
    rows = [
        ("job id", sub.job.job_id if sub.job is not None else "(dry run: nothing submitted)"),
        ("cluster", f"{sub.preset.name} ({sub.preset.description})"),
        ("partition / account / qos",
         " / ".join(str(p.get(k, "-")) for k in ("slurm_partition", "slurm_account", "slurm_qos"))),
        ("nodes x tasks per node", f"{la.nodes} x {la.tasks_per_node}"),
        ("gpus per node / cpus per task", f"{p.get('gpus_per_node', 0)} / {p.get('cpus_per_task', '-')}"),
        ("time limit (min), requeues", f"{la.timeout_min}, {la.max_requeues}"),
        ("engine",
         sub.cfg.dist.engine + (f" (ZeRO-{sub.cfg.dist.zero_stage})" if sub.cfg.dist.engine == "deepspeed" else "")),
        ("run dir", sub.run_dir),
        ("job folder", sub.job_dir),
    ]
    if sub.job is not None:
        rows.append(("logs", sub.job_dir / "logs"))
    if sub.preset.executor == "slurm":
        backend = sub.cfg.dist.backend if sub.cfg.dist.backend != "auto" else "auto (nccl on GPUs, gloo on CPU)"
        rows += describe_rendezvous(la, sub.preset.socket_ifname, backend, sub.cfg.dist.timeout_s)
    return rows


def run_from_args(args) -> int:
    """`cjepa submit` / `python launchers/submit.py`: submit, print what went where, optionally wait."""
    overrides = list(args.overrides) + ([f"launch.cluster={args.cluster}"] if args.cluster else [])
    try:
        sub = submit(list(args.config), overrides, dry_run=args.dry_run)
    except ClusterError as err:
        print(f"submit: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(dump_yaml(sub.cfg))
    print(table(describe(sub), ["submit", "value"]))
    if sub.job is None or not args.wait:
        return 0
    try:
        summary = job_result(sub.job)
    except Exception as err:  # noqa: BLE001 - submitit wraps the job's failure; show it and fail
        print(f"submit: job {sub.job.job_id} failed: {err}", file=sys.stderr)
        return 1
    print_train_summary(summary)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``python launchers/submit.py ARGS`` is ``cjepa submit ARGS``: one parser, one place for the flags."""
    return cli_main(["submit", *(sys.argv[1:] if argv is None else argv)])

if __name__ == "__main__":
    sys.exit(main())
