"""The errors elmlib expects: bad input, foreign or busy folders, divergence.

The command line prints each as one line ``error: ...`` (exit 2; divergence exits 3) and shows the
traceback only under ``--debug`` or ``ELMLIB_DEBUG=1``; any other exception is a bug and keeps its
traceback.

    raise UserError("setting growth_k=0 is not allowed; expected an integer >= 1")
"""
from __future__ import annotations


class UserError(ValueError):
    """Something the user can fix: the message names the setting or file, the value and the fix."""


class RunFolderBusy(UserError):
    """Another process holds the run folder's lock."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss, gradient norm, weight or logit: the run stops before anything is exported."""
