"""Builds the object-centric encoder that ``encoder.kind`` names, with ``encoder.checkpoint`` loaded if set.

The factory sits one level above the encoders it builds: ``object_encoder.py`` holds the shared interface that
``savi.py`` and ``videosaur.py`` import, so the factory cannot live there without an import cycle.
"""

from __future__ import annotations

from cjepa.models.encoder_checkpoints import load_encoder_weights
from cjepa.models.object_encoder import ObjectCentricEncoder
from cjepa.models.savi import SAVi
from cjepa.models.videosaur import VideoSAUR


def build_object_encoder(
    enc_cfg, *, attention_backend: str = "torch", slot_attention_backend: str = "torch"
) -> ObjectCentricEncoder:
    """The encoder named by ``encoder.kind``, with ``encoder.checkpoint`` loaded if set.

    VideoSAUR's DINOv2 weights come from ``encoder.backbone.weights`` or from the checkpoint; if neither provides
    them, a :class:`~cjepa.models.dinov2.RandomBackboneWarning` is raised as a warning.
    """
    model: ObjectCentricEncoder
    if enc_cfg.kind == "savi":
        model = SAVi(enc_cfg, slot_attention_backend=slot_attention_backend)
    elif enc_cfg.kind == "videosaur":
        model = VideoSAUR(enc_cfg, attention_backend=attention_backend, slot_attention_backend=slot_attention_backend)
    else:
        raise ValueError(f"unknown encoder.kind {enc_cfg.kind!r}; choose videosaur or savi")
    model.load_report = None
    if enc_cfg.checkpoint:
        model.load_report = load_encoder_weights(model, enc_cfg.checkpoint)
    if isinstance(model, VideoSAUR):  # only VideoSAUR has a pretrained backbone that may have stayed random
        model.backbone.warn_if_random()
    return model
