"""Contracts of the C-JEPA losses, checked against hand computations."""

import pytest
import torch

from cjepa.losses import future_mse, future_mse_relative_to_copy_last, masked_history_mse, predictor_losses


def test_masked_history_mse_by_hand():
    """Mean of squared errors over masked (b, s) pairs x history steps x D; t=0 included or not (Q2)."""
    pred = torch.zeros(2, 3, 2, 1)
    target = torch.zeros(2, 3, 2, 1)
    target[0, :, 1, 0] = torch.tensor([1.0, 2.0, 3.0])  # sample 0, slot 1 (masked)
    target[1, :, 0, 0] = torch.tensor([4.0, 0.0, 2.0])  # sample 1, slot 0 (masked)
    target[0, :, 0, 0] = 100.0  # not masked: must not count
    masked = torch.tensor([[False, True], [True, False]])
    with_t0 = masked_history_mse(pred, target, masked, include_t0=True)
    assert torch.isclose(with_t0, torch.tensor((1 + 4 + 9 + 16 + 0 + 4) / 6))
    without_t0 = masked_history_mse(pred, target, masked, include_t0=False)
    assert torch.isclose(without_t0, torch.tensor((4 + 9 + 0 + 4) / 4))


def test_masked_history_equals_original_gather_when_masks_are_shared():
    """With one masked set for the batch, our mean equals F.mse_loss on the gathered slots (the original)."""
    pred, target = torch.randn(4, 6, 7, 8), torch.randn(4, 6, 7, 8)
    idx = torch.tensor([0, 1, 5])
    masked = torch.zeros(4, 7, dtype=torch.bool)
    masked[:, idx] = True
    ref = torch.nn.functional.mse_loss(pred[:, :, idx], target[:, :, idx])
    assert torch.isclose(masked_history_mse(pred, target, masked, include_t0=True), ref, atol=1e-6)


def test_nothing_masked_gives_exact_zero_in_graph():
    """M=0: the history loss is 0, differentiable, and the total equals the future loss."""
    pred = torch.randn(2, 5, 3, 4, requires_grad=True)
    target = torch.randn(2, 5, 3, 4)
    out = predictor_losses(pred, target, torch.zeros(2, 3, dtype=torch.bool), history_frames=2, include_t0=False)
    assert out["loss_masked_history"].item() == 0.0
    assert torch.isclose(out["loss"], out["loss_future"])
    out["loss"].backward()
    assert pred.grad is not None and pred.grad[:, :2].abs().sum() == 0


def test_future_and_total_by_hand():
    """future = MSE over all future steps and slots; loss = history + future; targets are detached."""
    pred = torch.zeros(1, 3, 2, 1, requires_grad=True)
    target = torch.tensor([[[[0.0], [0.0]], [[2.0], [0.0]], [[1.0], [3.0]]]], requires_grad=True)
    masked = torch.tensor([[True, False]])
    out = predictor_losses(pred, target, masked, history_frames=2, include_t0=False)
    assert torch.isclose(out["loss_future"], torch.tensor((1 + 9) / 2))
    assert torch.isclose(out["loss_masked_history"], torch.tensor(4.0))
    assert torch.isclose(out["loss"], torch.tensor(9.0))
    out["loss"].backward()
    assert target.grad is None
    assert torch.isclose(future_mse(pred[:, 2:], target[:, 2:]), out["loss_future"])


def test_pusht_losses_exclude_aux_nodes_and_add_proprio():
    """Push-T: history/future losses over object slots only; proprio = future proprio node MSE; action unscored."""
    B, T, S, D = 2, 4, 3, 2
    pred = torch.zeros(B, T, S + 2, D)
    target = torch.zeros(B, T, S + 2, D)
    target[:, 3, S] = 2.0  # future proprio node
    target[:, 3, S + 1] = 50.0  # future action node: no loss
    target[:, 3, :S] = 1.0
    masked = torch.zeros(B, S, dtype=torch.bool)
    out = predictor_losses(pred, target, masked, history_frames=3, include_t0=True, num_object_slots=S)
    assert torch.isclose(out["loss_future"], torch.tensor(1.0))
    assert torch.isclose(out["loss_proprio"], torch.tensor(4.0))
    assert torch.isclose(out["loss"], torch.tensor(5.0))


