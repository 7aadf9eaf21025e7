"""Load DINOv2 weights from a local file in any of the layouts they are published in.

Nothing is downloaded: the user names a file. Accepted layouts:

* Hugging Face ``transformers`` (``model.safetensors`` / ``pytorch_model.bin`` of ``facebook/dinov2-small``, or a
  directory holding one), in both attention namings transformers has used: ``attention.attention.{query,key,value}``
  + ``attention.output.dense`` (4.x) and ``attention.{q,k,v,o}_proj`` (5.x);
* timm (``vit_small_patch14_dinov2.lvd142m``): ``blocks.{i}.attn.qkv`` with a packed q/k/v projection;
* the original facebookresearch ``dinov2_vits14_pretrain.pth`` (timm names plus ``mask_token``, optionally with
  chunked blocks ``blocks.{chunk}.{i}``);
* any of the above under a prefix (``backbone.``, ``module.``, a VideoSAUR checkpoint's
  ``encoder.module.backbone.``, ...), which is detected and stripped.

Every source is first converted to one canonical (timm-style) naming, then to the naming of the installed
transformers model, so a checkpoint written by one transformers version loads into another. The report lists
missing and unexpected keys by name; shape mismatches are errors that name the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

_HF_ANCHOR = "embeddings.patch_embeddings.projection.weight"
_TIMM_ANCHOR = "patch_embed.proj.weight"


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not fit the model; the message names file and key."""


@dataclass
class LoadReport:
    """What a weight load did, for logs and tests."""

    source: str  # file read
    layout: str  # hf, timm (timm or facebookresearch naming)
    prefix: str  # stripped prefix ("" if none)
    loaded: int = 0  # tensors copied into the model
    missing: list[str] = field(default_factory=list)  # model keys the file did not provide
    unexpected: list[str] = field(default_factory=list)  # file keys (under the prefix) that mean nothing here
    ignored_outside_prefix: int = 0  # file keys outside the backbone prefix (e.g. the rest of a VideoSAUR ckpt)

    def __str__(self) -> str:
        parts = [f"{self.loaded} tensors from {self.source} ({self.layout} layout"]
        parts[0] += f", prefix '{self.prefix}')" if self.prefix else ")"
        if self.missing:
            parts.append(f"missing {len(self.missing)}: "
                         f"{', '.join(self.missing[:8])}{' ...' if len(self.missing) > 8 else ''}")
        if self.unexpected:
            parts.append(
                f"unexpected {len(self.unexpected)}: "
                f"{', '.join(self.unexpected[:8])}{' ...' if len(self.unexpected) > 8 else ''}"
            )
        if self.ignored_outside_prefix:
            parts.append(f"{self.ignored_outside_prefix} keys outside the backbone ignored")
        return "; ".join(parts)


