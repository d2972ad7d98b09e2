"""Errors a user can fix (bad study file, missing data). The CLI prints them as one line, exit 2."""


class UserError(Exception):
    """An error in the user's input; its message is one line naming what is wrong."""


class CellFailed(Exception):
    """A cell could not finish (diverged, crashed); recorded in the store, the study goes on."""
