"""The exceptions spanqa raises for problems the caller can fix."""


class SpanqaError(Exception):
    """Base class of spanqa's own errors."""


class InputError(SpanqaError, ValueError):
    """The caller's input cannot be used: empty text, a question too long, malformed data."""


class ModelError(SpanqaError):
    """A model directory cannot be loaded: missing files, a slow tokenizer, no network for a hub id."""


def check_positive(name: str, value: object) -> None:
    """An option that counts something: a positive int (not a bool), else InputError naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
