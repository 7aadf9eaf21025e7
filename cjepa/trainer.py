"""The training loop: one trainer for every task, engine and launch mode.

``Trainer(cfg, task).fit()`` runs single-process, under torchrun / srun as DDP, or with DeepSpeed ZeRO,
chosen by ``dist.engine``. It owns: seeding, the engine (optimizer, schedule, clipping, gradient
accumulation), bf16 autocast, periodic validation, logging (tqdm on rank 0, tensorboard, metrics.jsonl),
atomic checkpoints with every RNG state and the data position (so a resumed run is bit-identical to an
uninterrupted one on CPU), a stop on NaN/inf loss that keeps the last good checkpoint, and SIGTERM/SIGUSR1
handling (checkpoint, then exit with :data:`EXIT_PREEMPTED`) for SLURM preemption. Ctrl-C (SIGINT) also
checkpoints, then raises :class:`Interrupted` (a KeyboardInterrupt: the CLI exits with 130); a second Ctrl-C
stops at once.

The run directory is the run's: one process holds it (``run.lock``), a resume continues the checkpoint's config
(changed keys are refused unless resumable or ``train.allow_config_change``), ``train.resume=never`` does not
start over a directory that holds checkpoints, and a resume drops the metrics logged after its checkpoint so that
every step is logged once. An unreadable latest checkpoint is set aside with a warning and the previous one used.

The steps between reads never wait for the device: losses, their finiteness and the gradient norm stay on it
(:class:`StepStats`) and reach the host in one read every ``train.log_every`` steps, before validation and
before every checkpoint (one collective and one copy). A non-finite loss therefore stops the run at the next
read, up to ``log_every - 1`` optimizer steps later; since a checkpoint is only written after a read covering
every step since the previous one, no checkpoint ever holds those steps.

Run it as ``cjepa train --config configs/... key=value`` or ``python -m cjepa train ...``.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm import tqdm

from cjepa.config import Config, derive, dump_yaml
from cjepa.distributed.engine import Engine
from cjepa.distributed.engine_factory import build_engine
from cjepa.distributed.env import (
    DistEnv,
    all_reduce_min,
    all_reduce_sum,
    destroy_process_group,
    detect_env,
    init_process_group,
    pick_device,
)
from cjepa.tasks.base import Task
from cjepa.tasks.registry import build_task
from cjepa.utils.checkpoint import (
    STEP_DIR,
    CheckpointError,
    checkpoint_step,
    latest_checkpoint,
    list_checkpoints,
    load_for_resume,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    seed_rngs,
    set_aside,
    set_rng_state,
)
from cjepa.utils.cpu_allocator import tune_cpu_allocator
from cjepa.utils.precision import apply_tf32, autocast, precision_reason, resolve_precision
from cjepa.utils.run_dir import (
    RESUMABLE_KEYS,
    MetricsLogger,
    RunDirError,
    RunLock,
    config_changes,
    git_info,
    package_versions,
    prepare_run_dir,
    resumable,
    truncate_metrics,
)

EXIT_PREEMPTED = 3  # exit code after a checkpoint taken on SIGTERM/SIGUSR1


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf; training stopped before the optimizer step."""


