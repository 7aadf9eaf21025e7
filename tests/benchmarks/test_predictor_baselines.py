"""benchmarks/predictor_baselines.py: the linear baseline, and where copy-last's error comes from."""

import numpy as np

from benchmarks.predictor_baselines import event_split, fit_linear, predict_linear, windows


def test_linear_baseline_is_exact_on_linear_dynamics():
    """Slots that drift by a fixed vector per frame: the least-squares map predicts every step exactly, where
    copy-last is off by k drifts at step k; windows take every start frame at the frameskip."""
    rng = np.random.default_rng(0)
    drift = rng.normal(size=(1, 3, 4))
    videos = {f"v{i}": (rng.normal(size=(1, 3, 4)) + drift * np.arange(20)[:, None, None]).astype(np.float32)
              for i in range(6)}
    train = windows(videos, history=3, horizon=2, frameskip=2, per_video=None)
    assert train.shape == (6 * (20 - 9 + 1), 5, 3, 4)
    assert np.allclose(train[1, 1], videos["v0"][3])  # second window starts at frame 1, step fs=2
    coef = fit_linear(train, history=3, ridge=1e-9)
    pred = predict_linear(coef, train[:, :3], horizon=2)
    assert np.allclose(pred, train[:, 3:], atol=1e-3)
    assert np.allclose(train[:, 3:] - train[:, 2:3], 2 * drift[None] * np.array([1, 2])[None, :, None, None],
                       atol=1e-4)


def test_event_split_by_hand():
    """One window, one step, three slots: slot 0 had a velocity change (error 4 for copy-last, 1 for the
    baseline), slot 1 none (1 and 2), slot 2 is empty (never counted)."""
    gt = np.zeros((1, 1, 3, 1))
    preds = {"copy_last": np.array([2.0, 1.0, 9.0]).reshape(1, 1, 3, 1),
             "linear": np.array([1.0, np.sqrt(2.0), 9.0]).reshape(1, 1, 3, 1)}
    events = np.array([True, False, False]).reshape(1, 1, 3)
    held = np.array([[True, True, False]])
    out = event_split(preds, gt, events, held)
    assert np.allclose(out["event_fraction_per_step"], [0.5])
    assert np.allclose(out["copy_last_error_share_of_events_per_step"], [4 / 5])
    assert np.allclose(out["linear_ratio_event_per_step"], [1 / 4])
    assert np.allclose(out["linear_ratio_no_event_per_step"], [2.0])
