"""Segmentation metrics of slot masks (cjepa/eval/segmentation.py)."""

import itertools
import math

import torch

from cjepa.eval.segmentation import (
    ari,
    fg_ari,
    hard_slot_ids,
    hungarian_bindings,
    mbo,
    segmentation_scores,
    slot_object_ids,
    swap_rate,
)


def _hand_ari(a: list[int], b: list[int]) -> float:
    """Hubert-Arabie ARI from pair counts (math.comb), the textbook formula."""
    n = len(a)
    pairs = lambda x: math.comb(x, 2)  # noqa: E731
    table = {}
    for x, y in zip(a, b):
        table[(x, y)] = table.get((x, y), 0) + 1
    sum_ij = sum(pairs(v) for v in table.values())
    sum_a = sum(pairs(sum(v for (x, _), v in table.items() if x == i)) for i in set(a))
    sum_b = sum(pairs(sum(v for (_, y), v in table.items() if y == j)) for j in set(b))
    expected = sum_a * sum_b / pairs(n)
    maximum = (sum_a + sum_b) / 2
    return 1.0 if maximum == expected else (sum_ij - expected) / (maximum - expected)


def _ids(rows):
    return torch.tensor(rows, dtype=torch.long)[None, None]  # (1, 1, H, W)


def test_fg_ari_is_one_for_perfect_masks_and_label_permutation_invariant():
    """Identical partitions score 1, whatever the slot numbering and whatever slots cover the background."""
    gt = _ids([[0, 0, 1, 1], [0, 2, 2, 1], [3, 3, 0, 0]])
    for perm in itertools.permutations(range(4)):
        pred = torch.tensor(perm)[gt.clamp_min(0)]
        v, ok = fg_ari(gt, pred, 4)
        assert bool(ok[0]) and abs(float(v[0]) - 1.0) < 1e-12, perm
    noisy_bg = pred.clone()
    noisy_bg[gt == 0] = torch.tensor([3, 1, 0, 2, 1])  # background pixels do not count in FG-ARI
    assert abs(float(fg_ari(gt, noisy_bg, 4)[0][0]) - 1.0) < 1e-12


def test_ari_matches_the_pair_counting_formula():
    """ARI over all pixels and FG-ARI over foreground pixels equal the textbook pair-counting ARI."""
    torch.manual_seed(0)
    gt = torch.randint(0, 4, (2, 3, 5, 6))
    pred = torch.randint(0, 5, (2, 3, 5, 6))
    all_v = ari(gt, pred, 5)
    fg_v, _ = fg_ari(gt, pred, 5)
    for b in range(2):
        g, p = gt[b].flatten().tolist(), pred[b].flatten().tolist()
        assert abs(float(all_v[b]) - _hand_ari(g, p)) < 1e-9
        keep = [i for i, x in enumerate(g) if x != 0]
        assert abs(float(fg_v[b]) - _hand_ari([g[i] for i in keep], [p[i] for i in keep])) < 1e-9


def test_per_frame_and_per_video_differ_when_slots_swap_over_time():
    """Swapping two objects' slots between frames keeps per-frame FG-ARI at 1 but lowers the per-video score."""
    f0 = [[1, 1, 2, 2]]
    gt = torch.tensor([f0, f0], dtype=torch.long)[None]  # (1, 2, 1, 4)
    pred = torch.tensor([[[0, 0, 1, 1]], [[1, 1, 0, 0]]])[None]
    per_frame, _ = fg_ari(gt, pred, 2, per="frame")
    per_video, _ = fg_ari(gt, pred, 2, per="video")
    assert torch.allclose(per_frame, torch.ones(2, dtype=torch.float64))
    assert float(per_video[0]) < 0.5


def test_samples_without_foreground_are_invalid():
    """A clip with only background has no FG-ARI / mBO (valid False, value NaN)."""
    gt = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    v, ok = fg_ari(gt, torch.zeros_like(gt), 3)
    assert not bool(ok[0]) and math.isnan(float(v[0]))
    v, ok = mbo(gt, torch.zeros_like(gt), 3)
    assert not bool(ok[0])


def test_mbo_known_values():
    """mBO = 1 for perfect masks; half-covered object gives IoU 1/2 (averaged with a perfect one: 3/4)."""
    gt = _ids([[1, 1, 2, 2], [0, 0, 0, 0]])
    assert abs(float(mbo(gt, gt.clone(), 3)[0][0]) - 1.0) < 1e-12
    pred = _ids([[1, 1, 2, 0], [0, 0, 0, 0]])  # object 2: 1 of 2 pixels, slot 2 has just that pixel -> IoU 1/2
    assert abs(float(mbo(gt, pred, 3)[0][0]) - 0.75) < 1e-12


