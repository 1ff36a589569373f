"""The exceptions spanqa raises for problems the caller can fix."""


class SpanqaError(Exception):
    """Base class of spanqa's own errors."""


class InputError(SpanqaError, ValueError):
    """The caller's input cannot be used: empty text, a question too long, malformed data."""


class ModelError(SpanqaError):
    """A model directory cannot be loaded: missing files, a slow tokenizer, no network for a hub id."""
