"""The training loop: one trainer for every task, engine and launch mode.

``Trainer(cfg, task).fit()`` runs single-process, under torchrun / srun as DDP, or with DeepSpeed ZeRO,
chosen by ``dist.engine``. It owns: seeding, the engine (optimizer, schedule, clipping, gradient
accumulation), bf16 autocast, periodic validation, logging (tqdm on rank 0, tensorboard, metrics.jsonl),
atomic checkpoints with every RNG state and the data position (so a resumed run is bit-identical to an
uninterrupted one on CPU), a stop on NaN/inf loss that keeps the last good checkpoint, and SIGTERM/SIGUSR1
handling (checkpoint, then exit with :data:`EXIT_PREEMPTED`) for SLURM preemption.

Run it as ``cjepa train --config configs/... key=value`` or ``python -m cjepa.train ...``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm import tqdm

from cjepa.config import Config, derive, dump_yaml
from cjepa.dist.engine import build_engine
from cjepa.dist.env import (
    DistEnv,
    all_reduce_sum,
    any_rank,
    destroy_process_group,
    detect_env,
    init_process_group,
    pick_device,
)
from cjepa.utils.checkpoint import (
    STEP_DIR,
    latest_checkpoint,
    load_model_state,
    load_train_state,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cjepa.utils.precision import apply_tf32
from cjepa.utils.run_dir import MetricsLogger, git_info, package_versions, prepare_run_dir

EXIT_PREEMPTED = 3  # exit code after a checkpoint taken on SIGTERM/SIGUSR1


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf; training stopped before the optimizer step."""


class Preempted(RuntimeError):
    """SIGTERM/SIGUSR1 arrived; a checkpoint was written and the run stopped."""

    def __init__(self, checkpoint: Path, step: int, signum: Optional[int] = None):
        super().__init__(f"stopped by signal {signum} at step {step}; checkpoint {checkpoint}")
        self.checkpoint, self.step, self.signum = checkpoint, step, signum


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.run.out_dir) / cfg.run.name


