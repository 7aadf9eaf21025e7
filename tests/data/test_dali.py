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
from tests.video_helpers import take_batches

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
            np.testing.assert_array_equal(batch["masks"][i].cpu().numpy(),
                                          resize_masks(decode_masks(raw["masks.npz"], idx), size))


def test_pyav_step_batch_contract_and_agreement(world_shards):
    """Reader -> prepare -> PyAV decode -> DALI resize -> crop_mirror_normalize -> iterator: the CPU path's contract
    and values."""
    loader = DaliClipLoader(world_shards / "train", batch_size=3, clip=ClipSpec(4, 2), image_size=(24, 32),
                            decode="pyav", seed=2)
    assert loader.decode == "pyav" and len(loader) == 2
    batches = list(loader)
    assert len(batches) == 2
    for b in batches:
        assert b["frames"].shape == (3, 4, 3, 24, 32) and b["frames"].dtype == torch.float32
        assert b["masks"].shape == (3, 4, 24, 32) and b["masks"].dtype == torch.int16
        assert b["frame_index"].dtype == torch.int64 and (b["frame_index"].diff(dim=1) == 2).all()
        check_against_pyav(b, world_shards / "train", (24, 32),
                           max_mean_err=0.01)  # DALI's resampling kernel vs torch's
    keys = [k for b in batches for k in b["keys"]]
    assert len(set(keys)) == 6 and set(keys) <= set(KEYS)  # an exact pass: 7 samples, 2 full batches, no repeats


def test_dali_cpu_video_decoder_on_vp9(world_vp9_shards):
    """The real fn.decoders.video op (CPU backend, VP9) with per-sample frame indices; PSNR against PyAV."""
    for size in [(48, 64), (24, 40)]:
        loader = DaliClipLoader(world_vp9_shards / "train", batch_size=2, clip=ClipSpec(5, 3), image_size=size,
                                decode="cpu", train=False)
        n = 0
        for b in loader:
            for i, key in enumerate(b["keys"]):
                raw = raw_sample(world_vp9_shards / "train", key)
                ref = preprocess_frames(decode_frames(raw["mp4"], b["frame_index"][i].numpy()), size)
                assert psnr01(b["frames"][i],
                              ref) > 35, key  # DALI's own YUV->RGB vs FFmpeg's: compare by PSNR, not max error
                n += 1
        assert n == 4


def test_ranks_read_disjoint_parts(world_shards):
    """fn.readers.webdataset shard_id/num_shards: the two ranks' samples are disjoint and cover the split."""
    seen = []
    for rank in range(2):
        loader = DaliClipLoader(world_shards / "train", batch_size=2, clip=ClipSpec(3, 2), image_size=(16, 16),
                                decode="pyav", train=False,
                                rank=rank, world_size=2)
        seen.append([k for b in loader for k in b["keys"]])
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == KEYS


def test_dali_resume_continues_the_stream(world_shards):
    kw = dict(batch_size=2, clip=ClipSpec(3, 2), image_size=(16, 16), decode="pyav", seed=4)

    full = take_batches(DaliClipLoader(world_shards / "train", **kw), 7)
    first = DaliClipLoader(world_shards / "train", **kw)
    head = take_batches(first, 4)
    resumed = DaliClipLoader(world_shards / "train", **kw)
    resumed.load_state_dict(first.state_dict())
    assert head + take_batches(resumed, 3) == full


