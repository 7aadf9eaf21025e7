"""The ALOE reasoner: shapes of spec A.5, tags, key padding, losses, and the original state_dict layout."""

import pytest
import torch

from cjepa.eval.vqa.model import (
    ALOEReasoner,
    load_reasoner_state,
    masked_slot_loss,
    reasoner_losses,
    sample_slot_mask,
)


def tiny(**kw):
    args = dict(num_words=30, num_answers=22, slot_dim=8, num_slots=3, num_frames=4, question_len=5, choice_len=3,
                word_dim=6, heads=2, depth=2, ffn_dim=16, dropout=0.0, head_hidden=8)
    args.update(kw)
    return ALOEReasoner(**args)


def batch(model, V=2, rows=(1, 3)):
    N = sum(rows)
    video = torch.randn(V, model.num_frames, model.num_slots, model.slot_dim)
    row_video = torch.repeat_interleave(torch.arange(V), torch.tensor(rows))
    tokens = torch.randint(1, 30, (N, model.text_len))
    pad = torch.zeros(N, model.text_len, dtype=torch.bool)
    pad[:, -2:] = True
    tokens[pad] = 0
    is_mc = torch.tensor([False] * rows[0] + [True] * (N - rows[0]))
    return video, row_video, tokens, pad, is_mc


def test_clevrer_size_matches_spec_a5():
    """d_model 144 = 18 x 8 heads; sequence 1 + 25 x 7 + 32 = 208; 22-way and per-choice outputs."""
    m = ALOEReasoner(num_words=83, num_answers=22)
    assert m.d_model == 144 and m.seq_len == 208
    assert m.transformer_encoder.pos_embedding.shape == (1, 208, 144)
    assert len(m.transformer_encoder.layers) == 12
    layer = m.transformer_encoder.layers[0]
    assert layer.norm_first and layer.linear1.out_features == 512 and layer.self_attn.num_heads == 8
    video = torch.randn(2, 25, 7, 128)
    tokens = torch.randint(0, 83, (5, 32))
    out = m.eval()(video, torch.tensor([0, 1, 1, 1, 1]), tokens, torch.zeros(5, 32, dtype=torch.bool),
                   torch.tensor([False, True, True, True, True]))
    assert out["answer_logits"].shape == (5, 22) and out["choice_logits"].shape == (5,)


def test_parameter_names_are_the_originals():
    """Our keys = CLEVRERTransformerModel's, so original ALOE checkpoints load (prefix transformer_model. stripped)."""
    keys = set(ALOEReasoner(num_words=83, num_answers=22).state_dict())
    expected = {"CLS", "text_token", "vision_token", "cls_token", "mc_question_token", "mc_choice_token",
                "q_embedding.weight",
                "q_in_proj.weight", "vision_in_proj.weight", "transformer_encoder.pos_embedding",
                "transformer_encoder.layers.11.self_attn.in_proj_weight", "transformer_encoder.layers.0.linear1.weight",
                "transformer_encoder.layers.0.norm2.bias", "cls_answer_mlp.2.weight", "mc_answer_mlp.0.bias"}
    assert expected <= keys
    assert ALOEReasoner(num_words=83, num_answers=22).q_in_proj.in_features == 18
    assert ALOEReasoner(num_words=83, num_answers=22).vision_in_proj.in_features == 130


def test_load_original_prefixed_state_and_reject_mismatch():
    a, b = tiny(), tiny()
    load_reasoner_state(b, {f"transformer_model.{k}": v for k, v in a.state_dict().items()})
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    with pytest.raises(ValueError, match="missing"):
        load_reasoner_state(b, {k: v for k, v in a.state_dict().items() if not k.startswith("CLS")})


def test_padding_hides_removed_slots_and_text_pads():
    """Values at key-padded positions (removed slots, word PADs) do not change any output."""
    torch.manual_seed(0)
    m = tiny().eval()
    video, row_video, tokens, pad, is_mc = batch(m)
    slot_pad = torch.zeros(video.shape[:3], dtype=torch.bool)
    slot_pad[:, :, 1] = True
    out = m(video, row_video, tokens, pad, is_mc, slot_pad)
    v2, t2 = video.clone(), tokens.clone()
    v2[:, :, 1] = 100.0
    t2[pad] = 7
    out2 = m(v2, row_video, t2, pad, is_mc, slot_pad)
    torch.testing.assert_close(out["answer_logits"], out2["answer_logits"])
    torch.testing.assert_close(out["choice_logits"], out2["choice_logits"])
    changed = m(v2, row_video, tokens, pad, is_mc)  # without slot padding the slot values matter
    assert not torch.allclose(out["choice_logits"], changed["choice_logits"])


def test_part_tag_distinguishes_question_and_choice_parts():
    """The same tokens read as a descriptive row or as an MC row give different outputs (part tags differ)."""
    m = tiny().eval()
    video, row_video, tokens, pad, is_mc = batch(m)
    a = m(video, row_video, tokens, pad, torch.zeros_like(is_mc))["answer_logits"]
    b = m(video, row_video, tokens, pad, torch.ones_like(is_mc))["answer_logits"]
    assert not torch.allclose(a, b)


def test_rows_are_independent_of_batching():
    """A row's output does not depend on the other rows or videos of the batch."""
    m = tiny().eval()
    video, row_video, tokens, pad, is_mc = batch(m)
    full = m(video, row_video, tokens, pad, is_mc)["choice_logits"]
    one = m(video[1:], torch.zeros(1, dtype=torch.long), tokens[2:3], pad[2:3], is_mc[2:3])["choice_logits"]
    torch.testing.assert_close(full[2:3], one, atol=1e-5, rtol=1e-5)


