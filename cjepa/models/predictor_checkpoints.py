"""Predictor state_dicts in the original Push-T layout -> the state_dict of our :class:`PushTPredictor`.

The original Push-T training wraps its world model in a Lightning module (``spt.Module(model=CausalWM_AP(...))``)
and saves that whole module (``*_object.ckpt``). Its ``state_dict()`` therefore has every key under ``model.``,
and besides the trained parts it carries the frozen VideoSAUR pieces the wrapper holds for checkpoint
compatibility, each inside an ``EvalOnly`` wrapper:

* trained: ``model.predictor.*`` (``MaskedSlot_AP_Predictor``: the reference layout's keys),
  ``model.action_encoder.patch_embed.{weight,bias}`` and ``model.proprio_encoder.patch_embed.{weight,bias}``
  (``nn.Conv1d`` with kernel 1: 3-d weights, which :class:`~cjepa.models.predictor.AuxEmbedder` accepts);
* frozen: ``model.encoder.backbone.*``, ``model.slot_attention.backbone.*``, ``model.initializer.backbone.*``
  (and ``model.decoder.*`` when one was attached).

The planner works on slots it is given, so the frozen encoder is left out (and counted, so the user sees it was
there); the prefix is stripped. A state_dict already in our layout passes unchanged, so one loader serves both.

:func:`predictor_from_checkpoint` is the one way to load a predictor from a checkpoint (rollouts, VQA rollouts,
planning): the model section comes from the config saved beside the weights when there is one, else from the
caller's config.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Optional

import torch
import yaml

from cjepa.config import ModelConfig, merge
from cjepa.models.predictor import build_predictor
from cjepa.utils.checkpoint import load_model_state, resolve_checkpoint
from cjepa.utils.state_dict import StateDictMismatch, load_checked

# The wrapper's attribute holding the world model, and the Lightning module's own (callback) containers.
WRAPPER_PREFIX = "model."
CALLBACK_PREFIXES = ("callbacks_modules.", "callbacks_metrics.")
# Sub-modules of the original world model: trained (what our PushTPredictor holds) and frozen (the encoder side).
TRAINED_PREFIXES = ("predictor.", "action_encoder.", "proprio_encoder.")
FROZEN_PREFIXES = ("encoder.", "slot_attention.", "initializer.", "decoder.")
AUX_EMBEDDERS = ("action_encoder", "proprio_encoder")


@dataclass
class PushTStateReport:
    """What :func:`pusht_state_from_original` did: the layout it recognised and the tensors it left out."""

    layout: str  # "original" (the Lightning wrapper's keys) or "cjepa" (already ours)
    frozen: list[str] = field(default_factory=list)  # frozen-encoder keys left out (names in the original file)
    callbacks: list[str] = field(default_factory=list)  # the wrapper's callback tensors left out

    def summary(self) -> str:
        if self.layout == "cjepa":
            return "state_dict in our layout"
        groups = sorted({k[len(WRAPPER_PREFIX):].split(".")[0] for k in self.frozen})
        left = f"left out {len(self.frozen)} frozen encoder tensors ({', '.join(groups) or 'none'})"
        if self.callbacks:
            left += f" and {len(self.callbacks)} callback tensors"
        return f"original Push-T layout: '{WRAPPER_PREFIX}' prefix stripped, {left}"


def pusht_state_from_original(state: Mapping[str, torch.Tensor],
                              source: str) -> tuple[dict[str, torch.Tensor], PushTStateReport]:
    """(our PushTPredictor state_dict, report) from an original Push-T world-model state_dict, or from ours.

    Keys that are neither trained nor frozen parts of the original model raise :class:`StateDictMismatch` naming
    them; the shapes are checked later against the model built from the config (``load_checked``).
    """
    if not state:
        raise StateDictMismatch(f"checkpoint {source} holds no tensors")
    if not any(k.startswith(WRAPPER_PREFIX) for k in state):
        return _aux_weights_as_linear(state), PushTStateReport("cjepa")
    report = PushTStateReport("original")
    out: dict[str, torch.Tensor] = {}
    stray: list[str] = []
    for key, value in state.items():
        if key.startswith(CALLBACK_PREFIXES):
            report.callbacks.append(key)
            continue
        inner = key[len(WRAPPER_PREFIX):] if key.startswith(WRAPPER_PREFIX) else None
        if inner is not None and inner.startswith(TRAINED_PREFIXES):
            out[inner] = value
        elif inner is not None and inner.startswith(FROZEN_PREFIXES):
            report.frozen.append(key)
        else:
            stray.append(key)
    if stray:
        shown = ", ".join(stray[:4]) + (f" (+{len(stray) - 4} more)" if len(stray) > 4 else "")
        raise StateDictMismatch(
            f"checkpoint {source} has '{WRAPPER_PREFIX}' keys like the original Push-T world model, but also keys that "
            f"are neither its trained parts ({', '.join(p[:-1] for p in TRAINED_PREFIXES)}) nor its frozen encoder: "
            f"{shown}"
        )
    if not out:
        raise StateDictMismatch(f"checkpoint {source}: no predictor / action_encoder / proprio_encoder tensors under "
                                f"'{WRAPPER_PREFIX}' (only the frozen encoder?)")
    return _aux_weights_as_linear(out), report


def _aux_weights_as_linear(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The aux embedders' Conv1d(kernel 1) weights (D, C, 1) as the (D, C) of our Linear, so that shapes can be
    compared with the model's before loading (the module itself also accepts the 3-d form)."""
    out = dict(state)
    for name in AUX_EMBEDDERS:
        key = f"{name}.patch_embed.weight"
        w = out.get(key)
        if w is not None and w.dim() == 3 and w.shape[-1] == 1:
            out[key] = w[..., 0]
    return out


