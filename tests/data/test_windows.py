"""Contracts of training windows: every start frame, frameskip sampling, Push-T action chunks and z-scoring."""

import numpy as np
import pytest

from cjepa.data.windows import SlotWindows, fit_aux_normalizer, per_split_window_normalizer


def test_clevrer_windows_count_and_frames():
    """A 128-frame video at T_h=6, T_p=10, fs=2 gives 97 windows (starts 0..96) of frames s, s+2, ..., s+30."""
    T = 128
    vid = np.arange(T, dtype=np.float32)[:, None, None] * np.ones((1, 7, 2), np.float32)
    ds = SlotWindows({"v": vid}, 6, 10, 2)
    assert len(ds) == 97
    item = ds[5]["slots"]
    assert item.shape == (16, 7, 2)
    assert item[:, 0, 0].tolist() == list(range(5, 5 + 32, 2))


def test_pusht_actions_are_chunks_after_each_frame():
    """Push-T: step i's action node holds the fs raw actions from frame s+i*fs to the next sampled frame."""
    T, fs = 30, 5
    slots = np.zeros((T, 4, 3), np.float32)
    prop = np.arange(T, dtype=np.float32)[:, None].repeat(4, 1)
    act = np.stack([np.arange(T), -np.arange(T)], 1).astype(np.float32)
    ds = SlotWindows({"e": slots}, 3, 1, fs, proprio={"e": prop}, action={"e": act})
    assert len(ds) == T - 20 + 1
    it = ds[2]
    assert it["proprio"][:, 0].tolist() == [2, 7, 12, 17]
    assert it["action"].shape == (4, 10)
    assert it["action"][1].tolist() == [7, -7, 8, -8, 9, -9, 10, -10, 11, -11]


def test_train_normalizer_is_nan_aware_per_frame():
    """Statistics count each frame once and ignore NaN actions at episode ends (Q8)."""
    a1 = np.array([[1.0, 0.0], [3.0, 0.0], [np.nan, np.nan]])
    a2 = np.array([[5.0, 2.0], [7.0, 2.0]])
    p = [np.ones((3, 4)), np.ones((2, 4)) * 3]
    n = fit_aux_normalizer(p, [a1, a2], chunk=2)
    assert np.allclose(n.action_mean, [4, 1, 4, 1])
    assert np.allclose(n.action_std, np.tile([np.std([1, 3, 5, 7]), 1.0], 2))
    assert np.allclose(n.proprio_mean, [1.8] * 4)
    assert np.allclose(n.action_inverse(n.action(np.array([2.0, 5.0, 2.0, 5.0]))), [2, 5, 2, 5])


def test_per_split_window_normalizer_reproduces_original_weighting():
    """The original's statistics weight frames by how many windows contain them."""
    T = 12
    act = np.arange(T, dtype=np.float32)[:, None].repeat(2, 1)
    ds = SlotWindows({"e": np.zeros((T, 2, 2), np.float32)}, 1, 1, 2, proprio={"e": np.zeros((T, 4), np.float32)},
                     action={"e": act})
    n = per_split_window_normalizer(ds)
    windows = np.stack([act[s : s + 4].reshape(2, -1) for s in range(len(ds))]).reshape(-1, 4)
    assert np.allclose(n.action_mean, windows.mean(0))


def test_short_videos_error():
    """No video long enough for one window is an error that states the needed length."""
    with pytest.raises(ValueError, match="clip_len"):
        SlotWindows({"v": np.zeros((10, 3, 2), np.float32)}, 6, 10, 2)


def test_val_cap_is_evenly_spaced():
    """max_windows keeps evenly spaced windows, first and last included."""
    ds = SlotWindows({"v": np.zeros((50, 2, 2), np.float32)}, 2, 1, 1, max_windows=5)
    starts = [ds.window(i)[1] for i in range(5)]
    assert starts[0] == 0 and starts[-1] == 47 and starts == sorted(set(starts))  # 48 windows (0..47) -> 5
    assert max(b - a for a, b in zip(starts, starts[1:])) - min(b - a for a, b in zip(starts, starts[1:])) <= 1
