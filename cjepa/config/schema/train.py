"""The trainer: what it trains and for how long (``train``) and the optimiser (``optim``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cjepa.config.errors import ConfigError


@dataclass(kw_only=True)
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    # "constant" is the original C-JEPA behaviour (Q5); cosine/exp_decay use warmup_steps first.
    schedule: Literal["constant", "cosine", "exp_decay"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine floor, or exp_decay end factor (0.5 in VideoSAUR)
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    proprio_lr: float = 1e-4  # pusht kind: proprio encoder
    action_lr: float = 5e-4  # pusht kind: action encoder

    def validate(self) -> None:
        if self.grad_clip < 0:
            raise ConfigError("optim.grad_clip must be >= 0 (0 disables clipping)")


@dataclass(kw_only=True)
class TrainConfig:
    # What the trainer trains: "predictor" (C-JEPA from slot data), "pretrain" (C-JEPA streaming from raw video
    # through the frozen encoder), "encoder" (VideoSAUR / SAVi), "vqa" (the ALOE reasoner; its vqa.* optimiser
    # settings replace optim/data.batch_size/train.epochs). `cjepa train-encoder` / `cjepa pretrain` / `cjepa vqa train`
    # set it;
    # launchers pass it through the resolved config.
    task: Literal["predictor", "pretrain", "encoder", "vqa"] = "predictor"
    epochs: int = 30
    max_steps: int = 0  # >0 overrides epochs
    grad_accum: int = 1
    # bf16: autocast over fp32 master weights; auto: bf16 where the device computes it natively (CUDA GPUs with
    # bf16, CPUs with AMX-BF16 or AVX512-BF16), else fp32. The trainer logs the resolved choice and writes it to
    # config_history.jsonl and summary.json (cjepa.utils.precision).
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    log_every: int = 10
    val_every: int = 0  # steps; 0 = once per epoch
    ckpt_every: int = 0  # steps; 0 = once per epoch
    keep_checkpoints: int = 2
    resume: str = "auto"  # "auto": latest checkpoint of this run dir if any; "never"; or a checkpoint path
    # Resuming with other values than the checkpoint's config is refused, except for the keys in
    # cjepa.utils.run_dir.RESUMABLE_KEYS (steps, intervals, device, ...); true resumes anyway (the changes are
    # recorded in config_history.jsonl). The checkpoint's weights and optimizer state must still fit.
    allow_config_change: bool = False
    compile: bool = False  # torch.compile the model (DeepSpeed: its engine.compile(), which keeps ZeRO's hooks)
    # The torch.compile backend: "inductor" generates kernels; "aot_eager" / "eager" only capture graphs (debugging).
    compile_backend: str = "inductor"
    # CUDA only: fp32 matmuls / convolutions on TF32 tensor cores (torch.set_float32_matmul_precision("high"),
    # cudnn.allow_tf32). CPU runs ignore it and stay exact fp32.
    tf32: bool = False
    # CPU runs: "tuned" keeps the step's large activations in glibc's heap between steps instead of returning them
    # to the kernel and faulting them in again (cjepa.utils.cpu_allocator); "system" leaves malloc as it is.
    cpu_allocator: Literal["tuned", "system"] = "tuned"

    def validate(self) -> None:
        if self.grad_accum < 1:
            raise ConfigError("train.grad_accum must be >= 1")
        if self.log_every < 1:
            # also the host-read interval of the NaN check: the trainer reads losses only every log_every steps
            raise ConfigError("train.log_every must be >= 1")