def test_future_loss_relative_to_copy_last_by_hand():
    """Each future step's MSE over that step's copy-last MSE on the batch, averaged over steps; the total is
    history + that; the plain future MSE is still reported; the denominators carry no gradient."""
    T_h = 2
    target = torch.zeros(1, 4, 2, 1)
    target[0, 1] = torch.tensor([[1.0], [1.0]])  # last history frame
    target[0, 2] = torch.tensor([[2.0], [1.0]])  # step 1: copy-last MSE (1 + 0) / 2 = 0.5
    target[0, 3] = torch.tensor([[3.0], [3.0]])  # step 2: copy-last MSE (4 + 4) / 2 = 4
    target.requires_grad_(True)
    pred = torch.zeros(1, 4, 2, 1, requires_grad=True)  # step 1 MSE (4 + 1) / 2 = 2.5; step 2 MSE 9
    masked = torch.tensor([[True, False]])
    out = predictor_losses(pred, target, masked, history_frames=T_h, include_t0=False,
                           future_loss="relative_to_copy_last")
    rel = (2.5 / 0.5 + 9 / 4) / 2
    assert torch.isclose(out["loss_future_relative"], torch.tensor(rel))
    assert torch.isclose(out["loss_future"], torch.tensor((2.5 + 9) / 2))
    assert torch.isclose(out["loss"], out["loss_masked_history"] + rel)
    out["loss"].backward()
    assert target.grad is None
    assert torch.isclose(future_mse_relative_to_copy_last(pred[:, T_h:], target[:, T_h:], target[:, T_h - 1]),
                         torch.tensor(rel))
    plain = predictor_losses(pred, target, masked, history_frames=T_h, include_t0=False)
    assert "loss_future_relative" not in plain and torch.isclose(plain["loss"], plain["loss_masked_history"] + 5.75)
    with pytest.raises(ValueError, match="unknown future loss"):
        predictor_losses(pred, target, masked, history_frames=T_h, include_t0=False, future_loss="huber")


def test_future_slot_weights_by_hand_and_identity_when_off():
    """future = sum_s w_s MSE_s / sum_s w_s; no weights, empty weights and equal weights all give the plain MSE;
    in the Push-T layout the weights cover the object slots only (proprio node unweighted, action unscored)."""
    B, T, S, D = 2, 4, 3, 2
    pred = torch.zeros(B, T, S + 2, D)
    target = torch.zeros(B, T, S + 2, D)
    target[:, 3, 0] = 1.0  # slot 0: MSE 1
    target[:, 3, 1] = 3.0  # slot 1: MSE 9
    target[:, 3, S] = 2.0  # proprio: 4
    masked = torch.zeros(B, S, dtype=torch.bool)
    kw = dict(history_frames=3, include_t0=True, num_object_slots=S)
    plain = predictor_losses(pred, target, masked, **kw)
    assert torch.isclose(plain["loss_future"], torch.tensor(10 / 3))
    for same in ([], [1.0, 1.0, 1.0], [2.5, 2.5, 2.5]):
        out = predictor_losses(pred, target, masked, **kw, future_slot_weights=same)
        assert torch.isclose(out["loss"], plain["loss"]) and torch.isclose(out["loss_future"], plain["loss_future"])
    out = predictor_losses(pred, target, masked, **kw, future_slot_weights=[1.0, 4.0, 1.0])
    assert torch.isclose(out["loss_future"], torch.tensor((1 + 4 * 9) / 6))
    assert torch.isclose(out["loss_proprio"], torch.tensor(4.0))
    assert torch.isclose(out["loss"], torch.tensor((1 + 4 * 9) / 6 + 4.0))
    g = torch.randn(B, 1, S, D, requires_grad=True)  # gradients follow the weights
    future_mse(g, torch.zeros_like(g), [0.0, 1.0, 0.0]).backward()
    assert g.grad[:, :, 0].abs().sum() == 0 and g.grad[:, :, 2].abs().sum() == 0 and g.grad[:, :, 1].abs().sum() > 0
    with pytest.raises(ValueError, match="slot weights for 3 slots"):
        future_mse(pred[:, 3:, :S], target[:, 3:, :S], [1.0, 2.0])
    with pytest.raises(ValueError, match="future_loss must be 'mse'"):
        predictor_losses(pred[..., :S, :], target[..., :S, :], masked, history_frames=3, include_t0=True,
                         future_loss="relative_to_copy_last", future_slot_weights=[1.0, 2.0, 1.0])