def test_losses_and_gradients_with_one_kind_of_row_only():
    """CE on descriptive + BCE on choice rows; a batch without one kind still gives every parameter a gradient."""
    m = tiny()
    video, row_video, tokens, pad, is_mc = batch(m, rows=(2, 0))
    out = m(video, row_video, tokens, pad, is_mc)
    label = torch.tensor([3, 5])
    losses = reasoner_losses(out, label, is_mc)
    torch.testing.assert_close(losses["loss_descriptive"],
                               torch.nn.functional.cross_entropy(out["answer_logits"], label))
    assert losses["loss_choice"].item() == 0.0
    losses["loss"].backward()
    assert all(p.grad is not None for p in m.parameters())


def test_shape_errors_name_the_expected_layout():
    m = tiny()
    with pytest.raises(ValueError, match=r"\(V, 4, 3, 8\)"):
        m(torch.randn(1, 5, 3, 8), torch.zeros(1, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long),
          torch.zeros(1, 8, dtype=torch.bool), torch.zeros(1, dtype=torch.bool))


def test_masked_slot_prediction_hides_the_masked_slots_and_reads_them_back():
    """With slot_prediction: a masked slot's value reaches no output (it enters as the mask vector), the head's
    outputs line up with the hidden slots row by row, and without a mask the outputs are the model's plain ones."""
    torch.manual_seed(0)
    m = tiny(slot_prediction=True).eval()
    plain = tiny()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("slot_")})
    video, row_video, tokens, pad, is_mc = batch(m)
    torch.testing.assert_close(m(video, row_video, tokens, pad, is_mc)["choice_logits"],
                               plain(video, row_video, tokens, pad, is_mc)["choice_logits"])
    mask = torch.zeros(video.shape[:3], dtype=torch.bool)
    mask[0, 1, 2] = mask[1, 3, 0] = mask[1, 0, 1] = True
    out = m(video, row_video, tokens, pad, is_mc, slot_mask=mask)
    v2 = video.clone()
    v2[mask] = 50.0
    out2 = m(v2, row_video, tokens, pad, is_mc, slot_mask=mask)
    torch.testing.assert_close(out["choice_logits"], out2["choice_logits"])
    torch.testing.assert_close(out["masked_slot_prediction"], out2["masked_slot_prediction"])
    # row 0 reads video 0 (one masked slot), rows 1-3 read video 1 (two each, time-major: (0, 1) before (3, 0))
    expected = [video[0, 1, 2]] + [video[1, 0, 1], video[1, 3, 0]] * 3
    torch.testing.assert_close(out["masked_slot_target"], torch.stack(expected))
    assert out["masked_slot_prediction"].shape == (7, m.slot_dim)
    loss = masked_slot_loss(out)
    torch.testing.assert_close(loss, ((out["masked_slot_prediction"] - torch.stack(expected)) ** 2).mean())
    loss.backward()
    assert m.slot_mask_token.grad.abs().sum() > 0 and m.slot_prediction_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="slot_prediction=True"):
        plain(video, row_video, tokens, pad, is_mc, slot_mask=mask)


def test_sampled_slot_masks_skip_padding_and_follow_the_ratio():
    pad = torch.zeros(64, 8, 7, dtype=torch.bool)
    pad[:, :, 6] = True
    mask = sample_slot_mask(pad, 0.25, torch.Generator().manual_seed(0))
    assert not mask[pad].any()
    assert abs(mask[~pad].float().mean().item() - 0.25) < 0.02
    again = sample_slot_mask(pad, 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)


def test_objects_layout_gives_each_slot_one_token_of_its_trajectory():
    """token_layout='objects': [CLS] + one token per slot (its frames in time order) + words; a slot padded in every
    frame reaches no output; padding that changes over time is refused."""
    torch.manual_seed(0)
    m = tiny(token_layout="objects").eval()
    assert m.seq_len == 1 + m.num_slots + m.text_len
    video, row_video, tokens, pad, is_mc = batch(m)
    tok = m.embed_video(video)  # (V, S, d)
    s = 1
    expected = m.vision_in_proj(torch.cat([video[:, :, s].reshape(2, -1), torch.tensor([0.0, 1.0]).expand(2, 2)], -1))
    torch.testing.assert_close(tok[:, s], expected)
    slot_pad = torch.zeros(video.shape[:3], dtype=torch.bool)
    slot_pad[:, :, 2] = True
    out = m(video, row_video, tokens, pad, is_mc, slot_pad)
    v2 = video.clone()
    v2[:, :, 2] = 100.0
    torch.testing.assert_close(out["choice_logits"], m(v2, row_video, tokens, pad, is_mc, slot_pad)["choice_logits"])
    v3 = video.clone()
    v3[:, 3, 0] += 1.0  # one frame of an unpadded slot
    assert not torch.allclose(out["choice_logits"], m(v3, row_video, tokens, pad, is_mc, slot_pad)["choice_logits"])
    slot_pad[:, 0, 1] = True
    with pytest.raises(ValueError, match="must not change over the frames"):
        m(video, row_video, tokens, pad, is_mc, slot_pad)
    with pytest.raises(ValueError, match="needs token_layout='frames'"):
        tiny(token_layout="objects", slot_prediction=True)
