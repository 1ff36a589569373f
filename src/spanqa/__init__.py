"""spanqa: extractive question answering that underlines the answer in the caller's own text."""

from spanqa.errors import DependencyError, InputError, ModelError, SpanqaError
from spanqa.prediction import Answer, Prediction
from spanqa.reading.reader import Reader
from spanqa.retrieval.plan import Retrieval

__all__ = [
    "Answer",
    "DependencyError",
    "InputError",
    "ModelError",
    "Prediction",
    "Reader",
    "Retrieval",
    "SpanqaError",
]
__version__ = "0.1.0"
