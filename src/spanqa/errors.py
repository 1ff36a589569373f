"""The exceptions spanqa raises for problems the caller can fix."""


class SpanqaError(Exception):
    """Base class of spanqa's own errors."""


class InputError(SpanqaError, ValueError):
    """The caller's input cannot be used: empty text, a question too long, malformed data."""


class DependencyError(SpanqaError):
    """An installed library is known to give wrong results: spanqa refuses rather than answer wrongly."""


class ModelError(SpanqaError):
    """A model directory cannot be loaded: missing files, a slow tokenizer, no network for a hub id."""


def check_positive(name: str, value: object) -> None:
    """An option that counts something: a positive int (not a bool), else InputError naming it."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def check_text(text: object, name: str, item: int | None = None) -> None:
    """A text from the caller (question, context): a non-blank string of valid Unicode with no NUL."""
    where = f"item {item}: " if item is not None else ""
    if not isinstance(text, str):
        raise InputError(f"{where}{name} must be a string, not {type(text).__name__}")
    if not text.strip():
        raise InputError(f"{where}{name} is empty")
    if "\x00" in text:
        raise InputError(f"{where}{name} contains NUL characters (binary data?)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate, e.g. bytes decoded with errors="surrogateescape"
        raise InputError(f"{where}{name} is not valid Unicode (lone surrogate at {e.start})") from None
