"""Errors a user can act on: the CLI prints them as one line (``cjepa COMMAND: message``) and exits with code 2.

Raise :class:`UserError` (or a subclass) for a failure the user fixes with another path, value or flag. Error
types defined elsewhere that mean the same thing are listed in ``USER_ERROR_TYPES`` by name, so that this module
(and ``cjepa --help``) imports none of the modules that define them: an exception of such a type can only exist
once its module was imported, so looking the type up in ``sys.modules`` finds it exactly when it matters.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix (a path, a value, a flag); the message names what is wrong and where."""


# "module:Class" of the library's own error types that report bad input, not a bug.
USER_ERROR_TYPES = (
    "cjepa.config:ConfigError",
    "cjepa.data.slot_store:SlotStoreError",
    "cjepa.data.shards:ShardError",
    "cjepa.data.shard_source:SplitNotFound",
    "cjepa.data.clevrer:ClevrerLayoutError",
    "cjepa.data.clips:VideoSourceUnavailable",
    "cjepa.data.dali:DaliUnavailable",
    "cjepa.eval.vqa.questions:QuestionError",
    "cjepa.eval.vqa.data:VQADataError",
    "cjepa.utils.checkpoint:CheckpointError",
    "cjepa.distributed.deepspeed:DeepSpeedCheckpointError",
    "cjepa.backends.attention:BackendUnavailable",
    "cjepa.models.dinov2_weights:WeightsError",
    "launchers.clusters:ClusterError",
)

# OS errors about a path the user gave (missing, unwritable, a file where a directory belongs, a full disk).
_PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.ENOSPC,
                errno.EEXIST}


def is_user_error(err: BaseException) -> bool:
    if isinstance(err, UserError):
        return True
    if isinstance(err, OSError) and err.filename is not None and err.errno in _PATH_ERRNOS:
        return True
    for spec in USER_ERROR_TYPES:
        module, name = spec.split(":")
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(err, cls):
            return True
    return False


def one_line(err: BaseException) -> str:
    """The error as one line: OS errors as 'reason: path', others their message with newlines folded."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
        text = f"{err.strerror.lower()}: {where}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def check_writable_dir(path: str | os.PathLike, what: str) -> None:
    """Fail now, naming ``what`` (the key or flag), if directory ``path`` cannot be created or written, rather
    than after minutes of work: its nearest existing ancestor must be a writable directory."""
    p = Path(path).absolute()
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what}={path} is not writable: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what}={path} is not writable: no write permission on {probe}")
