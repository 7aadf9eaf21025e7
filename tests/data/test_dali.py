"""cjepa.data.dali: one DALI pipeline whose decode step is NVDEC (GPU), PyAV (CPU machines) or DALI's CPU decoder (VP9).

On a CPU machine this exercises DALI's webdataset reader, sharding, resize, normalisation and iterator through the
PyAV step, the real DALI decode op on a VP9 shard, and agreement with the CPU path; the NVDEC test needs a GPU.
"""

import logging

import numpy as np
import pytest
import torch

from cjepa.config import DataConfig
from cjepa.data.loader import ClipSpec, VideoClipLoader, build_clip_loader
from cjepa.data.shards import decode_masks
from cjepa.data.video import decode_frames, denormalise, preprocess_frames, resize_masks
from tests.data.test_loader import BAD_KEYS, EXPECTED_SKIPS, KEYS, bad_split, raw_sample

pytest.importorskip("nvidia.dali")
from cjepa.data.dali import DaliClipLoader, DaliUnavailable  # noqa: E402


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((denormalise(a.float().cpu()) - denormalise(b.float().cpu())) ** 2).mean())
    return 10 * np.log10(1.0 / mse)


def check_against_pyav(batch, split_dir, size, max_mean_err):
    """Every clip equals the CPU path's preprocessing of PyAV-decoded frames (within tolerance); masks exactly."""
    for i, key in enumerate(batch["keys"]):
        raw = raw_sample(split_dir, key)
        idx = batch["frame_index"][i].numpy()
        ref = preprocess_frames(decode_frames(raw["mp4"], idx), size)
        err = (batch["frames"][i].float().cpu() - ref).abs()
        assert err.mean() < max_mean_err, (key, float(err.mean()))
        if "masks" in batch:
            np.testing.assert_array_equal(batch["masks"][i].cpu().numpy(), resize_masks(decode_masks(raw["masks.npz"], idx), size))


def test_pyav_step_batch_contract_and_agreement(world_shards):
    """Reader -> prepare -> PyAV decode -> DALI resize -> crop_mirror_normalize -> iterator: the CPU path's contract and values."""
    loader = DaliClipLoader(world_shards / "train", batch_size=3, clip=ClipSpec(4, 2), image_size=(24, 32), decode="pyav", seed=2)
    assert loader.decode == "pyav" and len(loader) == 2
    batches = list(loader)
    assert len(batches) == 2
    for b in batches:
        assert b["frames"].shape == (3, 4, 3, 24, 32) and b["frames"].dtype == torch.float32
        assert b["masks"].shape == (3, 4, 24, 32) and b["masks"].dtype == torch.int16
        assert b["frame_index"].dtype == torch.int64 and (b["frame_index"].diff(dim=1) == 2).all()
        check_against_pyav(b, world_shards / "train", (24, 32), max_mean_err=0.01)  # DALI's resampling kernel vs torch's
    keys = [k for b in batches for k in b["keys"]]
    assert len(set(keys)) == 6 and set(keys) <= set(KEYS)  # an exact pass: 7 samples, 2 full batches, no repeats


def test_dali_cpu_video_decoder_on_vp9(world_vp9_shards):
    """The real fn.decoders.video op (CPU backend, VP9) with per-sample frame indices; PSNR against PyAV."""
    for size in [(48, 64), (24, 40)]:
        loader = DaliClipLoader(world_vp9_shards / "train", batch_size=2, clip=ClipSpec(5, 3), image_size=size, decode="cpu", train=False)
        n = 0
        for b in loader:
            for i, key in enumerate(b["keys"]):
                raw = raw_sample(world_vp9_shards / "train", key)
                ref = preprocess_frames(decode_frames(raw["mp4"], b["frame_index"][i].numpy()), size)
                assert psnr01(b["frames"][i], ref) > 35, key  # DALI's own YUV->RGB vs FFmpeg's: compare by PSNR, not max error
                n += 1
        assert n == 4


