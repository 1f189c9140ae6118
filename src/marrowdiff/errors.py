"""The one base class of errors a user can fix.

Each stage raises its own subclass (`DatasetError`, `CheckpointError`, `ModelError`, ...) with a
sentence that names the file and the fix; the command line catches `UserError` and prints that
sentence instead of a traceback (exit 2). Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Wrong or damaged input, or a request that cannot be met as asked; the message names the
    file and says what to do."""
