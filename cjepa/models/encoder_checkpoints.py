"""Load encoder weights: our own checkpoints, and the released VideoSAUR / SAVi checkpoints of the original.

Original layouts (derived from the original module code; the key -> shape lists are in
``tests/fixtures/reference_encoder_keys.json``):

* **VideoSAUR** Lightning ``.ckpt`` (``{"state_dict": ...}``): ``initializer.{mean,log_std}``,
  ``encoder.module.backbone.*`` (a transformers Dinov2Model), ``encoder.module.output_transform.layers.{0,1,3}``,
  ``processor.module.corrector.{to_k,to_v,to_q,gru,norm_features,norm_slots}``,
  ``processor.module.predictor.blocks.{i}.{self_attn.qkv,self_attn.out_proj,linear1,linear2,norm1,norm2}``,
  ``decoder.module.{pos_emb,to_q,to_k,norm_q,norm_k,norm_memory,output_transform}``,
  ``decoder.module.{allocator.blocks.*,renderer.layers.*}``.
* **StoSAVi** nerv ``.pth``: ``encoder.{i}.0`` convs, ``encoder_pos_embedding.{dense,grid}``,
  ``encoder_out_layer.{0,1,3}``, ``init_latents``, ``kernel_dist_layer.0``, ``prior_slot_layer.*`` (unused),
  ``slot_attention.{norm_inputs,project_q.0,project_q.1,project_k,project_v,gru,mlp.{0,1,3}}``,
  ``predictor.{ln,mlp.0,mlp.2}``, ``decoder.{0..3}.0`` transposed convs + ``decoder.4``,
  ``decoder_pos_embedding.{dense,grid}``.

Mapping is a table of renames; the derived ``grid`` buffers are checked against ours and dropped, the
``prior_slot_layer`` is dropped and reported. Shape mismatches raise with the key and both shapes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn as nn

from cjepa.models.dinov2_weights import WeightsError, canonical_to_hf, read_state_dict, to_canonical
from cjepa.utils.checkpoint import resolve_checkpoint


@dataclass
class CheckpointReport:
    source: str
    layout: str  # cjepa | videosaur | savi
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        s = f"{self.loaded} tensors from {self.source} ({self.layout} layout)"
        if self.missing:
            s += f"; missing {len(self.missing)}: {', '.join(self.missing[:8])}"
        if self.unexpected:
            s += f"; unexpected {len(self.unexpected)}: {', '.join(self.unexpected[:8])}"
        for n in self.notes:
            s += f"; {n}"
        return s


def detect_layout(sd: Mapping[str, torch.Tensor]) -> str:
    keys = list(sd)
    if any(k.startswith("processor.module.corrector.") for k in keys):
        return "videosaur"
    if any(k.startswith("slot_attention.project_q.") for k in keys):
        return "savi"
    if any(k.startswith("grouper.") for k in keys):
        return "cjepa"
    raise WeightsError(f"unrecognised encoder checkpoint layout; first keys: {keys[:6]}")


# ------------------------------------------------------------------------------------------------ VideoSAUR


_VIDEOSAUR_PREFIXES = (
    ("initializer.", "initializer."),
    ("encoder.module.output_transform.", "adapter."),
    ("processor.module.corrector.norm_features.", "grouper.norm_inputs."),
    ("processor.module.corrector.mlp.layers.", "grouper.mlp."),
    ("processor.module.corrector.", "grouper."),
    ("processor.module.predictor.", "predictor."),
    ("decoder.module.", "decoder."),
)


def map_videosaur(
    sd: Mapping[str, torch.Tensor], backbone_new_naming: bool
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Original VideoSAUR state_dict -> ours. Returns (mapped, unknown keys, notes)."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    backbone = {k: v for k, v in sd.items() if k.startswith("encoder.module.backbone.")}
    canon, _, _, bb_unknown, _ = to_canonical(backbone)
    hf, unknown2 = canonical_to_hf(canon, backbone_new_naming)
    out.update({f"backbone.model.{k}": v for k, v in hf.items()})
    unknown += [f"encoder.module.backbone.{k}" for k in bb_unknown] + unknown2
    for k, v in sd.items():
        if k.startswith("encoder.module.backbone."):
            continue
        for old, new in _VIDEOSAUR_PREFIXES:
            if k.startswith(old):
                out[new + k[len(old) :]] = v
                break
        else:
            unknown.append(k)
    return out, unknown, []


# ------------------------------------------------------------------------------------------------ SAVi


_SAVI_RENAMES = (
    (r"encoder\.([0-3])\.0\.(weight|bias)$", lambda m: f"cnn.{2 * int(m.group(1))}.{m.group(2)}"),
    (r"encoder_pos_embedding\.dense\.(weight|bias)$", lambda m: f"enc_pos.dense.{m.group(1)}"),
    (r"encoder_out_layer\.([013])\.(weight|bias)$", lambda m: f"enc_mlp.{m.group(1)}.{m.group(2)}"),
    (r"init_latents$", lambda m: "initializer.slots"),
    (r"kernel_dist_layer\.0\.(weight|bias)$", lambda m: f"kernel_dist.{m.group(1)}"),
    (r"slot_attention\.norm_inputs\.(weight|bias)$", lambda m: f"grouper.norm_inputs.{m.group(1)}"),
    (r"slot_attention\.project_q\.0\.(weight|bias)$", lambda m: f"grouper.norm_slots.{m.group(1)}"),
    (r"slot_attention\.project_q\.1\.weight$", lambda m: "grouper.to_q.weight"),
    (r"slot_attention\.project_k\.weight$", lambda m: "grouper.to_k.weight"),
    (r"slot_attention\.project_v\.weight$", lambda m: "grouper.to_v.weight"),
    (r"slot_attention\.gru\.(.+)$", lambda m: f"grouper.gru.{m.group(1)}"),
    (r"slot_attention\.mlp\.([013])\.(weight|bias)$", lambda m: f"grouper.mlp.{m.group(1)}.{m.group(2)}"),
    (r"predictor\.(ln|mlp\.0|mlp\.2)\.(weight|bias)$", lambda m: f"predictor.{m.group(1)}.{m.group(2)}"),
    (r"decoder\.([0-3])\.0\.(weight|bias)$", lambda m: f"decoder.{2 * int(m.group(1))}.{m.group(2)}"),
    (r"decoder\.4\.(weight|bias)$", lambda m: f"decoder.8.{m.group(1)}"),
    (r"decoder_pos_embedding\.dense\.(weight|bias)$", lambda m: f"dec_pos.dense.{m.group(1)}"),
)


def map_savi(
    sd: Mapping[str, torch.Tensor], model: nn.Module | None = None
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Original StoSAVi state_dict -> ours. Returns (mapped, unknown keys, notes)."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    notes: list[str] = []
    if any(k.startswith("kernel_dist_layer.3.") for k in sd):
        raise WeightsError("this SAVi checkpoint uses kernel_mlp=True (a 2-layer kernel MLP); only kernel_mlp=False is "
                           "supported")
    compiled = [(re.compile(p), f) for p, f in _SAVI_RENAMES]
    dropped_prior = 0
    for k, v in sd.items():
        if k.startswith("prior_slot_layer."):
            dropped_prior += 1
            continue
        if k in ("encoder_pos_embedding.grid", "decoder_pos_embedding.grid"):
            if model is not None:
                ours = (model.enc_pos if k.startswith("encoder") else model.dec_pos).grid
                if tuple(ours.shape) != tuple(v.shape) or not torch.allclose(ours.cpu(), v.float().cpu(), atol=1e-6):
                    raise WeightsError(
                        f"{k}: the checkpoint's coordinate grid {tuple(v.shape)} differs from ours {tuple(ours.shape)}"
                    )
            continue
        for pat, fn in compiled:
            m = pat.match(k)
            if m:
                out[fn(m)] = v
                break
        else:
            unknown.append(k)
    if dropped_prior:
        notes.append(f"dropped {dropped_prior} prior_slot_layer tensors (unused by the original too)")
    return out, unknown, notes


# ------------------------------------------------------------------------------------------------ entry


def _strip_module(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_encoder_weights(model: nn.Module, path: str | os.PathLike) -> CheckpointReport:
    """Load our checkpoint (run dir, checkpoint dir or model.pt) or a released original checkpoint into `model`.

    Strict about everything the model needs: any missing tensor or shape mismatch raises :class:`WeightsError`
    naming the keys. The backbone of a released VideoSAUR checkpoint comes with it.
    """
    p = os.fspath(path)
    if os.path.isdir(p) and not os.path.isfile(os.path.join(p, "model.pt")):
        p = os.fspath(resolve_checkpoint(p))
    sd = _strip_module(read_state_dict(p))
    layout = detect_layout(sd)
    target = model.state_dict()
    notes: list[str] = []
    if layout == "videosaur":
        new_naming = any(".attention.q_proj." in k for k in target)
        mapped, unknown, notes = map_videosaur(sd, new_naming)
    elif layout == "savi":
        mapped, unknown, notes = map_savi(sd, model)
    else:
        mapped, unknown = dict(sd), []
    report = CheckpointReport(source=p, layout=layout, notes=notes)
    report.unexpected = sorted(unknown + [k for k in mapped if k not in target])
    for k, v in mapped.items():
        if k in target and tuple(v.shape) != tuple(target[k].shape):
            raise WeightsError(
                f"{p}: {k} has shape {tuple(v.shape)} in the checkpoint, the model expects {tuple(target[k].shape)} "
                "(encoder.num_slots / slot_dim / sizes must match the checkpoint's config)"
            )
    usable = {k: v for k, v in mapped.items() if k in target}
    report.missing = sorted(k for k in target if k not in usable and not k.endswith("embeddings.mask_token"))
    if report.missing:
        raise WeightsError(f"{p}: checkpoint lacks {len(report.missing)} tensors the model needs: "
                           f"{report.missing[:8]}; {report}")
    if report.unexpected:
        raise WeightsError(f"{p}: checkpoint has keys that map to nothing: {report.unexpected[:8]}; {report}")
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    backbone = getattr(model, "backbone", None)
    if backbone is not None and any(k.startswith("backbone.") for k in usable):
        backbone.pretrained = True
    return report