def test_ranks_read_disjoint_parts(world_shards):
    """fn.readers.webdataset shard_id/num_shards: the two ranks' samples are disjoint and cover the split."""
    seen = []
    for rank in range(2):
        loader = DaliClipLoader(world_shards / "train", batch_size=2, clip=ClipSpec(3, 2), image_size=(16, 16), decode="pyav", train=False,
                                rank=rank, world_size=2)
        seen.append([k for b in loader for k in b["keys"]])
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == KEYS


def test_dali_resume_continues_the_stream(world_shards):
    kw = dict(batch_size=2, clip=ClipSpec(3, 2), image_size=(16, 16), decode="pyav", seed=4)

    def take(loader, n):
        out = []
        while len(out) < n:
            for b in loader:
                out.append((b["keys"], b["frame_index"].tolist()))
                if len(out) == n:
                    break
        return out

    full = take(DaliClipLoader(world_shards / "train", **kw), 7)
    first = DaliClipLoader(world_shards / "train", **kw)
    head = take(first, 4)
    resumed = DaliClipLoader(world_shards / "train", **kw)
    resumed.load_state_dict(first.state_dict())
    assert head + take(resumed, 3) == full


def test_dali_skips_bad_samples(tmp_path, caplog):
    """The same bad data as the CPU path: skipped, counted by the same reasons, one log line each with shard and key."""
    split_dir = bad_split(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cjepa.data"):
        loader = DaliClipLoader(split_dir, batch_size=2, clip=ClipSpec(4, 2), image_size=(16, 16), with_masks=True, decode="pyav", train=False)
        keys = sorted(k for b in loader for k in b["keys"])
    assert keys == ["g0", "g1", "g2", "g3"]
    assert dict(loader.skipped) == EXPECTED_SKIPS
    lines = [r.getMessage() for r in caplog.records if "skipped sample" in r.getMessage()]
    for key in BAD_KEYS:
        assert len([x for x in lines if f"key {key}:" in x]) == 1 and all(".tar" in x for x in lines), (key, lines)


def test_clear_errors_where_dali_cannot_decode(world_shards):
    """H.264 on DALI's CPU decoder, or NVDEC without a GPU: DaliUnavailable saying what to do instead."""
    with pytest.raises(DaliUnavailable, match="cannot decode h264"):
        DaliClipLoader(world_shards / "train", decode="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DaliUnavailable, match="needs a CUDA GPU"):
            DaliClipLoader(world_shards / "train", decode="nvdec")
        loader = build_clip_loader(DataConfig(shards=str(world_shards), decoder="dali", video_batch_size=2, image_size=(16, 16)), "train")
        assert isinstance(loader, DaliClipLoader) and loader.decode == "pyav"


def test_missing_dali_is_a_clear_error(world_shards, monkeypatch):
    """Without the DALI package, asking for the DALI path says what to install (or to use data.decoder=pyav)."""
    import sys

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # makes `import nvidia.dali` raise ImportError
    with pytest.raises(DaliUnavailable, match="pip install nvidia-dali"):
        DaliClipLoader(world_shards / "train", decode="pyav")


@pytest.mark.gpu
def test_nvdec_decodes_h264_on_the_gpu(world_shards):
    """fn.decoders.video(device='mixed'): frames arrive on the GPU, agree with PyAV by PSNR, same contract as the CPU path."""
    loader = DaliClipLoader(world_shards / "train", batch_size=2, clip=ClipSpec(4, 2), image_size=(48, 64), decode="nvdec", train=False)
    cpu = VideoClipLoader(world_shards / "train", batch_size=2, clip=ClipSpec(4, 2), image_size=(48, 64), train=False)
    b = next(iter(loader))
    assert b["frames"].is_cuda and b["frames"].dtype == torch.float32 and b["frames"].shape == (2, 4, 3, 48, 64)
    assert b["masks"].is_cuda and b["masks"].dtype == torch.int16
    for i, key in enumerate(b["keys"]):
        raw = raw_sample(world_shards / "train", key)
        ref = preprocess_frames(decode_frames(raw["mp4"], b["frame_index"][i].numpy()), (48, 64))
        assert psnr01(b["frames"][i], ref) > 35
    assert set(next(iter(cpu))) == set(b)
