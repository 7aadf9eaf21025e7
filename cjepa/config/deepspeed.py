"""The DeepSpeed config dict of a run, generated from ours (there is no hand-kept ds_config.json)."""

from __future__ import annotations

from typing import Any, Optional

from cjepa.config.batch import Derived
from cjepa.config.schema import Config


def to_deepspeed(cfg: Config, derived: Derived, precision: Optional[str] = None) -> dict:
    """The DeepSpeed config dict of a run, generated from our config (there is no hand-kept ds_config.json).

    Batch sizes come from :func:`derive` (global = micro * grad_accum * world). The optimizer is AdamW with our
    hyper-parameters; param groups with their own ``lr`` (Push-T encoders) keep it. The LR schedule is not
    set here: the engine hands DeepSpeed our own schedule (``cjepa.distributed.engine.lr_lambda``) as a client
    scheduler, so a DeepSpeed run follows exactly the LR curve of a single/DDP run. ``gradient_clipping`` is
    always written: DeepSpeed's default is 1.0, which would silently clip runs that asked for none.
    ``precision`` is the run's resolved ``train.precision`` (fp32 or bf16; the engine resolves ``auto`` on its
    device); without it ``train.precision`` is taken as it is, and ``auto`` is refused.
    """
    precision = precision or cfg.train.precision
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"to_deepspeed needs a resolved precision (fp32 or bf16), got {precision!r}")
    ds, o = cfg.dist, cfg.optim
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage > 0:
        zero.update(
            reduce_bucket_size=ds.reduce_bucket_size,
            allgather_bucket_size=ds.allgather_bucket_size,
            overlap_comm=ds.overlap_comm,
            contiguous_gradients=True,
        )
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": ds.offload_pin_memory}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": ds.offload_pin_memory}
    if ds.zero_stage == 3:
        # Checkpoints keep ZeRO-3 shards; plain weights come from the fp32 master copies (cjepa.distributed.deepspeed),
        # so no 16-bit gather at save time.
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    return {
        "train_batch_size": derived.global_batch,
        "train_micro_batch_size_per_gpu": derived.micro_batch,
        "gradient_accumulation_steps": derived.grad_accum,
        "gradient_clipping": float(o.grad_clip),  # 0.0 = off
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": o.lr,
                "betas": list(o.betas),
                "eps": o.eps,
                "weight_decay": o.weight_decay,
                "torch_adam": ds.torch_adam,
            },
        },
        # train.precision=bf16 means what it means for single/DDP: autocast over fp32 weights (the trainer's
        # inputs and evaluation are fp32; DeepSpeed's "bf16" section would make the weights themselves bf16).
        # DeepSpeed then reduces the gradients of Linear layers in bf16, halving their communication.
        "torch_autocast": {"enabled": precision == "bf16", "dtype": "bfloat16"},
        "zero_optimization": zero,
        # torch's AdamW on ZeRO-Offload's CPU partitions instead of demanding DeepSpeedCPUAdam (a JIT C++ build).
        "zero_force_ds_cpu_optimizer": not ds.torch_adam,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,  # our trainer logs; DeepSpeed's own progress lines are noise
        "wall_clock_breakdown": False,
        "dump_state": False,
    }
