"""The ``cjepa submit`` and ``cjepa sweep`` commands: argument parsers and entry points for the SLURM launchers.

The ``cjepa`` CLI finds these modules by name (``cjepa.cli.COMMANDS``); nothing in ``cjepa`` imports them.
"""
