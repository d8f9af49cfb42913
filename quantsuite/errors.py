"""Errors meant for users.

Every failure a user can cause (missing model, corrupt file, unknown task, broken YAML...)
is raised as a ``UserError``; the CLI prints its message on one line and exits with code 2,
never a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, shown as one line."""

    exit_code = 2

    def __init__(self, message: str):
        # one line per problem: whitespace inside a line is collapsed, line breaks are kept
        lines = (" ".join(line.split()) for line in str(message).splitlines())
        super().__init__("\n".join(line for line in lines if line))


class BackendUnavailable(UserError):
    """A backend or runtime that cannot run on this machine (missing package, no GPU...)."""
