"""cjepa: a distributed training system for C-JEPA object-centric world models.

Library layout: ``cjepa.models`` (pure single-device torch), ``cjepa.data`` (formats, decoders, shards),
``cjepa.distributed`` (process groups and engines), ``cjepa.trainer`` (the loop), ``cjepa.eval`` / ``cjepa.plan``
(downstream). Kernels live in the top-level ``kernels`` package and come in through ``cjepa.backends``.

Docstrings and comments cite the original implementation by section number ("section 1.9", "spec 4.1") and by
quirk id ("Q1" ... "Q23"); both are defined in ``docs/reference-spec.md`` (``tests/test_docs.py`` checks that every
citation resolves there).
"""

__version__ = "0.1.0"