# ------------------------------------------------------------------------------------------------ reading


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (safetensors or a torch pickle read with weights_only=True)."""
    p = Path(path)
    if p.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "model.pt"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise WeightsError(f"{path}: directory holds no model.safetensors, pytorch_model.bin or model.pt")
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise WeightsError(f"{p} is not a readable safetensors file: {err}") from err
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"{p} cannot be read as a state_dict with weights_only=True: {type(err).__name__}: {err}"
        ) from err
    for wrapper in ("state_dict", "model", "teacher"):  # Lightning, generic, DINOv2 training checkpoints
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{p} does not hold a state_dict of tensors")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _find_prefix(sd: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """(layout, prefix) from the key that every DINOv2 layout has exactly once."""
    found = []
    for k in sd:
        for layout, anchor in (("hf", _HF_ANCHOR), ("timm", _TIMM_ANCHOR)):
            if k.endswith(anchor) and (len(k) == len(anchor) or k[-len(anchor) - 1] == "."):
                found.append((layout, k[: -len(anchor)]))
    if not found:
        raise WeightsError(
            f"no DINOv2 backbone found: none of the {len(sd)} keys ends with '{_HF_ANCHOR}' (transformers) or "
            f"'{_TIMM_ANCHOR}' (timm / facebookresearch); first keys: {list(sd)[:5]}"
        )
    if len(found) > 1:
        raise WeightsError(f"several DINOv2 backbones in one file (prefixes {[p for _, p in found]}); cannot choose")
    return found[0]


# ------------------------------------------------------------------------------------------------ naming


def hf_to_canonical(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """transformers Dinov2Model keys (either attention naming) -> canonical timm-style keys."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    direct = {
        "embeddings.cls_token": "cls_token",
        "embeddings.mask_token": "mask_token",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
    }
    per_layer = {
        "norm1": "norm1",
        "norm2": "norm2",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
        "attention.output.dense": "attn.proj",
        "attention.o_proj": "attn.proj",
    }
    qkv_names = {
        "attention.attention.query": "q",
        "attention.attention.key": "k",
        "attention.attention.value": "v",
        "attention.q_proj": "q",
        "attention.k_proj": "k",
        "attention.v_proj": "v",
    }
    layer_re = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$")
    for k, v in sd.items():
        if k in direct:
            out[direct[k]] = v
            continue
        m = layer_re.match(k)
        if not m:
            unknown.append(k)
            continue
        i, mod, leaf = int(m.group(1)), m.group(2), m.group(3)
        if leaf == "lambda1" and mod in ("layer_scale1", "layer_scale2"):
            out[f"blocks.{i}.ls{mod[-1]}.gamma"] = v
        elif mod in qkv_names:
            qkv.setdefault((i, leaf), {})[qkv_names[mod]] = v
        elif mod in per_layer:
            out[f"blocks.{i}.{per_layer[mod]}.{leaf}"] = v
        else:
            unknown.append(k)
    for (i, leaf), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise WeightsError(f"layer {i}: attention {leaf} has only {sorted(parts)} of q/k/v")
        out[f"blocks.{i}.attn.qkv.{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out, unknown


def timm_to_canonical(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """timm / facebookresearch keys -> canonical (flattens facebookresearch's chunked ``blocks.{c}.{i}``)."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    chunked = re.compile(r"blocks\.\d+\.(\d+)\.(norm1|norm2|attn|ls1|ls2|mlp)\.(.+)$")
    flat = re.compile(r"blocks\.(\d+)\.(norm1|norm2|attn|ls1|ls2|mlp)\.(.+)$")
    top = {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
           "norm.bias"}
    for k, v in sd.items():
        if k in top:
            out[k] = v
            continue
        m = chunked.match(k) or flat.match(k)
        if m:
            out[f"blocks.{int(m.group(1))}.{m.group(2)}.{m.group(3)}"] = v
        else:
            unknown.append(k)  # e.g. a classifier head, register tokens
    return out, unknown


def canonical_to_hf(sd: Mapping[str, torch.Tensor], new_naming: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Canonical keys -> the installed transformers naming (``new_naming``: q_proj/k_proj/v_proj/o_proj)."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    direct = {
        "cls_token": "embeddings.cls_token",
        "mask_token": "embeddings.mask_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    if new_naming:
        q, k_, v_, o = "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj"
    else:
        q, k_, v_, o = (
            "attention.attention.query",
            "attention.attention.key",
            "attention.attention.value",
            "attention.output.dense",
        )
    block = re.compile(r"blocks\.(\d+)\.(.+)\.(weight|bias|gamma)$")
    for key, val in sd.items():
        if key in direct:
            t = val
            if key == "mask_token" and t.dim() == 3:  # some exports keep (1, 1, D)
                t = t.reshape(1, -1)
            out[direct[key]] = t
            continue
        m = block.match(key)
        if not m:
            unknown.append(key)
            continue
        i, mod, leaf = m.group(1), m.group(2), m.group(3)
        pre = f"encoder.layer.{i}."
        if mod in ("ls1", "ls2") and leaf == "gamma":
            out[pre + f"layer_scale{mod[-1]}.lambda1"] = val
        elif mod == "attn.qkv":
            dq = val.shape[0] // 3
            for name, part in zip((q, k_, v_), val.split(dq, dim=0)):
                out[pre + f"{name}.{leaf}"] = part
        elif mod == "attn.proj":
            out[pre + f"{o}.{leaf}"] = val
        elif mod in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            out[pre + f"{mod}.{leaf}"] = val
        else:
            unknown.append(key)
    return out, unknown


def to_canonical(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str, str, list[str], int]:
    """Any supported source -> (canonical dict, layout, prefix, unknown keys, keys outside the prefix)."""
    layout, prefix = _find_prefix(sd)
    inside = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    outside = len(sd) - len(inside)
    canon, unknown = hf_to_canonical(inside) if layout == "hf" else timm_to_canonical(inside)
    return canon, layout, prefix, unknown, outside


def load_into_hf_model(model: torch.nn.Module, path: str | os.PathLike) -> LoadReport:
    """Copy the DINOv2 weights of `path` into a transformers ``Dinov2Model``; returns what happened.

    Raises WeightsError on shape mismatches (naming the key and both shapes) and when a required tensor is
    missing; ``mask_token`` (unused when no patches are masked, absent from timm files) may be missing.
    """
    sd = read_state_dict(path)
    canon, layout, prefix, unknown, outside = to_canonical(sd)
    target_keys = model.state_dict()
    new_naming = any(".attention.q_proj." in k for k in target_keys)
    converted, unknown2 = canonical_to_hf(canon, new_naming)
    report = LoadReport(source=str(path), layout=layout, prefix=prefix, ignored_outside_prefix=outside)
    report.unexpected = sorted(unknown + unknown2 + [k for k in converted if k not in target_keys])
    for k, v in converted.items():
        if k in target_keys and tuple(v.shape) != tuple(target_keys[k].shape):
            raise WeightsError(
                f"{path}: tensor for {k} has shape {tuple(v.shape)}, the model expects {tuple(target_keys[k].shape)} "
                "(wrong model size, or encoder.backbone.pos_grid / dims do not match the weights)"
            )
    usable = {k: v for k, v in converted.items() if k in target_keys}
    report.missing = sorted(k for k in target_keys if k not in usable)
    hard_missing = [k for k in report.missing if not k.endswith("mask_token")]
    if hard_missing:
        raise WeightsError(f"{path}: the weights lack {len(hard_missing)} backbone tensors, e.g. {hard_missing[:5]}; "
                           f"{report}")
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report