def test_hard_slot_ids_upsample_low_resolution_masks():
    """Soft 2x2 masks upsample to the GT size and take the argmax slot per pixel."""
    masks = torch.zeros(1, 1, 2, 2, 2)
    masks[0, 0, 0, :, 0] = 1.0  # slot 0 owns the left column
    masks[0, 0, 1, :, 1] = 1.0
    ids = hard_slot_ids(masks, (4, 4))
    assert ids.shape == (1, 1, 4, 4)
    assert (ids[0, 0, :, :2] == 0).all() and (ids[0, 0, :, 2:] == 1).all()


def test_slot_object_ids_assign_each_object_its_majority_slot():
    """Each visible object goes to the slot holding most of its pixels; unused slots get -1; ids are the original
    ids."""
    gt = torch.tensor([[[0, 7, 7, 9], [0, 7, 9, 9]], [[0, 0, 7, 7], [0, 0, 0, 0]]])  # (T=2, 2, 4), ids 7 and 9
    pred = torch.tensor([[[0, 2, 2, 1], [0, 2, 1, 1]], [[0, 0, 1, 1], [0, 0, 0, 0]]])
    ids = slot_object_ids(gt, pred, 4)
    assert ids.tolist() == [[-1, 9, 7, -1], [-1, 7, -1, -1]]


def test_segmentation_scores_sums_and_counts():
    """segmentation_scores returns exact sums/counts: perfect soft masks give FG-ARI 1 and mBO 1."""
    gt = torch.tensor([[[[0, 1], [2, 2]]]]).repeat(2, 3, 1, 1)  # (B=2, T=3, 2, 2)
    masks = torch.nn.functional.one_hot(gt.long(), 3).permute(0, 1, 4, 2, 3).float()  # (B, T, S, H, W)
    s = segmentation_scores(gt.to(torch.int16), masks)
    assert float(s["fg_ari_count"]) == 2 and float(s["fg_ari_frame_count"]) == 6
    assert abs(float(s["fg_ari_sum"]) - 2) < 1e-9 and abs(float(s["mbo_sum"]) - 2) < 1e-9
    # steady slots: 2 videos x 2 comparable frames, no swap
    assert float(s["swap_rate_sum"]) == 0 and float(s["swap_rate_count"]) == 4
    # slots 1 and 2 trade objects at frame 2 of the first video: one swapped frame out of four
    masks[0, 2] = masks[0, 2][[0, 2, 1]]
    s = segmentation_scores(gt.to(torch.int16), masks)
    assert float(s["swap_rate_sum"]) == 1 and float(s["swap_rate_count"]) == 4


def test_hungarian_bindings_are_one_to_one_and_follow_the_objects():
    """Objects 7 and 9 (columns in id order) bound per frame; a slot holding both keeps only the larger overlap;
    an absent object is -1."""
    gt = torch.tensor([
        [[0, 7, 7, 9], [0, 7, 9, 9]],  # 7 in slot 2, 9 in slot 1
        [[0, 7, 7, 9], [0, 7, 9, 9]],  # the slots traded objects
        [[0, 7, 7, 7], [0, 9, 9, 0]],  # both in slot 3; 7 overlaps more, so 9 goes to its next best, slot 0
        [[0, 7, 7, 0], [0, 0, 0, 0]],  # 9 left the view
    ])
    pred = torch.tensor([
        [[0, 2, 2, 1], [0, 2, 1, 1]],
        [[0, 1, 1, 2], [0, 1, 2, 2]],
        [[0, 3, 3, 3], [0, 3, 0, 0]],
        [[0, 3, 3, 0], [0, 0, 0, 0]],
    ])
    assert hungarian_bindings(gt, pred, 4).tolist() == [[2, 1], [1, 2], [3, 0], [3, -1]]


def test_swap_rate_counts_frames_whose_binding_changed():
    """Hand-made bindings (T, G): a trade of slots, a single re-binding, occlusion (-1) that is no swap, and a
    frame with nothing comparable."""
    steady = torch.tensor([[1, 2], [1, 2], [1, 2], [1, 2]])
    assert swap_rate(steady) == (0, 3)
    traded = torch.tensor([[1, 2], [1, 2], [2, 1], [2, 1]])  # one swap at frame 2, kept after
    assert swap_rate(traded) == (1, 3)
    one_moves = torch.tensor([[1, 2], [1, 3], [1, 3], [1, 2]])  # object 1 changes slot twice
    assert swap_rate(one_moves) == (2, 3)
    occluded = torch.tensor([[1, 2], [1, -1], [1, 2], [-1, -1], [1, 2]])  # hidden, then back in its slot
    assert swap_rate(occluded) == (0, 2)  # frames 3 and 4 have no object visible in their previous frame
    back_elsewhere = torch.tensor([[1, 2], [1, -1], [1, 3]])  # returns in another slot: not compared to frame 0
    assert swap_rate(back_elsewhere) == (0, 2)
    assert swap_rate(torch.tensor([[4, 5]])) == (0, 0)