class Trainer:
    def __init__(self, cfg: Config, task, *, env: Optional[DistEnv] = None, progress: bool = True):
        self.cfg, self.task = cfg, task
        self.env = env or detect_env()
        self.run_dir = run_dir_of(cfg)
        self.show_progress = progress
        self._stop_signal: Optional[int] = None

    # ------------------------------------------------------------------ helpers

    def _on_signal(self, signum, _frame):
        self._stop_signal = signum

    def _install_signal_handlers(self):
        prev = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                prev[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (e.g. submitit debug executor): signals stay default
                pass
        return prev

    def _autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _save(self, step: int, reason: str) -> Path:
        model_state = self.engine.module_state_dict() if hasattr(self.engine, "module_state_dict") else self.engine.module.state_dict()
        train_state = {
            "step": step,
            "engine": self.engine.state_dict(),
            "rng": rng_state(),
            "task": self.task.state_dict(),
            "metrics_tail": self._last_metrics,
        }
        if hasattr(self.engine, "save_extra_all_ranks"):
            # Engines whose own checkpoint is collective (DeepSpeed: every rank writes its ZeRO shards) write it
            # into a staging folder first; rank 0's save_extra moves it into the atomically renamed checkpoint.
            self.engine.save_extra_all_ranks(self.run_dir / "checkpoints" / f".staging-{STEP_DIR.format(step)}")
        path = None
        if self.env.is_main:
            meta = {"reason": reason, "git": git_info(), "versions": package_versions(), "world_size": self.env.world_size, "engine": self.engine.name, "wall_time_s": time.time() - self._t0}
            path = save_checkpoint(
                self.run_dir, step, model_state, train_state, dump_yaml(self.cfg), meta,
                keep=self.cfg.train.keep_checkpoints,
                extra_writer=self.engine.save_extra if hasattr(self.engine, "save_extra") else None,
            )
        self._barrier()
        return path or self.run_dir / "checkpoints"

    def _eval_context(self):
        """Engines whose module is not directly usable for evaluation (ZeRO-3 partitions it) provide a context."""
        return self.engine.eval_context() if hasattr(self.engine, "eval_context") else contextlib.nullcontext()

    def _stop_requested(self) -> bool:
        """A signal seen by any rank stops every rank at the same step (each rank may see it a step apart, and
        the checkpoint that follows is collective)."""
        return any_rank(self._stop_signal is not None, self.device)

    def _barrier(self):
        if torch.distributed.is_initialized():
            torch.distributed.barrier()

    def _resume(self) -> int:
        r = self.cfg.train.resume
        if r == "never":
            return 0
        ckpt = latest_checkpoint(self.run_dir) if r == "auto" else resolve_checkpoint(r)
        if ckpt is None:
            return 0
        state = load_train_state(ckpt)
        if hasattr(self.engine, "load_checkpoint"):
            self.engine.load_checkpoint(ckpt, state["engine"])
        else:
            self.engine.module.load_state_dict(load_model_state(ckpt))
            self.engine.load_state_dict(state["engine"])
        set_rng_state(state["rng"])
        self.task.load_state_dict(state.get("task", {}))
        self._log(f"resumed from {ckpt} at step {state['step']}")
        return int(state["step"])

    def _log(self, msg: str) -> None:
        if self.env.is_main:
            tqdm.write(f"[cjepa] {msg}", file=sys.stderr)

    def _check_finite(self, losses: dict[str, torch.Tensor], step: int) -> None:
        bad = torch.tensor([0.0 if bool(torch.isfinite(v.detach()).all()) else 1.0 for v in losses.values()], dtype=torch.float64, device=self.device)
        all_reduce_sum(bad)  # every rank stops together
        if bad.sum() > 0:
            names = [k for k, b in zip(losses, bad.tolist()) if b > 0]
            last = latest_checkpoint(self.run_dir)
            raise NonFiniteLoss(
                f"non-finite loss at step {step} ({', '.join(names)}; "
                f"values {', '.join(f'{k}={float(losses[k].detach()):.4g}' for k in names)}) on some rank. Training stopped before "
                f"the optimizer step. Last good checkpoint: {last or 'none yet'}. Lower optim.lr, enable optim.grad_clip, "
                f"or check the data for NaNs."
            )

    # ------------------------------------------------------------------ main loop

    def fit(self) -> dict[str, Any]:
        cfg, env = self.cfg, self.env
        self.device = pick_device(cfg.run.device, env)
        apply_tf32(cfg.train.tf32, self.device)
        init_process_group(env, cfg.dist.backend, cfg.dist.timeout_s, self.device)
        derived = derive(cfg, env.world_size)
        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
        self.task.setup(env, derived, self.device)
        model = self.task.build_model()
        total_steps = cfg.train.max_steps or cfg.train.epochs * self.task.steps_per_epoch
        self.engine = build_engine(model, self.task.param_groups(model), cfg, env, self.device, total_steps)
        if cfg.train.compile:
            self.engine.model = torch.compile(self.engine.model)
        self._t0 = time.time()
        self._last_metrics: dict[str, float] = {}
        if env.is_main:
            prepare_run_dir(self.run_dir, dump_yaml(cfg))
        self._barrier()
        step = self._resume()
        logger = MetricsLogger(self.run_dir, enabled=env.is_main)
        prev_handlers = self._install_signal_handlers()
        self._log(
            f"task={self.task.name} engine={self.engine.name} world={env.world_size} device={self.device} "
            f"attention={cfg.kernels.attention} micro_batch={derived.micro_batch} grad_accum={derived.grad_accum} "
            f"global_batch={derived.global_batch} steps={total_steps} ({self.task.steps_per_epoch}/epoch) "
            + " ".join(f"{k}={v}" for k, v in self.task.describe().items())
        )
        val_every = cfg.train.val_every or self.task.steps_per_epoch
        ckpt_every = cfg.train.ckpt_every or self.task.steps_per_epoch
        bar = tqdm(total=total_steps, initial=step, desc=f"train {cfg.run.name}", disable=not (env.is_main and self.show_progress), dynamic_ncols=True, file=sys.stderr)
        sums: dict[str, float] = {}
        n_sum, samples, t_log = 0, 0, time.time()
        val_metrics: dict[str, float] = {}
        try:
            while step < total_steps:
                for micro_batches in self.task.train_batches(step):
                    losses_acc: dict[str, torch.Tensor] = {}
                    for j, mb in enumerate(micro_batches):
                        last = j == len(micro_batches) - 1
                        with self.engine.no_sync(last), self._autocast():
                            losses = self.task.training_losses(self.engine.model, mb, step, j)
                        self._check_finite(losses, step)
                        self.engine.backward(losses["loss"] / len(micro_batches))
                        for k, v in losses.items():
                            losses_acc[k] = losses_acc.get(k, 0.0) + float(v.detach()) / len(micro_batches)
                    grad_norm = self.engine.step()
                    if hasattr(self.task, "after_step"):
                        self.task.after_step()
                    step += 1
                    samples += derived.global_batch
                    for k, v in losses_acc.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n_sum += 1
                    bar.update(1)
                    if step % cfg.train.log_every == 0 or step == total_steps:
                        t = time.time()
                        # mean over ranks too: each rank saw its own share of the global batch
                        keys = sorted(sums)
                        tot = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.device)
                        all_reduce_sum(tot)
                        metrics = {f"train/{k}": float(v) / (n_sum * env.world_size) for k, v in zip(keys, tot)}
                        metrics["train/lr"] = self.engine.lr()
                        metrics["train/samples_per_s"] = samples / max(t - t_log, 1e-9)
                        if grad_norm is not None:
                            metrics["train/grad_norm"] = grad_norm
                        self._last_metrics = {**metrics}
                        logger.log(step, metrics)
                        bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
                        sums, n_sum, samples, t_log = {}, 0, 0, t
                    if step % val_every == 0 or step == total_steps:
                        with self._eval_context():
                            val_metrics = self.task.validate(self.engine.module)
                        logger.log(step, val_metrics)
                        self._log(f"step {step}: " + " ".join(f"{k}={v:.5f}" for k, v in val_metrics.items()))
                    if step % ckpt_every == 0 or step == total_steps:
                        self._save(step, "periodic" if step < total_steps else "final")
                    if self._stop_requested():
                        signum = self._stop_signal
                        path = self._save(step, f"signal {signum}")
                        raise Preempted(path, step, signum)
                    if step >= total_steps:
                        break
            summary = self._finish(step, total_steps, val_metrics, logger)
        finally:
            bar.close()
            logger.close()
            for sig, h in prev_handlers.items():
                signal.signal(sig, h)
        return summary

    def _finish(self, step: int, total_steps: int, val_metrics: dict, logger: MetricsLogger) -> dict[str, Any]:
        final = {}
        if hasattr(self.task, "final_eval"):
            with self._eval_context():
                final = self.task.final_eval(self.engine.module)
        if "mse" in final:
            logger.curve("rollout/mse", final["mse"], "rollout error (held-out)", baseline=final.get("baseline_mse"))
        summary = {
            "run_dir": str(self.run_dir),
            "steps": step,
            "wall_time_s": time.time() - self._t0,
            "world_size": self.env.world_size,
            "engine": self.engine.name,
            **{k: v for k, v in self._last_metrics.items() if not k.endswith("samples_per_s")},
            **val_metrics,
            "final_eval": final,
            "checkpoint": str(latest_checkpoint(self.run_dir)),
            "tensorboard": str(self.run_dir / "tb"),
        }
        if self.env.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary


def build_task(cfg: Config):
    """The task ``train.task`` names: predictor (slot data), pretrain (raw video through a frozen encoder), encoder,
    vqa (the ALOE reasoner on slot videos)."""
    if cfg.train.task == "pretrain":
        from cjepa.tasks.pretrain import PretrainTask

        return PretrainTask(cfg)
    if cfg.train.task == "encoder":
        from cjepa.tasks.encoder import EncoderTask

        return EncoderTask(cfg)
    if cfg.train.task == "vqa":
        from cjepa.eval.vqa.task import VQATask

        return VQATask(cfg)
    from cjepa.tasks.predictor import PredictorTask

    return PredictorTask(cfg)


def train(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Train what ``train.task`` asks for; tears down the process group afterwards."""
    try:
        return Trainer(cfg, build_task(cfg), progress=progress).fit()
    finally:
        destroy_process_group()


def main(argv: Optional[list[str]] = None) -> int:
    from cjepa.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
