"""DINOv2 frame encoder and its weight loading (cjepa/models/dinov2.py, cjepa/models/dinov2_weights.py)."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from cjepa.models.dinov2 import Dinov2Backbone, RandomBackboneWarning
from cjepa.models.dinov2_weights import WeightsError, load_into_hf_model
from tests.helpers import assert_close_verbose

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "dinov2_vits14_keys.json").read_text())


def _tiny(**kw):
    torch.manual_seed(0)
    args = dict(dim=32, depth=2, heads=2, pos_grid=4, patch_size=14, image_size=56)
    args.update(kw)
    return Dinov2Backbone(**args)


@pytest.fixture(scope="module")
def vits14():
    """A real-size ViT-S/14 backbone (random init), built once for the key-mapping tests."""
    return Dinov2Backbone()


def _random_sd(layout: str, prefix: str = "") -> dict:
    g = torch.Generator().manual_seed(1)
    return {prefix + k: torch.randn(shape, generator=g) for k, shape in FIXTURE[layout]}


def _hf_key(model, block: int, which: str) -> str:
    """The installed transformers name of a block's q/k/v/o projection weight."""
    keys = model.model.state_dict()
    new = f"encoder.layer.{block}.attention.{which}_proj.weight"
    if new in keys:
        return new
    old = {
        "q": "attention.attention.query",
        "k": "attention.attention.key",
        "v": "attention.attention.value",
        "o": "attention.output.dense",
    }
    return f"encoder.layer.{block}.{old[which]}.weight"


@pytest.mark.parametrize("layout", ["timm", "facebookresearch", "transformers4"])
def test_published_vits14_layouts_load_completely(vits14, layout, tmp_path):
    """Every published ViT-S/14 layout maps onto the transformers model: nothing unexpected, only timm lacks
    mask_token."""
    sd = _random_sd(layout)
    torch.save(sd, tmp_path / "w.pth")
    report = vits14.load_weights(str(tmp_path / "w.pth"))
    assert report.unexpected == []
    assert report.missing == (["embeddings.mask_token"] if layout == "timm" else [])
    assert report.loaded == len(vits14.model.state_dict()) - len(report.missing)
    ours = vits14.model.state_dict()
    if layout == "transformers4":
        assert torch.equal(ours[_hf_key(vits14, 3, "k")], sd["encoder.layer.3.attention.attention.key.weight"])
        assert torch.equal(ours["encoder.layer.5.layer_scale2.lambda1"], sd["encoder.layer.5.layer_scale2.lambda1"])
    else:
        qkv = sd["blocks.3.attn.qkv.weight"]  # rows [q; k; v], each (384, 384)
        for i, which in enumerate("qkv"):
            assert torch.equal(ours[_hf_key(vits14, 3, which)], qkv[384 * i : 384 * (i + 1)])
        assert torch.equal(ours[_hf_key(vits14, 3, "o")], sd["blocks.3.attn.proj.weight"])
        assert torch.equal(ours["encoder.layer.7.layer_scale1.lambda1"], sd["blocks.7.ls1.gamma"])
        assert torch.equal(ours["embeddings.position_embeddings"], sd["pos_embed"])


def test_chunked_and_prefixed_facebookresearch_keys(vits14, tmp_path):
    """facebookresearch chunked blocks (blocks.{chunk}.{i}) under a 'teacher'/'backbone.' wrapper load as the flat
    layout."""
    sd = _random_sd("facebookresearch")
    chunked = {("blocks.0." + k[len("blocks.") :] if k.startswith("blocks.") else k): v for k, v in sd.items()}
    torch.save({"teacher": {"backbone." + k: v for k, v in chunked.items()}}, tmp_path / "ckpt.pth")
    report = vits14.load_weights(str(tmp_path / "ckpt.pth"))
    assert report.prefix == "backbone." and report.unexpected == [] and report.missing == []
    assert torch.equal(vits14.model.state_dict()["encoder.layer.11.norm2.weight"], sd["blocks.11.norm2.weight"])


