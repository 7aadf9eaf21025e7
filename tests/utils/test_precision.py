"""train.precision (fp32 | bf16 | auto, resolved on the run's device) and train.tf32 (TF32 matmuls and cuDNN
convolutions switched on for CUDA runs only), both applied by Trainer.fit."""

import json

import pytest
import torch

from cjepa.config import load_config
from cjepa.utils import precision as precision_mod
from cjepa.utils.precision import apply_tf32, autocast_dtype, precision_reason, resolve_precision
from tests.helpers import SMOKE


@pytest.fixture
def restore_precision():
    """apply_tf32 changes process-wide settings: put them back after each test."""
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = cudnn


def test_cuda_device_turns_tf32_on(restore_precision):
    """On a CUDA device the flag sets matmul precision 'high' and cudnn.allow_tf32 (settings exist without a GPU)."""
    torch.backends.cudnn.allow_tf32 = False
    assert apply_tf32(True, torch.device("cuda", 0)) is True
    assert torch.get_float32_matmul_precision() == "high"
    assert torch.backends.cudnn.allow_tf32 is True


@pytest.mark.parametrize("enabled, device", [(True, "cpu"), (False, "cuda"), (False, "cpu")])
def test_cpu_or_disabled_changes_nothing(restore_precision, enabled, device):
    """CPU runs stay exact fp32 whatever the flag; tf32=false leaves the process settings as they were."""
    torch.backends.cudnn.allow_tf32 = False
    assert apply_tf32(enabled, device) is False
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cudnn.allow_tf32 is False


def test_config_key_defaults_off_and_is_typed():
    assert load_config([SMOKE]).train.tf32 is False
    assert load_config([SMOKE], ["train.tf32=true"]).train.tf32 is True
    with pytest.raises(Exception, match="train.tf32"):
        load_config([SMOKE], ["train.tf32=maybe"])


def test_trainer_fit_applies_the_flag_on_the_run_device(tmp_path, monkeypatch):
    """Trainer.fit hands train.tf32 and the device it picked to apply_tf32 before building anything."""
    import cjepa.trainer as train_mod

    calls = []
    monkeypatch.setattr(train_mod, "apply_tf32", lambda enabled,
                        device: calls.append((enabled, torch.device(device).type)))
    cfg = load_config([SMOKE], [f"run.out_dir={tmp_path}", "train.tf32=true", "train.max_steps=1", "train.val_every=0",
                                "train.ckpt_every=0"])
    train_mod.train(cfg, progress=False)
    assert calls == [(True, "cpu")]


# ---------------------------------------------------------------------------------------------- train.precision


def _cpu_features(monkeypatch, amx: bool, avx512_bf16: bool):
    """Pretend the CPU has (or lacks) AMX tiles and AVX512-BF16, as torch's feature query reports them."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)


@pytest.mark.parametrize("amx, avx512_bf16, expected", [
    (True, True, "bf16"), (True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32"),
])
def test_auto_on_cpu_follows_the_native_bf16_instructions(monkeypatch, amx, avx512_bf16, expected):
    _cpu_features(monkeypatch, amx, avx512_bf16)
    assert resolve_precision("auto", "cpu") == expected
    reason = precision_reason("auto", expected, "cpu")
    assert reason.startswith(f"{expected} (auto: CPU with")
    assert ("amx_bf16" in reason) == amx and ("avx512_bf16" in reason) == avx512_bf16


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_the_gpu(monkeypatch, supported, expected):
    _cpu_features(monkeypatch, True, True)  # the host CPU does not decide for a GPU run
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected
    assert precision_reason("auto", expected, "cuda") == f"{expected} (auto: CUDA GPU " + (
        "with" if supported else "without") + " bf16 support)"


@pytest.mark.parametrize("requested", ["fp32", "bf16"])
def test_explicit_precision_is_kept_whatever_the_hardware(monkeypatch, requested):
    _cpu_features(monkeypatch, False, False)
    assert resolve_precision(requested, "cpu") == requested
    assert precision_reason(requested, requested, "cpu") == requested


def test_other_devices_and_bad_values():
    assert resolve_precision("auto", "meta") == "fp32"
    with pytest.raises(ValueError, match=r"^train\.precision='fp16'"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match=r"^plan\.precision='fp16'"):
        resolve_precision("fp16", "cpu", "plan.precision")
    with pytest.raises(ValueError, match="not resolved"):
        autocast_dtype("auto")
    assert autocast_dtype("bf16") is torch.bfloat16 and autocast_dtype("fp32") is None


def test_config_accepts_auto_and_refuses_others():
    assert load_config([SMOKE], ["train.precision=auto"]).train.precision == "auto"
    with pytest.raises(Exception, match="train.precision"):
        load_config([SMOKE], ["train.precision=fp16"])


@pytest.mark.parametrize("has_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_trainer_logs_and_saves_the_resolved_precision(tmp_path, monkeypatch, capsys, has_bf16, expected):
    """precision=auto: the trainer autocasts as resolved, logs it, and writes it to the start row of
    config_history.jsonl and to summary.json (config.yaml keeps what was asked: auto)."""
    import cjepa.trainer as train_mod

    _cpu_features(monkeypatch, False, has_bf16)
    seen = []
    real = precision_mod.autocast
    monkeypatch.setattr(train_mod, "autocast", lambda resolved, device: seen.append(resolved) or real(resolved, device))
    cfg = load_config([SMOKE], [f"run.out_dir={tmp_path}", "train.precision=auto", "train.max_steps=2",
                                "train.val_every=0", "train.ckpt_every=0"])
    summary = train_mod.train(cfg, progress=False)
    run = tmp_path / cfg.run.name
    assert summary["precision"] == expected
    assert json.loads((run / "summary.json").read_text())["precision"] == expected
    start = json.loads((run / "config_history.jsonl").read_text().splitlines()[-1])
    assert start["precision"] == expected and start["config"]["train"]["precision"] == "auto"
    assert seen and set(seen) == {expected}
    assert f"precision={expected} (auto: CPU with" in capsys.readouterr().err
