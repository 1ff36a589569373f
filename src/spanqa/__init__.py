"""spanqa: extractive question answering that underlines the answer in the caller's own text."""

from spanqa.errors import InputError, ModelError, SpanqaError
from spanqa.prediction import Answer, Prediction
from spanqa.reader import Reader

__all__ = ["Answer", "InputError", "ModelError", "Prediction", "Reader", "SpanqaError"]
__version__ = "0.1.0"
