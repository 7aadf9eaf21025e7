"""cjepa: a distributed training system for C-JEPA object-centric world models.

Library layout: ``cjepa.models`` (pure single-device torch), ``cjepa.data`` (formats, decoders, shards),
``cjepa.dist`` (process groups and engines), ``cjepa.train`` (the loop), ``cjepa.eval`` / ``cjepa.plan``
(downstream). Kernels live in the top-level ``kernels`` package and come in through ``cjepa.ops``.
"""

__version__ = "0.1.0"