def test_dali_skips_bad_samples(tmp_path, caplog):
    """The same bad data as the CPU path: skipped, counted by the same reasons, one log line each with shard and key."""
    split_dir = bad_split(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cjepa.data"):
        loader = DaliClipLoader(split_dir, batch_size=2, clip=ClipSpec(4, 2), image_size=(16, 16), with_masks=True,
                                decode="pyav", train=False)
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
        loader = build_clip_loader(DataConfig(shards=str(world_shards), decoder="dali", video_batch_size=2,
                                              image_size=(16, 16)), "train")
        assert isinstance(loader, DaliClipLoader) and loader.decode == "pyav"


def test_missing_dali_is_a_clear_error(world_shards, monkeypatch):
    """Without the DALI package, asking for the DALI path says what to install (or to use data.decoder=pyav)."""
    import sys

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # makes `import nvidia.dali` raise ImportError
    with pytest.raises(DaliUnavailable, match="pip install nvidia-dali"):
        DaliClipLoader(world_shards / "train", decode="pyav")


@pytest.mark.gpu
def test_nvdec_decodes_h264_on_the_gpu(world_shards):
    """fn.decoders.video(device='mixed'): frames arrive on the GPU, agree with PyAV by PSNR, same contract as the CPU
    path."""
    loader = DaliClipLoader(world_shards / "train", batch_size=2, clip=ClipSpec(4, 2), image_size=(48, 64),
                            decode="nvdec", train=False)
    cpu = VideoClipLoader(world_shards / "train", batch_size=2, clip=ClipSpec(4, 2), image_size=(48, 64), train=False)
    b = next(iter(loader))
    assert b["frames"].is_cuda and b["frames"].dtype == torch.float32 and b["frames"].shape == (2, 4, 3, 48, 64)
    assert b["masks"].is_cuda and b["masks"].dtype == torch.int16
    for i, key in enumerate(b["keys"]):
        raw = raw_sample(world_shards / "train", key)
        ref = preprocess_frames(decode_frames(raw["mp4"], b["frame_index"][i].numpy()), (48, 64))
        assert psnr01(b["frames"][i], ref) > 35
    assert set(next(iter(cpu))) == set(b)


# --------------------------------------------------------------------------------------------- executor, video info,
# release


def op_names(pipe) -> set[str]:
    return {o._op.schema_name for o in pipe._ops}


def test_native_pipeline_is_pipelined_and_has_no_python_step(world_vp9_shards):
    """Shards with video info: prepare and decode are DALI operators, so the executor runs asynchronously and pipelined
    with a prefetch queue; the PyAV decode step keeps its python_function under the same (legal) settings."""
    for decode, python in (("cpu", False), ("pyav", True)):
        with DaliClipLoader(world_vp9_shards / "train", batch_size=2, clip=ClipSpec(4, 2), image_size=(16, 16),
                            with_masks=False,
                            decode=decode) as loader:
            assert loader.native
            next(iter(loader))
            pipe = loader._pipe
            assert pipe.exec_async and pipe.exec_pipelined and pipe.prefetch_queue_depth >= 2, decode
            assert ("PythonFunction" in op_names(pipe)) == python, (decode, op_names(pipe))


def test_native_prepare_draws_clips_inside_the_video(world_vp9_shards):
    """Clip starts drawn by DALI's random operator: every start is a valid one, the draws vary, and the same seed
    repeats them."""
    def starts(seed):
        with DaliClipLoader(world_vp9_shards / "train", batch_size=2, clip=ClipSpec(3, 4), image_size=(8, 8),
                            with_masks=False,
                            decode="cpu", seed=seed, batches_per_epoch=8) as loader:
            return [(k, int(f[0])) for b in loader for k, f in zip(b["keys"], b["frame_index"])]

    got = starts(1)
    assert all(0 <= s <= 20 - 9 for _, s in got) and len({s for _, s in got}) > 1
    assert got == starts(1) != starts(2)


def vp9_sample(key, T=12, **files_over):
    from cjepa.data.shards import build_sample
    from tests.data.test_loader import good

    frames, masks = good(key, T)
    s = build_sample(key, frames, None, masks, source="world", split="train", fps=10, codec="vp9")
    s.files.update(files_over)
    return s


def test_native_prepare_flags_bad_samples(tmp_path, caplog):
    """Without a Python step: a missing mp4, an mp4 that is not the one its video info describes, a video shorter than a
    clip and missing masks are replaced by a placeholder inside the pipeline, then skipped, counted and logged with
    shard and key; the good samples arrive decoded."""
    from cjepa.data.shards import ShardWriter

    other = vp9_sample("x", T=20).files["mp4"]
    with ShardWriter(tmp_path, "train", shard_size=3, fps=10, codec="vp9") as w:
        for s in (vp9_sample("g0"), vp9_sample("b_swapped", mp4=other), vp9_sample("g1"), vp9_sample("b_short", T=4),
                  vp9_sample("g2")):
            w.add(s)
        nomask = vp9_sample("b_nomask")
        del nomask.files["masks.npz"]
        w.add(nomask)
        empty = vp9_sample("b_empty")
        del empty.files["mp4"]
        empty.files["mp4"] = b""
        w.add(empty)
    with caplog.at_level(logging.WARNING, logger="cjepa.data"):
        with DaliClipLoader(tmp_path / "train", batch_size=2, clip=ClipSpec(4, 2), image_size=(16, 16), with_masks=True,
                            decode="cpu",
                            train=False) as loader:
            assert loader.native
            batches = list(loader)
    assert sorted(k for b in batches for k in b["keys"]) == ["g0", "g1", "g2"]
    assert dict(loader.skipped) == {"bad_video": 2, "too_short": 1, "missing_component": 1}
    lines = [r.getMessage() for r in caplog.records if "skipped sample" in r.getMessage()]
    for key in ("b_swapped", "b_short", "b_nomask", "b_empty"):
        assert len([x for x in lines if f"key {key}:" in x]) == 1 and all(".tar" in x for x in lines), (key, lines)
    for b in batches:
        for i, key in enumerate(b["keys"]):
            raw = raw_sample(tmp_path / "train", key)
            assert psnr01(b["frames"][i],
                          preprocess_frames(decode_frames(raw["mp4"], b["frame_index"][i].numpy()), (16, 16))) > 30
            np.testing.assert_array_equal(b["masks"][i].numpy(),
                                          resize_masks(decode_masks(raw["masks.npz"], b["frame_index"][i].numpy()),
                                                       (16, 16)))


def test_shards_without_video_info_fall_back_with_one_warning(tmp_path, caplog):
    """Shards written before KEY.video.i32 existed still load, through the probing prepare step, after one warning line
    that names a shard and how to re-write the split."""
    from cjepa.data.shards import VIDEO_INFO_EXT, ShardWriter

    with ShardWriter(tmp_path, "train", shard_size=2, fps=10, codec="vp9") as w:
        for i in range(3):
            s = vp9_sample(f"old{i}")
            del s.files[VIDEO_INFO_EXT]
            w.add(s)
    with caplog.at_level(logging.WARNING, logger="cjepa.data"):
        with DaliClipLoader(tmp_path / "train", batch_size=1, clip=ClipSpec(3, 2), image_size=(16, 16),
                            with_masks=False, decode="cpu",
                            train=False) as loader:
            keys = sorted(k for b in loader for k in b["keys"])
    assert not loader.native and keys == ["old0", "old1", "old2"]
    warnings = [r.getMessage() for r in caplog.records if "video info" in r.getMessage()]
    assert len(warnings) == 1 and "train-000000.tar" in warnings[0] and "--overwrite" in warnings[0], warnings


def test_native_resume_continues_the_stream(world_vp9_shards):
    """The native pipeline replays the current pass up to the saved position: the same batches as without the stop."""
    kw = dict(batch_size=1, clip=ClipSpec(3, 2), image_size=(8, 8), decode="cpu", seed=6, with_masks=False)

    full = take_batches(DaliClipLoader(world_vp9_shards / "train", **kw), 7)
    first = DaliClipLoader(world_vp9_shards / "train", **kw)
    head = take_batches(first, 3)
    resumed = DaliClipLoader(world_vp9_shards / "train", **kw)
    resumed.load_state_dict(first.state_dict())
    assert head + take_batches(resumed, 4) == full


def test_pipeline_is_released_on_close_early_stop_and_error(world_vp9_shards):
    """The pipeline (threads, decoder, buffers) goes at once when a `with` block ends, when an evaluation pass is left
    early, and when a decode error ends iteration, not whenever the garbage collector gets to it."""
    import weakref

    kw = dict(batch_size=1, clip=ClipSpec(3, 2), image_size=(8, 8), decode="pyav", with_masks=False, train=False)

    def pipeline_of(loader):
        it = iter(loader)
        next(it)
        return it, weakref.ref(loader._pipe), loader._pipe

    with DaliClipLoader(world_vp9_shards / "train", **kw) as loader:
        it, ref, pipe = pipeline_of(loader)
    assert loader._pipe is None and pipe._pipe is None  # the backend is shut down
    del pipe
    assert ref() is None

    loader = DaliClipLoader(world_vp9_shards / "train", **kw)
    it, ref, pipe = pipeline_of(loader)
    it.close()  # what a `for` loop left early does to the generator
    assert loader._pipe is None and pipe._pipe is None

    loader = DaliClipLoader(world_vp9_shards / "train", **kw)
    it = iter(loader)
    next(it)
    ref, backend = weakref.ref(loader._pipe), loader._pipe

    def broken(*a):
        raise RuntimeError("decoder failed")

    loader._convert = broken
    with pytest.raises(RuntimeError, match="decoder failed"):
        next(it)
    assert loader._pipe is None and backend._pipe is None
    del backend
    assert ref() is None
    loader.close()
