"""DeepSpeed ZeRO engine on CPU (gloo, DS_ACCELERATOR=cpu): parity, checkpoints, conversion, failure handling.

Spawned DeepSpeed runs cost about 10 s each once DeepSpeed's shared-memory op is built (about a minute, once per
machine), so one 2-rank spawn trains every variant the parity and resume tests need, one 1-rank spawn resumes
its checkpoints at another world size, and one more spawn kills a rank. The tests then read the run dirs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cjepa.config import ConfigError, derive, load_config, to_deepspeed
from cjepa.trainer import Trainer, build_task
from cjepa.utils.checkpoint import STEP_DIR, latest_checkpoint, load_model_state
from tests.helpers import SMOKE, assert_close_verbose, dist_env_vars, free_port

STAGES = (0, 1, 2, 3)
# Adam's eps is raised from 1e-8 so that parameters whose gradient is analytically zero (the attention key bias:
# softmax ignores a shift shared by all keys) do not turn float noise of ~1e-9 into full-size updates, which would
# make any two summation orders disagree by ~lr. Every other gradient is orders of magnitude above eps.
COMMON = ["model.dropout=0.0", "optim.eps=1e-6", "train.max_steps=4", "train.ckpt_every=2", "train.val_every=2",
          "train.keep_checkpoints=0", "train.log_every=1"]
# Accumulation, clipping that really clips, and a warm-up + cosine schedule: the engine's own code paths.
ACCUM = ["train.grad_accum=2", "optim.grad_clip=0.05", "optim.schedule=cosine", "optim.warmup_steps=2",
         "optim.min_lr_ratio=0.1"]
DS = ["dist.engine=deepspeed"]
NEW_LR = 0.004  # a resume that changes the learning rate
ATOL, RTOL = 1e-6, 1e-5  # fp32 on CPU: only the order of the gradient sums differs between layouts


def _fit(out: Path, name: str, *extra: str, env=None, task=None):
    cfg = load_config([SMOKE], [f"run.out_dir={out}", f"run.name={name}", *COMMON, *extra])
    return Trainer(cfg, task or build_task(cfg), env=env, progress=False).fit()


def _copy_checkpoint(out: Path, src: str, dst: str, step: int) -> None:
    """A fresh run dir holding only `src`'s step-`step` checkpoint: resuming it continues that run."""
    target = out / dst / "checkpoints" / STEP_DIR.format(step)
    shutil.copytree(out / src / "checkpoints" / STEP_DIR.format(step), target)