class Preempted(RuntimeError):
    """SIGTERM/SIGUSR1 arrived; a checkpoint was written and the run stopped."""

    def __init__(self, checkpoint: Path, step: int, signum: Optional[int] = None):
        super().__init__(f"stopped by signal {signum} at step {step}; checkpoint {checkpoint}")
        self.checkpoint, self.step, self.signum = checkpoint, step, signum


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) arrived; a checkpoint was written and the run stopped. A KeyboardInterrupt, so that it is
    not taken for a preemption (exit 3, requeue): the CLI prints its message on one line and exits with 130."""

    def __init__(self, checkpoint: Path, step: int):
        super().__init__(f"checkpoint {checkpoint} at step {step}; the same command resumes from it")
        self.checkpoint, self.step = checkpoint, step


@dataclass
class HostStats:
    """What one read of :class:`StepStats` brings to the host (losses and flags summed over ranks)."""

    bad: list[bool]  # per loss: non-finite at the first non-finite step since the previous read, on some rank
    sums: list[float]  # per loss: the per-step means summed over steps and ranks (log reads only, else empty)
    steps: int  # optimizer steps in `sums`
    grad_norm: Optional[float]  # the last step's gradient norm (log reads only)
    extra: float  # the caller's flag, summed over ranks


class StepStats:
    """Training statistics kept on the training device between host reads.

    Reading a loss on the host (``float(loss)``, ``bool(torch.isfinite(loss))``) makes the host wait until the
    GPU has finished the step, and reducing a flag over ranks per micro-batch adds a collective that DDP's
    ``no_sync`` cannot skip. So per micro-batch this adds the losses to running sums and remembers the first
    non-finite step (its index, which losses, their values) with device ops only; :meth:`read` reduces
    everything over ranks in one collective and copies it to the host in one transfer.
    """

    def __init__(self):
        self.names: Optional[list[str]] = None
        self._sums: Optional[torch.Tensor] = None  # (K,) float64
        self._steps = 0
        self._grad_norm = None
        self._reset_finite()

    def _reset_finite(self) -> None:
        # () float64: first non-finite step since the last read, inf if none
        self._first_bad: Optional[torch.Tensor] = None
        self._bad: Optional[torch.Tensor] = None  # (K,) 1.0 where that step's loss was non-finite
        self._bad_values: Optional[torch.Tensor] = None  # (K,) the losses of that step

    def add(self, losses: dict[str, torch.Tensor], step: int, micro_batches: int) -> None:
        names = list(losses)
        if self.names is None:
            self.names = names
        elif names != self.names:
            raise RuntimeError(f"the task returned losses {names} after {self.names}: the names must stay fixed")
        vals = torch.stack([v.detach().reshape(()).double() for v in losses.values()])
        if self._sums is None:
            self._sums = torch.zeros_like(vals)
        self._sums += vals / micro_batches
        if self._first_bad is None:
            self._first_bad = vals.new_full((), math.inf)
            self._bad, self._bad_values = torch.zeros_like(vals), torch.zeros_like(vals)
        bad = ~torch.isfinite(vals)
        first = bad.any() & torch.isinf(self._first_bad)  # only the first bad step is kept: later ones follow from it
        self._first_bad = torch.where(first, float(step), self._first_bad)
        self._bad = torch.where(first, bad.double(), self._bad)
        self._bad_values = torch.where(first, vals, self._bad_values)

    def end_step(self, grad_norm) -> None:
        """After the optimizer step; ``grad_norm`` as the engine returns it (device tensor, float or None)."""
        self._steps += 1
        self._grad_norm = grad_norm

    def read(self, log: bool, extra: float = 0.0) -> HostStats:
        """The host read: non-finite flags since the last read (+ loss sums if ``log``) and ``extra``, summed over
        ranks. The flags are reset unless one is set (the caller then stops, see :meth:`first_bad_over_ranks`)."""
        K = len(self.names)
        bad = self._bad if self._bad is not None else self._sums.new_zeros(K)
        parts = [bad, bad.new_full((1,), extra)]
        if log:
            parts.append(self._sums)
        reduced = all_reduce_sum(torch.cat(parts))
        norm = self._grad_norm if log else None
        local = [norm.detach().reshape(1).double()] if isinstance(norm, torch.Tensor) else []
        host = torch.cat([reduced, *local]).tolist()  # the one device->host copy
        out = HostStats(
            bad=[b > 0 for b in host[:K]], extra=host[K], sums=host[K + 1 : 2 * K + 1] if log else [],
            steps=self._steps, grad_norm=host[-1] if local else (None if norm is None else float(norm)),
        )
        if not any(out.bad):
            self._reset_finite()
        if log:
            self._sums, self._steps = None, 0
        return out

    def first_bad_over_ranks(self) -> tuple[int, list[str], Optional[list[float]]]:
        """After a read found a non-finite loss (collectives; every rank calls it): the earliest non-finite step
        over ranks, the losses non-finite at that step on the ranks that saw it (later steps are all NaN anyway),
        and this rank's loss values there, or None if only another rank saw it."""
        mine = self._first_bad.clone()
        first = all_reduce_min(self._first_bad.clone())
        here = mine == first
        flags = all_reduce_sum(torch.where(here, self._bad, torch.zeros_like(self._bad))).tolist()
        step, here = int(first.item()), bool(here.item())
        return step, [k for k, f in zip(self.names, flags) if f > 0], (self._bad_values.tolist() if here else None)


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.run.out_dir) / cfg.run.name


