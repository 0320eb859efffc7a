"""Errors a user can cause. The CLI prints their message as one line and exits with code 2."""


class WmbenchError(Exception):
    """Base class: the message says what is wrong and what to do."""


class UsageError(WmbenchError):
    """An unknown name, a bad number, an option that does not fit."""


class DatasetError(WmbenchError):
    """A dataset that is missing, unreadable or not usable for an env."""


class CheckpointError(WmbenchError):
    """A checkpoint file that cannot be read."""