def _two_rank_runs(rank: int, port: int, out: Path) -> None:
    os.environ.update(dist_env_vars(rank, 2, port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    for stage in STAGES:
        _fit(out, f"zero{stage}", *DS, f"dist.zero_stage={stage}")
    _fit(out, "zero2_accum", *DS, "dist.zero_stage=2", *ACCUM)
    _fit(out, "zero3_offload", *DS, "dist.zero_stage=3", "dist.offload_optimizer=true", "dist.offload_params=true")
    if rank == 0:
        _copy_checkpoint(out, "zero3", "zero3_resumed", 2)
        _copy_checkpoint(out, "zero1", "zero1_as_zero2", 2)
        _copy_checkpoint(out, "zero2_accum", "zero2_accum_new_lr", 2)
    dist.barrier()
    _fit(out, "zero3_resumed", *DS, "dist.zero_stage=3")
    _fit(out, "zero2_accum_new_lr", *DS, "dist.zero_stage=2", *ACCUM, f"optim.lr={NEW_LR}",
         "train.allow_config_change=true")
    _fit(out, "zero1_as_zero2", *DS, "dist.zero_stage=2")  # another ZeRO stage: through the universal format


def _one_rank_resumes(rank: int, port: int, out: Path) -> None:
    """World 1 resumes the world-2 checkpoints (DeepSpeed's universal format)."""
    os.environ.update(dist_env_vars(0, 1, port))
    torch.set_num_threads(1)
    for stage in (0, 2, 3):
        _copy_checkpoint(out, f"zero{stage}", f"zero{stage}_world1", 2)
        _fit(out, f"zero{stage}_world1", *DS, f"dist.zero_stage={stage}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Single-process references (here) and every DeepSpeed variant (two spawns) in one folder of run dirs."""
    out = tmp_path_factory.mktemp("deepspeed_runs")
    ports = {"two_ranks": free_port(), "one_rank": free_port()}
    (out / "ports.json").write_text(json.dumps(ports))
    mp.spawn(_two_rank_runs, args=(ports["two_ranks"], out), nprocs=2, join=True)
    mp.spawn(_one_rank_resumes, args=(ports["one_rank"], out), nprocs=1, join=True)
    _fit(out, "single", "dist.engine=single")
    _fit(out, "single_accum", "dist.engine=single", *ACCUM)
    return out


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_model_state(latest_checkpoint(run_dir))


def _weights_at(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_model_state(run_dir / "checkpoints" / STEP_DIR.format(step))


def _assert_same_weights(a: dict, b: dict, what: str, atol: float = ATOL, rtol: float = RTOL) -> None:
    assert a.keys() == b.keys(), f"{what}: different parameter names"
    for k in a:
        assert_close_verbose(a[k], b[k], atol=atol, rtol=rtol, name=f"{what}: {k}")


def _metric_series(run_dir: Path, key: str) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]


# --------------------------------------------------------------------------------------------- shared memory


@pytest.mark.dist
@pytest.mark.slow
def test_cpu_runs_leave_no_shared_memory_behind(runs):
    """DeepSpeed's CPU all-reduce workspaces (about 67 MB of /dev/shm each) are gone once the runs have ended."""
    ports = json.loads((runs / "ports.json").read_text())
    left = sorted(p.name for p in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_*")
                  if p.name.rsplit("_", 2)[-2] in {str(v) for v in ports.values()})
    assert left == [], f"left in /dev/shm: {left}"


# --------------------------------------------------------------------------------------------- parity


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_zero_stage_matches_single_process_adamw(runs, stage):
    """ZeRO-0/1/2/3 on 2 ranks end (and pass through step 2) with the parameters of single-process AdamW on the
    full batch, and validate to the same loss (validation is reduced over ranks; the logged train loss is rank 0's
    half of the batch)."""
    ref = runs / "single"
    _assert_same_weights(_weights_at(runs / f"zero{stage}", 2), _weights_at(ref, 2), f"zero{stage} step 2")
    _assert_same_weights(_final_weights(runs / f"zero{stage}"), _final_weights(ref), f"zero{stage} final")
    val = _metric_series(ref, "val/loss_future")
    assert len(val) == 2 and _metric_series(runs / f"zero{stage}", "val/loss_future") == pytest.approx(val, rel=1e-5)


@pytest.mark.dist
@pytest.mark.slow
def test_accumulation_clipping_and_schedule_match_single_process(runs):
    """Gradient accumulation, global-norm clipping and our warm-up + cosine LR under ZeRO-2 follow the
    single-process run step by step (LR, global grad norm, validation loss) and end with its parameters."""
    ds, ref = runs / "zero2_accum", runs / "single_accum"
    assert _metric_series(ds, "train/lr") == pytest.approx(_metric_series(ref, "train/lr"), rel=1e-12)
    norms = _metric_series(ref, "train/grad_norm")
    assert norms and min(norms) > 0.05, "the reference must really clip for this test to mean something"
    assert _metric_series(ds, "train/grad_norm") == pytest.approx(norms, rel=1e-5)
    assert _metric_series(ds, "val/loss_future") == pytest.approx(_metric_series(ref, "val/loss_future"), rel=1e-5)
    _assert_same_weights(_final_weights(ds), _final_weights(ref), "zero2 accum final")


@pytest.mark.dist
@pytest.mark.slow
def test_cpu_offload_matches_single_process(runs):
    """ZeRO-3 with optimizer and parameter offload gives the same parameters as single-process AdamW."""
    _assert_same_weights(_final_weights(runs / "zero3_offload"), _final_weights(runs / "single"), "zero3 offload final")


# --------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.dist
@pytest.mark.slow
def test_deepspeed_checkpoint_layout(runs):
    """A DeepSpeed checkpoint is one of ours (model.pt, train_state.pt, meta.json) with the ZeRO shards of every
    rank under deepspeed/ and the generated DeepSpeed config; no staging folders are left behind."""
    ckpt = latest_checkpoint(runs / "zero3")
    expected = {"model.pt", "train_state.pt", "meta.json", "config.yaml", "deepspeed_config.json", "deepspeed"}
    assert expected <= {p.name for p in ckpt.iterdir()}
    shards = sorted(p.name for p in (ckpt / "deepspeed" / "global_step4").glob("*optim_states.pt"))
    assert len(shards) == 2, shards
    assert json.loads((ckpt / "deepspeed_config.json").read_text())["zero_optimization"]["stage"] == 3
    assert not list((runs / "zero3" / "checkpoints").glob(".*")), "staging or temporary folders left behind"


@pytest.mark.dist
@pytest.mark.slow
def test_resume_equals_uninterrupted(runs):
    """ZeRO-3 resumed from its step-2 checkpoint ends bit-for-bit where the uninterrupted run ended."""
    _assert_same_weights(_final_weights(runs / "zero3_resumed"), _final_weights(runs / "zero3"), "zero3 resumed",
                         atol=0, rtol=0)
    assert _metric_series(runs / "zero3_resumed", "train/loss") == _metric_series(runs / "zero3", "train/loss")[2:]


@pytest.mark.dist
@pytest.mark.slow
def test_resume_with_a_changed_learning_rate_trains_with_it(runs):
    """A resume with another optim.lr (train.allow_config_change) trains with it, on the same schedule: every step
    after the resume has the uninterrupted run's learning rate scaled by new / old, as with the single-process
    engine (the checkpoint's optimizer holds the old rate)."""
    old_lr = load_config([SMOKE], [*COMMON, *ACCUM]).optim.lr
    uninterrupted = _metric_series(runs / "zero2_accum", "train/lr")
    resumed = _metric_series(runs / "zero2_accum_new_lr", "train/lr")
    assert len(uninterrupted) == 4 and len(set(uninterrupted[2:])) == 2  # the schedule moves after the resume
    assert resumed == pytest.approx([x * NEW_LR / old_lr for x in uninterrupted[2:]])


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("stage", (0, 2, 3))
def test_resume_with_another_world_size(runs, stage):
    """A 2-rank checkpoint resumes on 1 rank and continues the run: optimizer moments and LR schedule carry over,
    so it ends with the 2-rank run's parameters. ZeRO shards go through DeepSpeed's universal format; ZeRO-0
    keeps whole optimizer states and loads directly."""
    resumed = runs / f"zero{stage}_world1"
    universal = resumed / "checkpoints" / STEP_DIR.format(2) / "deepspeed" / "global_step2_universal"
    assert universal.is_dir() == (stage > 0)
    _assert_same_weights(_final_weights(resumed), _final_weights(runs / f"zero{stage}"), f"zero{stage} 2->1 ranks")


@pytest.mark.dist
@pytest.mark.slow
def test_resume_with_another_zero_stage(runs):
    """A ZeRO-1 checkpoint resumes under ZeRO-2 (same world) through the universal format and ends where ZeRO-1 did."""
    _assert_same_weights(_final_weights(runs / "zero1_as_zero2"), _final_weights(runs / "zero1"), "zero1 -> zero2")


@pytest.mark.dist
@pytest.mark.slow
def test_converted_zero3_weights_load_into_plain_model(runs):
    """The fp32 weights merged from ZeRO-3 shards are our plain state_dict: they load strictly into the model that
    demo, rollout and evaluation build, equal model.pt, and predict like the single-process model."""
    from cjepa.distributed.deepspeed import deepspeed_to_state_dict
    from cjepa.models.predictor import build_predictor

    ckpt = latest_checkpoint(runs / "zero3")
    sd = deepspeed_to_state_dict(ckpt)
    _assert_same_weights(sd, load_model_state(ckpt), "converted vs model.pt", atol=0, rtol=0)
    cfg = load_config([str(ckpt / "config.yaml")])
    model, ref = build_predictor(cfg.model).eval(), build_predictor(cfg.model).eval()
    model.load_state_dict(sd, strict=True)
    ref.load_state_dict(_final_weights(runs / "single"), strict=True)
    x = torch.randn(2, cfg.model.history_frames, cfg.model.num_slots, cfg.model.slot_dim)
    with torch.no_grad():
        assert_close_verbose(model.inference(x), ref.inference(x), atol=1e-5, rtol=1e-4, name="prediction")


@pytest.mark.dist
@pytest.mark.slow
def test_convert_command_writes_loadable_state_dict(runs, tmp_path, capsys):
    """`cjepa convert` turns a bare DeepSpeed save folder into a model.pt that the rollout/demo loader reads."""
    from cjepa.cli import main

    out = tmp_path / "zero2.pt"
    assert main(["convert", str(latest_checkpoint(runs / "zero2") / "deepspeed"), "-o", str(out)]) == 0
    assert "parameters" in capsys.readouterr().out
    _assert_same_weights(load_model_state(out), _final_weights(runs / "zero2"), "convert command", atol=0, rtol=0)


@pytest.mark.dist
@pytest.mark.slow
def test_every_deepspeed_state_file_loads_with_weights_only(runs):
    """The safe globals cover every file DeepSpeed writes here (ZeRO 0-3, accumulation, CPU offload, universal):
    cjepa convert reads folders from elsewhere with weights_only=True, so a class missing from the list would
    refuse a legitimate checkpoint."""
    from cjepa.distributed.deepspeed import load_deepspeed_file

    files = sorted(runs.glob("*/checkpoints/*/deepspeed/**/*.pt"))
    assert any("optim_states" in f.name for f in files) and any("model_states" in f.name for f in files)
    for f in files:
        load_deepspeed_file(f)


# --------------------------------------------------------------------------------------------- failures


def _doomed_worker(rank: int, port: int, out: Path, timeout_s: int) -> None:
    """Rank 1 is SIGKILLed at step 2; rank 0 records how it ended and when."""
    os.environ.update(dist_env_vars(rank, 2, port))
    torch.set_num_threads(1)
    cfg = load_config([SMOKE],
                      [f"run.out_dir={out}", "run.name=killed", *DS, "dist.zero_stage=2", f"dist.timeout_s={timeout_s}",
                                "train.max_steps=40", "train.ckpt_every=100"])
    task = build_task(cfg)
    if rank == 1:
        original = task.training_losses

        def losses_then_die(model, batch, step, micro_index):
            if step == 2:
                (out / "killed_at").write_text(str(time.time()))
                os.kill(os.getpid(), signal.SIGKILL)
            return original(model, batch, step, micro_index)

        task.training_losses = losses_then_die
    try:
        Trainer(cfg, task, progress=False).fit()
        outcome = "finished"
    except Exception as err:  # noqa: BLE001 - the error itself is what the test inspects
        outcome = f"{type(err).__name__}: {err}"
    (out / f"rank{rank}.json").write_text(json.dumps({"outcome": outcome, "time": time.time()}))
    os._exit(1 if outcome != "finished" else 0)


@pytest.mark.dist
@pytest.mark.slow
def test_killed_rank_fails_the_survivor_within_the_timeout(tmp_path):
    """When a rank dies mid-step, the other rank raises within dist.timeout_s instead of hanging."""
    timeout_s = 20
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_doomed_worker, args=(r, port, tmp_path, timeout_s)) for r in (0, 1)]
    for p in procs:
        p.start()
    procs[0].join(timeout=timeout_s + 90)  # startup (DeepSpeed import) + the timeout + slack
    alive = procs[0].is_alive()
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join()
    assert not alive, "the surviving rank hung instead of failing"
    assert procs[1].exitcode == -signal.SIGKILL
    assert procs[0].exitcode != 0
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["outcome"] != "finished"
    waited = report["time"] - float((tmp_path / "killed_at").read_text())
    print(f"survivor noticed the dead rank after {waited:.1f} s: {report['outcome'][:300]}")
    assert waited < timeout_s + 5, (
        f"survivor needed {waited:.1f} s to notice the dead rank (timeout {timeout_s} s): {report}"
    )


# --------------------------------------------------------------------------------------------- compile


def _compiled_runs(rank: int, port: int, out: Path) -> None:
    """One rank: the same ZeRO-2 run eager and with train.compile=true, recording DeepSpeed's engine.compile calls."""
    os.environ.update(dist_env_vars(0, 1, port))
    torch.set_num_threads(1)
    from deepspeed.runtime.engine import DeepSpeedEngine as Engine

    calls, original = [], Engine.compile

    def compile_spy(self, *args, **kwargs):
        calls.append(kwargs.get("backend", args[0] if args else None))
        return original(self, *args, **kwargs)

    Engine.compile = compile_spy
    report = {}
    for name, extra in (("eager", []), ("compiled", ["train.compile=true", "train.compile_backend=eager"])):
        cfg = load_config([SMOKE],
                          [f"run.out_dir={out}", f"run.name={name}", *COMMON, *DS, "dist.zero_stage=2", *extra])
        trainer = Trainer(cfg, build_task(cfg), progress=False)
        summary = trainer.fit()
        report[name] = {"steps": summary["steps"], "engine_compiled": trainer.engine.engine.is_compiled,
                        "model_is_engine": trainer.engine.model is trainer.engine.engine, "calls": list(calls)}
    (out / "compile.json").write_text(json.dumps(report))


@pytest.mark.dist
@pytest.mark.slow
def test_compile_uses_deepspeeds_engine_compile_and_trains(tmp_path):
    """train.compile=true under DeepSpeed calls DeepSpeed's own engine.compile (the module inside the engine is
    compiled in place, so ZeRO's hooks stay in charge) instead of wrapping the engine in torch.compile; the forward
    still goes through the engine, and the compiled run trains to the eager run's weights. The backend is
    train.compile_backend=eager: dynamo captures the same graphs, without inductor's C++ builds (minutes on CPU)."""
    mp.spawn(_compiled_runs, args=(free_port(), tmp_path), nprocs=1, join=True)
    report = json.loads((tmp_path / "compile.json").read_text())
    assert report["eager"] == {"steps": 4, "engine_compiled": False, "model_is_engine": True, "calls": []}
    assert report["compiled"] == {"steps": 4, "engine_compiled": True, "model_is_engine": True, "calls": ["eager"]}
    _assert_same_weights(_final_weights(tmp_path / "compiled"), _final_weights(tmp_path / "eager"), "compiled vs eager")


# --------------------------------------------------------------------------------------------- config


def test_to_deepspeed_is_generated_from_our_config():
    """Batch sizes come from derive(), the optimizer carries our AdamW hyper-parameters with torch's AdamW,
    clipping is always explicit (DeepSpeed would clip at 1.0), and ZeRO stage and offload follow dist.*."""
    cfg = load_config([SMOKE], ["data.batch_size=16", "train.grad_accum=2", "optim.lr=3e-4", "optim.grad_clip=0.0",
                                "dist.zero_stage=3", "dist.offload_optimizer=true", "dist.offload_params=true"])
    ds = to_deepspeed(cfg, derive(cfg, world_size=4))
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"],
            ds["gradient_accumulation_steps"]) == (16, 2, 2)
    assert ds["gradient_clipping"] == 0.0
    assert ds["optimizer"] == {"type": "AdamW",
                               "params": {"lr": 3e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01,
                                                           "torch_adam": True}}
    zero = ds["zero_optimization"]
    assert (
        zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    )
    assert "scheduler" not in ds, "the LR schedule is ours, handed over as a client scheduler"
    assert ds["torch_autocast"]["enabled"] is False
    bf16 = load_config([SMOKE], ["train.precision=bf16", "dist.zero_stage=1"])
    ds16 = to_deepspeed(bf16, derive(bf16, 2))
    assert ds16["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert "offload_optimizer" not in ds16["zero_optimization"]


@pytest.mark.parametrize("overrides, message", [
    (["dist.zero_stage=4"], "dist.zero_stage"),
    (["dist.zero_stage=2", "dist.offload_params=true"], "offload_params needs dist.zero_stage=3"),
    (["dist.zero_stage=0", "dist.offload_optimizer=true"], "offload_optimizer needs"),
    (["dist.timeout_s=0"], "dist.timeout_s"),
])
def test_invalid_deepspeed_settings_are_config_errors(overrides, message):
    """Impossible ZeRO/offload combinations fail at load time with the keys named, not inside DeepSpeed."""
    with pytest.raises(ConfigError, match=message):
        load_config([SMOKE], overrides)