class Trainer:
    """Trains any :class:`~cjepa.tasks.base.Task` with the engine ``dist.engine`` names (see the module docstring)."""

    def __init__(self, cfg: Config, task: Task, *, env: Optional[DistEnv] = None, progress: bool = True):
        self.cfg, self.task = cfg, task
        self.env = env or detect_env()
        self.run_dir = run_dir_of(cfg)
        self.show_progress = progress
        self._stop_signal: Optional[int] = None

    # ------------------------------------------------------------------ helpers

    def _on_signal(self, signum, _frame):
        if signum == signal.SIGINT:
            if self._stop_signal is not None:  # the second Ctrl-C: the user does not want to wait for the step
                raise KeyboardInterrupt("second Ctrl-C: stopped at once, no checkpoint of the current step")
            self._log("Ctrl-C: stopping with a checkpoint after this step (Ctrl-C again to stop at once)")
        self._stop_signal = signum

    def _install_signal_handlers(self):
        prev = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            try:
                prev[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (e.g. submitit debug executor): signals stay default
                pass
        return prev

    def _autocast(self):
        return autocast(self.precision, self.device)

    def _save(self, step: int, reason: str) -> Path:
        model_state = self.engine.module_state_dict()  # None: the engine's save_extra writes model.pt
        train_state = {
            "step": step,
            "engine": self.engine.state_dict(),
            "rng": rng_state(),
            "task": self.task.state_dict(),
            "metrics_tail": self._last_metrics,
            "val_metrics": self._val_metrics,  # so that summary.json of a rerun of a finished run has them too
        }
        # Engines whose own checkpoint is collective (DeepSpeed: every rank writes its ZeRO shards) write it into a
        # staging folder first; rank 0's save_extra moves it into the atomically renamed checkpoint.
        self.engine.save_extra_all_ranks(self.run_dir / "checkpoints" / f".staging-{STEP_DIR.format(step)}")
        path = None
        if self.env.is_main:
            meta = {"reason": reason, "git": git_info(), "versions": package_versions(),
                    "world_size": self.env.world_size, "engine": self.engine.name,
                    "wall_time_s": time.time() - self._t0}
            path = save_checkpoint(
                self.run_dir, step, model_state, train_state, dump_yaml(self.cfg), meta,
                keep=self.cfg.train.keep_checkpoints,
                extra_writer=self.engine.save_extra,
            )
        self._barrier()
        return path or self.run_dir / "checkpoints"

    def _barrier(self):
        if torch.distributed.is_initialized():
            torch.distributed.barrier()

    def _resume_point(self) -> tuple[Optional[Path], Optional[dict], Optional[dict]]:
        """(checkpoint, train state, model state_dict) to resume from, or Nones for a fresh start. Every rank reads
        the same files and comes to the same answer. ``train.resume=auto`` skips unreadable checkpoints, newest
        first, with a warning (rank 0 sets them aside once every rank has decided)."""
        r = self.cfg.train.resume
        own_model = self.engine.reads_own_model  # DeepSpeed reads its own shards
        if r == "never":
            return None, None, None
        if r != "auto":
            ckpt = resolve_checkpoint(r)
            state, sd = load_for_resume(ckpt, model=not own_model)
            return ckpt, state, sd
        bad, found = [], (None, None, None)
        for ckpt in reversed(list_checkpoints(self.run_dir)):
            try:
                state, sd = load_for_resume(ckpt, model=not own_model)
            except CheckpointError as err:
                self._log(f"warning: {err}; it is set aside as corrupt-{ckpt.name} and the previous checkpoint used")
                bad.append(ckpt)
                continue
            found = (ckpt, state, sd)
            break
        if bad:
            self._barrier()
            if self.env.is_main:
                for ckpt in bad:
                    set_aside(ckpt)
            self._barrier()
            if found[0] is None:
                raise RunDirError(f"{self.run_dir}: no checkpoint can be read ({', '.join(p.name for p in bad)}, now "
                                  "set aside as corrupt-*); train.resume=never starts over")
        return found

    def _check_resume(self, ckpt: Optional[Path], step: int) -> dict[str, tuple]:
        """Refuse what would mix two runs in one directory; return the config keys changed since the checkpoint."""
        later = [p.name for p in list_checkpoints(self.run_dir) if checkpoint_step(p) > step]
        if later:
            how = "train.resume=never" if ckpt is None else f"resuming from {ckpt} (step {step})"
            raise RunDirError(
                f"{how}, but {self.run_dir / 'checkpoints'} holds later checkpoints of an earlier run "
                f"({', '.join(later)}): "
                "checkpoint pruning would keep those instead of this run's, and summary.json would point at them. "
                "Continue that run with train.resume=auto, choose another run.name, or move that checkpoints/ folder "
                "aside."
            )
        if ckpt is None or not (ckpt / "config.yaml").is_file():
            return {}
        import yaml

        old = yaml.safe_load((ckpt / "config.yaml").read_text()) or {}
        changes = config_changes(old, yaml.safe_load(dump_yaml(self.cfg)))
        refused = {k: v for k, v in changes.items() if not resumable(k)}
        if refused and not self.cfg.train.allow_config_change:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
            raise RunDirError(
                f"resuming {ckpt} with a config that differs from the one it was trained with: {shown}. On resume only "
                f"{', '.join(RESUMABLE_KEYS)}* may change. Use another run.name for a new run, set the old values, or "
                "pass train.allow_config_change=true to resume anyway (recorded in config_history.jsonl)."
            )
        return changes

    def _load(self, ckpt: Path, state: dict, model_sd: Optional[dict]) -> int:
        self.engine.load_checkpoint(ckpt, state["engine"], model_sd)
        set_rng_state(state["rng"])
        self.task.load_state_dict(state.get("task", {}))
        self._last_metrics = dict(state.get("metrics_tail") or {})
        self._val_metrics = dict(state.get("val_metrics") or {})
        self._log(f"resumed from {ckpt} at step {state['step']}")
        return int(state["step"])

    def _load_fitting(self, ckpt: Path, state: dict, model_sd: Optional[dict], changes: dict) -> int:
        """:meth:`_load`; with train.allow_config_change, a checkpoint that does not fit the changed model or
        optimizer is one clear error naming the changed keys, not a size-mismatch traceback."""
        try:
            return self._load(ckpt, state, model_sd)
        except (CheckpointError, RunDirError):
            raise
        except (RuntimeError, ValueError, KeyError) as err:
            if not changes:
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RunDirError(
                f"{ckpt} does not fit this config, changed since it was written ({', '.join(changes)}): {first}"
            ) from err

    def _log(self, msg: str) -> None:
        if self.env.is_main:
            tqdm.write(f"[cjepa] {msg}", file=sys.stderr)

    def _pending_signal(self) -> Optional[int]:
        """The stop signal received so far (SIGTERM, SIGUSR1 or SIGINT, set by the handler), looked at once per step."""
        return self._stop_signal

    def _read(self, stats: "StepStats", step: int, log: bool) -> tuple[dict[str, float], bool]:
        """The host read of the hot path: one collective and one device->host copy at most.

        Reduces over ranks the non-finite flags of every micro-batch since the previous read, the stop-signal flag
        and, on log steps, the loss sums. Raises :class:`NonFiniteLoss` on every rank alike if any rank saw a
        non-finite loss. Returns (train metrics if ``log``, whether any rank asked to stop)."""
        signal_flag = 1.0 if self._stop_signal is not None else 0.0
        host = stats.read(log=log, extra=signal_flag)
        if any(host.bad):
            self._raise_non_finite(stats, step)
        metrics: dict[str, float] = {}
        if log:
            # mean over ranks too: each rank saw its own share of the global batch
            n = max(host.steps, 1) * self.env.world_size
            metrics = {f"train/{k}": v / n for k, v in zip(stats.names, host.sums)}
            if host.grad_norm is not None:
                metrics["train/grad_norm"] = host.grad_norm
        return metrics, host.extra > 0

    def _raise_non_finite(self, stats: "StepStats", step: int) -> None:
        first, names, values = stats.first_bad_over_ranks()
        shown = (
            "; values " + ", ".join(f"{k}={values[stats.names.index(k)]:.4g}" for k in names)
            if values is not None else "; values on another rank"
        )
        last = latest_checkpoint(self.run_dir)
        every = self.cfg.train.log_every
        raise NonFiniteLoss(
            f"non-finite loss at step {first} ({', '.join(names)}{shown}) on some rank; found at the check after step "
            f"{step}. Losses are checked on the host every train.log_every={every} steps and before validation and "
            f"checkpoints, so up to {every - 1} optimizer steps may have run after it; none of them was saved. "
            f"Last good checkpoint: {last or 'none yet'}. Lower optim.lr, enable optim.grad_clip, "
            f"or check the data for NaNs."
        )

    # ------------------------------------------------------------------ main loop

    def _lock(self) -> Optional[RunLock]:
        """Rank 0 takes the run directory's lock; every rank raises if it is held elsewhere."""
        lock, error = None, None
        if self.env.is_main:
            try:
                lock = RunLock(self.run_dir).acquire()
            except RunDirError as err:
                error = err
        taken_elsewhere = all_reduce_sum(torch.tensor([0.0 if error is None else 1.0], device=self.device)).item() > 0
        if taken_elsewhere:
            raise error or RunDirError(f"{self.run_dir} is in use by another run (see rank 0's error)")
        return lock

    def fit(self) -> dict[str, Any]:
        cfg, env = self.cfg, self.env
        self.device = pick_device(cfg.run.device, env)
        apply_tf32(cfg.train.tf32, self.device)
        # process-wide and allocation-only (results do not change); GPU runs keep their host allocator as it is
        self.cpu_allocator = tune_cpu_allocator(cfg.train.cpu_allocator) if self.device.type == "cpu" else "system"
        self.precision = resolve_precision(cfg.train.precision, self.device)  # "auto" resolved once, on this device
        init_process_group(env, cfg.dist.backend, cfg.dist.timeout_s, self.device)
        lock = self._lock()
        finished = False
        try:
            summary = self._fit()
            finished = True
            return summary
        finally:
            try:
                self.task.close()  # loader workers and DALI pipelines end with the run, however it ends
            finally:
                if lock is not None:  # a run that failed before writing anything leaves no directory behind
                    lock.release(discard_if_unused=not finished)

    def _fit(self) -> dict[str, Any]:
        cfg, env = self.cfg, self.env
        derived = derive(cfg, env.world_size)
        seed_rngs(cfg.run.seed)  # identical initial weights on every rank, and the same saved RNG states run to run
        self.task.setup(env, derived, self.device)
        model = self.task.build_model()
        total_steps = cfg.train.max_steps or cfg.train.epochs * self.task.steps_per_epoch
        self.engine: Engine = build_engine(model, self.task.param_groups(model), cfg, env, self.device, total_steps)
        if cfg.train.compile:
            self.engine.compile(cfg.train.compile_backend)
        self._t0 = time.time()
        self._last_metrics: dict[str, float] = {}
        self._val_metrics: dict[str, float] = {}
        ckpt, state, model_sd = self._resume_point()
        start = int(state["step"]) if state is not None else 0
        changes = self._check_resume(ckpt, start)  # before anything in the run directory is written
        step = start if ckpt is None else self._load_fitting(ckpt, state, model_sd, changes)  # ... and this too
        del state, model_sd
        if env.is_main:
            prepare_run_dir(self.run_dir, dump_yaml(cfg), {
                "step": start, "checkpoint": None if ckpt is None else str(ckpt), "precision": self.precision,
                "changed": {k: list(v) for k, v in changes.items()},
            })
            truncate_metrics(self.run_dir, start)
        self._barrier()
        tb_exists = (self.run_dir / "tb").is_dir()
        logger = MetricsLogger(self.run_dir, enabled=env.is_main, purge_step=step + 1 if tb_exists else None)
        prev_handlers = self._install_signal_handlers()
        self._log(
            f"task={self.task.name} engine={self.engine.name} world={env.world_size} device={self.device} "
            f"attention={cfg.kernels.attention} "
            f"precision={precision_reason(cfg.train.precision, self.precision, self.device)} "
            f"cpu_allocator={self.cpu_allocator.split(' ')[0]} "
            f"micro_batch={derived.micro_batch} grad_accum={derived.grad_accum} "
            f"global_batch={derived.global_batch} steps={total_steps} ({self.task.steps_per_epoch}/epoch) "
            + " ".join(f"{k}={v}" for k, v in self.task.describe().items())
        )
        val_every = cfg.train.val_every or self.task.steps_per_epoch
        ckpt_every = cfg.train.ckpt_every or self.task.steps_per_epoch
        bar = tqdm(total=total_steps, initial=step, desc=f"train {cfg.run.name}",
                   disable=not (env.is_main and self.show_progress), dynamic_ncols=True, file=sys.stderr)
        stats = StepStats()
        samples, t_log = 0, time.time()
        val_metrics = self._val_metrics
        try:
            while step < total_steps:
                for micro_batches in self.task.train_batches(step):
                    for j, mb in enumerate(micro_batches):
                        last = j == len(micro_batches) - 1
                        with self.engine.no_sync(last), self._autocast():
                            losses = self.task.training_losses(self.engine.model, mb, step, j)
                        stats.add(losses, step, len(micro_batches))  # device ops only: no host read here
                        self.engine.backward(losses["loss"] / len(micro_batches))
                    stats.end_step(self.engine.step())
                    self.task.after_step()
                    step += 1
                    samples += derived.global_batch
                    bar.update(1)
                    log_due = step % cfg.train.log_every == 0 or step == total_steps
                    val_due = step % val_every == 0 or step == total_steps
                    ckpt_due = step % ckpt_every == 0 or step == total_steps
                    # A signal is a host flag: one process acts on it at once; ranks agree on it at the next read.
                    alone_stop = self._pending_signal() is not None and not env.distributed
                    stop = False
                    # Validation and checkpoints come after a read covering every step since the last one, so a
                    # non-finite step is never validated as if it were fine, and never saved.
                    if log_due or val_due or ckpt_due or alone_stop:
                        metrics, stop = self._read(stats, step, log=log_due)
                        if log_due:
                            t = time.time()
                            metrics["train/lr"] = self.engine.lr()
                            metrics["train/samples_per_s"] = samples / max(t - t_log, 1e-9)
                            self._last_metrics = {**metrics}
                            logger.log(step, metrics)
                            bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
                            samples, t_log = 0, t
                    if val_due:
                        with self.engine.eval_context():  # ZeRO-3 gathers the partitioned parameters
                            val_metrics = self.task.validate(self.engine.module)
                        self._val_metrics = val_metrics
                        logger.log(step, val_metrics)
                        self._log(f"step {step}: " + " ".join(f"{k}={v:.5f}" for k, v in val_metrics.items()))
                    if ckpt_due:
                        self._save(step, "periodic" if step < total_steps else "final")
                    if stop:
                        signum = self._stop_signal
                        path = self._save(step, f"signal {signum}")
                        if signum == signal.SIGINT:
                            raise Interrupted(path, step)
                        raise Preempted(path, step, signum)
                    if step >= total_steps:
                        break
            # The stop flag is not looked at any more: the previous handlers let Ctrl-C interrupt the final
            # evaluation at once instead of being noted and ignored.
            for sig, h in prev_handlers.items():
                signal.signal(sig, h)
            summary = self._finish(step, total_steps, val_metrics, logger)
        finally:
            bar.close()
            logger.close()
            for sig, h in prev_handlers.items():
                signal.signal(sig, h)
        return summary

    def _finish(self, step: int, total_steps: int, val_metrics: dict, logger: MetricsLogger) -> dict[str, Any]:
        with self.engine.eval_context():
            final = self.task.final_eval(self.engine.module)
        if "mse" in final:
            logger.curve("rollout/mse", final["mse"], "rollout error (held-out)", baseline=final.get("baseline_mse"))
        summary = {
            "run_dir": str(self.run_dir),
            "steps": step,
            "wall_time_s": time.time() - self._t0,
            "world_size": self.env.world_size,
            "engine": self.engine.name,
            "precision": self.precision,  # train.precision as resolved on this run's device (auto -> fp32 / bf16)
            **{k: v for k, v in self._last_metrics.items() if not k.endswith("samples_per_s")},
            **val_metrics,
            "final_eval": final,
            "checkpoint": str(latest_checkpoint(self.run_dir)),
            "tensorboard": str(self.run_dir / "tb"),
        }
        if self.env.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary


def train(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Train what ``train.task`` asks for; tears down the process group afterwards."""
    try:
        return Trainer(cfg, build_task(cfg), progress=progress).fit()
    finally:
        destroy_process_group()

