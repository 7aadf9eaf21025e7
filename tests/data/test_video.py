"""cjepa.data.video: the one frame preprocessing, mask resizing, and PyAV encode/decode."""

import numpy as np
import pytest
import torch

from benchmarks.common import fill_freed_heap
from cjepa.data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoDecodeError,
    decode_frames,
    denormalise,
    encode_video,
    nearest_indices,
    preprocess_frames,
    probe_video,
    psnr,
    resize_masks,
)


def moving_square(T=10, H=48, W=64):
    f = np.full((T, H, W, 3), 170, np.uint8)
    for t in range(T):
        f[t, 10:26, 4 + 3 * t : 20 + 3 * t] = (173, 35, 35)
        f[t, 30:44, 40:56] = (42, 75, 215)
    return f


def test_preprocess_shapes_and_normalisation():
    """uint8 (T,H,W,3) -> float32 (T,3,h,w); without resizing the values are exactly (x/255 - mean)/std."""
    frames = moving_square(3)
    out = preprocess_frames(frames)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 48, 64)
    expect = (torch.from_numpy(frames).permute(0, 3, 1,
                                               2).float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1,
                                                                                                   1)) / torch.tensor(
        IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expect)
    torch.testing.assert_close(denormalise(out), torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)


def test_preprocess_resize_is_antialiased_bilinear():
    """Downscaling by 2 averages (antialias), a constant image stays constant, any (h, w) is allowed (aspect not
    kept, Q16)."""
    checker = np.zeros((1, 8, 8, 3), np.uint8)
    checker[0, ::2, ::2] = 255
    checker[0, 1::2, 1::2] = 255
    out = denormalise(preprocess_frames(checker, (4, 4)))
    inner = out[..., 1:3, 1:3]  # the triangle filter's support is renormalised at the border
    torch.testing.assert_close(inner, torch.full_like(inner, 0.5), atol=0.5 / 255 + 1e-5,
                               rtol=0)  # resized in uint8: rounded
    assert (out - 0.5).abs().max() < 0.02
    const = np.full((2, 30, 50, 3), 99, np.uint8)
    out = denormalise(preprocess_frames(const, (7, 13)))
    assert out.shape == (2, 3, 7, 13)
    torch.testing.assert_close(out, torch.full_like(out, 99 / 255), atol=1e-5, rtol=0)


def test_preprocess_resize_matches_float_resampling_within_rounding():
    """The uint8 kernel equals resampling the floats, then rounding to the nearest grey level (within 1 level)."""
    import torch.nn.functional as F

    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    ours = denormalise(preprocess_frames(frames, (17, 23))) * 255
    ref = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(17, 23), mode="bilinear",
                        antialias=True)
    assert (ours - ref).abs().max() <= 1.0 + 1e-3 and (ours - ref).abs().mean() < 0.3


def test_preprocess_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(np.zeros((2, 8, 8, 3), np.float32))


def test_resize_masks_nearest_keeps_ids():
    """Mask ids are sampled, never blended; pixel-centre nearest sampling."""
    m = np.zeros((2, 6, 9), np.int64)
    m[:, :3, :3] = 1
    m[:, 3:, 6:] = 7
    out = resize_masks(m, (3, 3))
    assert set(np.unique(out)) <= {0, 1, 7}
    np.testing.assert_array_equal(out[0], [[1, 0, 0], [0, 0, 7], [0, 0, 7]])
    assert resize_masks(m) is m
    np.testing.assert_array_equal(nearest_indices(4, 2), [1, 3])


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_encode_decode_round_trip(codec):
    """Encoded then decoded frames stay within codec tolerance (PSNR), every frame comes back, in order."""
    frames = moving_square()
    data = encode_video(frames, fps=25, codec=codec)
    info = probe_video(data)
    assert (info.num_frames, info.height, info.width) == (10, 48, 64)
    back = decode_frames(data)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert psnr(back, frames) > 30  # yuv420p halves chroma resolution: saturated edges cost most of the error
    assert np.abs(back.astype(int) - frames).mean() < 2.0
    some = decode_frames(data, [7, 2, 2])
    np.testing.assert_array_equal(some, back[[7, 2, 2]])


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_seeking_gives_the_same_frames_as_decoding_from_the_start(codec):
    """Clips that start on, before and after key frames (GOP 16) decode to exactly the frames of a full decode."""
    frames = np.concatenate([moving_square(20)] * 3)  # 60 frames
    frames[:, :4, :4] = np.arange(60, dtype=np.uint8)[:, None, None, None] * 4  # a frame counter in the corner
    data = encode_video(frames, fps=25, codec=codec)
    full = decode_frames(data)
    for start in (24, 31, 32, 33, 47, 48, 50):
        idx = np.arange(start, min(start + 9, 60), 2)
        np.testing.assert_array_equal(decode_frames(data, idx), full[idx])
        np.testing.assert_array_equal(decode_frames(data, idx[::-1]), full[idx[::-1]])


def test_frames_convert_as_pyav_converts_them():
    """Our own reformatter gives exactly the pixels of PyAV's ``to_ndarray(format="rgb24")``."""
    import io

    import av

    data = encode_video(moving_square(), fps=25)
    with av.open(io.BytesIO(data)) as container:
        theirs = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    np.testing.assert_array_equal(decode_frames(data), theirs)


def test_a_worker_forked_after_the_parent_decoded_decodes_too():
    """A DataLoader worker is a fork of a process that has usually decoded already (validation, a DALI reference).
    PyAV >= 18.1.1 converts frames through a swscale context kept per thread, which a fork inherits without its
    threads: the child hung in its first conversion. Decoding must not depend on what the parent did."""
    import multiprocessing

    data = encode_video(moving_square(), fps=25)
    expected = decode_frames(data)  # the parent decodes first
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(decode_frames, (data,)).get(timeout=120)  # a hang is a timeout, not a stuck suite
    np.testing.assert_array_equal(got, expected)


def test_encoding_is_deterministic():
    frames = moving_square()
    assert encode_video(frames, fps=25) == encode_video(frames, fps=25)


@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_encoding_does_not_depend_on_the_process_heap(codec):
    """The bytes are a function of the frames alone, whatever the heap of the process holds: x264's
    macroblock-tree rate control let freed memory into its decisions on small frames (world videos differed
    between two renders of the same seed). Demo-sized world videos (32x32, 64 frames), re-encoded after the freed
    heap was filled with different bytes."""
    from cjepa.data.world.generate import generate_video
    from tests.data.conftest import tiny_world

    cfg = tiny_world(height=32, width=32, num_frames=64, future_frames=0, view_width=4.0, codec=codec)
    for index in range(3):
        frames = generate_video(cfg, "train", index).frames
        reference = encode_video(frames, fps=cfg.fps, codec=codec)
        for byte in (0x00, 0xFF, 0x5A, 0xA5):
            fill_freed_heap(byte)
            assert encode_video(frames, fps=cfg.fps,
                                codec=codec) == reference, f"video {index}, freed heap filled with {byte:#04x}"


def test_decode_errors_are_clear():
    """Empty, garbage and truncated bytes, and frames beyond the end, raise VideoDecodeError."""
    data = encode_video(moving_square(), fps=25)
    with pytest.raises(VideoDecodeError, match="empty"):
        decode_frames(b"")
    with pytest.raises(VideoDecodeError):
        decode_frames(b"not a video at all" * 100)
    with pytest.raises(VideoDecodeError):
        probe_video(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError, match="10 frames"):
        decode_frames(data, [12])
    with pytest.raises(ValueError, match="even"):
        encode_video(np.zeros((2, 7, 8, 3), np.uint8), fps=25)