@dataclass
class CheckpointPredictor:
    """A predictor loaded by :func:`predictor_from_checkpoint`, with the model section it was built from."""

    model: torch.nn.Module  # in eval mode, on the device asked for
    model_cfg: ModelConfig
    # The config.yaml whose model section was used; None for a plain state_dict (built from the caller's section).
    saved_config: Optional[str]
    # What a plain Push-T state_dict held (see pusht_state_from_original); None for slot predictors and our dirs.
    pusht_report: Optional[PushTStateReport] = None


def predictor_from_checkpoint(
    checkpoint: str | os.PathLike,
    model_cfg: ModelConfig,
    attention: str,
    device: torch.device | str,
    *,
    check: Optional[Callable[[ModelConfig, str], None]] = None,
    label: str = "",
) -> CheckpointPredictor:
    """The C-JEPA predictor of ``checkpoint``: a checkpoint directory or run directory of ours (the model section of
    the config.yaml saved beside the weights wins over ``model_cfg``), or a plain state_dict file built from
    ``model_cfg`` (a Push-T one may be the original world model's, see :func:`pusht_state_from_original`).

    ``check(model_section, where)`` vets the model section before anything is built (the caller's kind rule;
    ``where`` names the checkpoint and where the section came from). ``label`` follows the checkpoint's path in a
    state_dict mismatch (e.g. the config key that named it). ``model_cfg`` itself is never changed.
    """
    ckpt = resolve_checkpoint(checkpoint)
    mcfg = copy.deepcopy(model_cfg)
    saved = ckpt / "config.yaml" if ckpt.is_dir() else None
    if saved is not None and saved.is_file():
        merge(mcfg, (yaml.safe_load(saved.read_text()) or {}).get("model", {}), "model.", str(saved))
        mcfg.validate()
        where, hint = str(ckpt), f"the model section of {saved}"
    else:
        saved = None
        held = "no config.yaml beside its model.pt" if ckpt.is_dir() else "a plain state_dict"
        where, hint = f"{ckpt} ({held}, built from the config)", "the config's model section"
    if check is not None:
        check(mcfg, where)
    state, report = load_model_state(ckpt), None
    if saved is None and mcfg.kind == "pusht":
        state, report = pusht_state_from_original(state, str(ckpt))
        if report.layout == "original" and mcfg.layout != "reference":
            hint += ", with model.layout=reference for the original's files"
    model = build_predictor(mcfg, attention)
    hint += f": layout={mcfg.layout}, num_slots={mcfg.num_slots}, slot_dim={mcfg.slot_dim}, depth={mcfg.depth}"
    load_checked(model, state, f"{ckpt}{label}", hint=hint)
    return CheckpointPredictor(model.to(device).eval(), mcfg, None if saved is None else str(saved), report)
