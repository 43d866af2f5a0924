"""One exception type for everything a user can fix.

The CLI prints ``CnnlabError`` as a single ``error: ...`` line (no traceback). Every message says
what is wrong, where (file or argument) and how to fix it.
"""


class CnnlabError(Exception):
    """A problem with the user's input or environment, with a message meant for that user."""


class TrainingDiverged(CnnlabError):
    """A loss became NaN/inf; the last good checkpoint is kept on disk."""