def test_safetensors_directory_and_foreign_keys_are_reported(tmp_path):
    """A directory with model.safetensors loads; keys outside the backbone prefix are counted, extra ones listed."""
    from safetensors.torch import save_file

    src = _tiny()
    sd = {f"encoder.module.backbone.{k}": v.clone() for k, v in src.model.state_dict().items()}
    sd["decoder.module.pos_emb"] = torch.zeros(1, 4, 8)
    sd["encoder.module.backbone.pooler.weight"] = torch.zeros(2)
    (tmp_path / "m").mkdir()
    save_file(sd, str(tmp_path / "m" / "model.safetensors"))
    dst = _tiny()
    torch.manual_seed(9)
    dst.model.apply(lambda m: torch.nn.init.normal_(m.weight) if isinstance(m, torch.nn.Linear) else None)
    report = load_into_hf_model(dst.model, tmp_path / "m")
    assert report.ignored_outside_prefix == 1 and report.unexpected == ["pooler.weight"]
    for k, v in src.model.state_dict().items():
        assert torch.equal(dst.model.state_dict()[k], v), k


def test_load_errors_name_the_problem(tmp_path):
    """Missing files, files without a backbone and wrong sizes fail with messages naming the file or key."""
    m = _tiny()
    with pytest.raises(WeightsError, match="not found"):
        load_into_hf_model(m.model, tmp_path / "nope.pth")
    torch.save({"a.weight": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(WeightsError, match="no DINOv2 backbone"):
        load_into_hf_model(m.model, tmp_path / "x.pth")
    torch.save(_tiny(dim=16, heads=2).model.state_dict(), tmp_path / "small.pth")
    with pytest.raises(WeightsError, match=r"has shape \(1, 1, 16\), the model expects \(1, 1, 32\)"):
        load_into_hf_model(m.model, tmp_path / "small.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="safetensors"):
        load_into_hf_model(m.model, tmp_path / "bad.safetensors")


def test_features_pre_and_post_layernorm_and_last_block_keys():
    """post_ln = final LayerNorm(pre_ln); keys = last block's key projection of its normed input, CLS removed."""
    post, pre = _tiny(features="post_ln"), _tiny(features="pre_ln")
    pre.load_state_dict(post.state_dict())
    x = torch.randn(2, 3, 56, 56)
    a, b = post(x, need_keys=True), pre(x, need_keys=True)
    assert a["features"].shape == (2, 16, 32) and a["keys"].shape == (2, 16, 32)
    assert_close_verbose(a["features"], post.model.layernorm(b["features"]), 1e-5, 1e-5, "post = LN(pre)")
    hs = post.model(pixel_values=x, output_hidden_states=True).hidden_states
    last = post.model.encoder.layer[-1]
    kproj = last.attention.k_proj if hasattr(last.attention, "k_proj") else last.attention.attention.key
    assert_close_verbose(a["keys"], kproj(last.norm1(hs[-2]))[:, 1:], 1e-5, 1e-5, "keys")
    assert b["keys"] is not None and torch.equal(a["keys"], b["keys"])


def test_sdpa_and_eager_attention_agree_and_chunking_is_exact():
    """The default SDPA attention gives the eager result; chunked backbone forwards equal one forward."""
    sdpa = _tiny(attn_implementation="sdpa", chunk_frames=2)
    eager = _tiny(attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.model.config._attn_implementation == "sdpa"
    x = torch.randn(5, 3, 56, 56)
    assert_close_verbose(sdpa(x)["features"], eager(x)["features"], 1e-4, 1e-4, "sdpa vs eager")


def test_frozen_backbone_has_no_grad_and_stays_in_eval():
    """Frozen: parameters need no grad, outputs carry no graph, .train() keeps the ViT in eval mode."""
    b = _tiny()
    b.train()
    assert not b.model.training
    assert not any(p.requires_grad for p in b.parameters())
    assert not b(torch.randn(1, 3, 56, 56))["features"].requires_grad


def test_random_backbone_warns_loudly():
    """Without weights the backbone warns that its features are random."""
    b = _tiny()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        b.warn_if_random()
    assert any(issubclass(x.category, RandomBackboneWarning) for x in w)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        b(torch.randn(1, 3, 50, 56))
