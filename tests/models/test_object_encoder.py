"""The fused encoder interface (cjepa/models/object_encoder.py)."""

import warnings

import pytest
import torch

from cjepa.config import load_config
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.object_encoder import check_frames, sample_noise
from tests.video_helpers import TINY_SAVI, TINY_VIDEOSAUR

TINY = {
    "videosaur": TINY_VIDEOSAUR,
    "savi": TINY_SAVI,
}


def test_noise_from_one_or_per_row_generators():
    """sample_noise: one generator -> torch.randn stream; per-row generators -> each row from its own stream."""
    g = torch.Generator().manual_seed(3)
    assert torch.equal(
        sample_noise((2, 4), device="cpu", dtype=torch.float32, generator=g),
        torch.randn((2, 4), generator=torch.Generator().manual_seed(3)),
    )
    rows = sample_noise((2, 4), device="cpu", dtype=torch.float32,
                        generator=[torch.Generator().manual_seed(s) for s in (1, 2)])
    assert torch.equal(rows[1], torch.randn(4, generator=torch.Generator().manual_seed(2)))
    with pytest.raises(ValueError, match="generators for a batch"):
        sample_noise((3, 4), device="cpu", dtype=torch.float32, generator=[g])


def test_bad_frames_are_rejected():
    """Frames must be float (B, T, 3, H, W)."""
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        check_frames(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="float"):
        check_frames(torch.zeros(1, 1, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["videosaur", "savi"])
def test_encode_runs_on_the_gpu_without_host_synchronisation(kind):
    """The fused path (resize, encoder, slot attention, decoder masks) never waits for the host on CUDA."""
    cfg = load_config([], TINY[kind])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_object_encoder(cfg.encoder, attention_backend="sdpa").cuda().eval()
    frames = torch.randn(2, 3, 3, 40, 40, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    model.encode(frames, generator=gen)  # warm-up (lazy initialisation may synchronise once)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            out = model.encode(frames, generator=gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.slots.is_cuda and out.masks.is_cuda
