"""train.tf32: TF32 matmuls and cuDNN convolutions switched on for CUDA runs only, from Trainer.fit."""

import pytest
import torch

from cjepa.config import load_config
from cjepa.utils.precision import apply_tf32
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
