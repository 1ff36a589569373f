"""The HTTP service's request and response bodies: what /docs shows, and what the service validates.

Models are strict (a JSON string is never taken for a number, nor a number for a string) and refuse
unknown fields, so that a misspelt option ("topk") is a 422 naming it instead of being silently ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_TOP_K = 20
MAX_ANSWER_TOKENS = 512
MAX_PASSAGES = 50

_STRICT = ConfigDict(extra="forbid", strict=True)


class ReadingOptions(BaseModel):
    model_config = _STRICT

    top_k: int = Field(1, ge=1, le=MAX_TOP_K, description="how many answers to return, best first")
    null_threshold: float | None = Field(
        None,
        allow_inf_nan=False,
        description="decide on a raw threshold instead of the prior: 'no answer' when null_score_diff is "
        "below this (give this or answerable_prior)",
    )
    answerable_prior: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="how likely your questions are to be answered by their texts (default: the model's); "
        "'no answer' when answerable < 0.5 at this prior",
    )
    max_answer_len: int = Field(30, ge=1, le=MAX_ANSWER_TOKENS, description="longest answer, in tokens")


class AnswerRequest(ReadingOptions):
    """A question about one text (`context`) or several (`contexts`; answers then carry `doc`)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "question": "When was the lighthouse first lit?",
                    "context": "The lighthouse was first lit on 12 March 1849, using a lamp that burned oil.",
                    "top_k": 3,
                }
            ]
        },
    )

    question: str = Field(description="the question")
    context: str | None = Field(None, description="the text to answer from (give this or contexts)")
    contexts: list[str] | None = Field(None, description="several texts; answers carry the index as doc")


class BatchRequest(BaseModel):
    model_config = _STRICT

    items: list[AnswerRequest] = Field(description="questions answered together; results keep this order")


class AskRequest(ReadingOptions):
    """A question over the server's document index (`spanqa serve --db FILE`)."""

    question: str = Field(description="the question")
    passages: int = Field(5, ge=1, le=MAX_PASSAGES, description="how many retrieved passages to read")


class AnswerOut(BaseModel):
    text: str = Field(description="the answer: exactly context[start:end]")
    start: int = Field(description="offset of the first character, in Unicode code points")
    end: int = Field(description="offset after the last character, in Unicode code points")
    score: float = Field(
        description="probability that this span is right if the text answers the question (calibrated "
        "models; else the softmax share); alternatives share what the best answer leaves"
    )
    doc: int | str | None = Field(None, description="index into contexts, or the document id for /v1/ask")
    passage: int | None = Field(None, description="the passage of the indexed document (/v1/ask)")
    # Where an answer from the index is (/v1/ask): all offsets index the document's stored text.
    source: str | None = Field(None, description="the indexed document's file (/v1/ask)")
    format: str | None = Field(None, description="its format: text, pdf, html or docx (/v1/ask)")
    page: int | None = Field(None, description="the page holding the answer, for a PDF (1 = first)")
    passage_start: int | None = Field(None, description="offset of the passage holding the answer (/v1/ask)")
    passage_end: int | None = Field(None, description="offset after that passage (/v1/ask)")
    passage_text: str | None = Field(None, description="that passage: text[passage_start:passage_end]")


class PredictionOut(BaseModel):
    answers: list[AnswerOut]
    no_answer: bool = Field(description="true when the text probably does not answer the question")
    answerable: float = Field(
        description="probability that the text answers the question, at answerable_prior"
    )
    answerable_prior: float | None = Field(
        description="the prior answerable holds for; a client can move it: "
        "logit(answerable') = logit(answerable) + logit(prior') - logit(answerable_prior)"
    )
    null_score_diff: float | None = Field(description="best span score minus no-answer score (raw logits)")


class BatchOut(BaseModel):
    results: list[PredictionOut]


class ModelOut(BaseModel):
    name: str
    path: str
    backend: str
    null_threshold: float
    calibrated: bool
    answerable_prior: float = Field(description="the default prior that the text answers the question")
    max_seq_len: int = Field(description="window size in tokens")
    doc_stride: int = Field(description="overlap between windows in tokens")
    version: str = Field(description="spanqa's version")
    limits: dict[str, float | int]


class FieldProblem(BaseModel):
    field: str | None
    message: str


class ErrorOut(BaseModel):
    error: str = Field(description="a short machine-readable kind, e.g. invalid_request, overloaded")
    message: str = Field(description="one line a person can act on")
    field: str | None = Field(None, description="the request field at fault, e.g. items[2].question")
    errors: list[FieldProblem] | None = Field(None, description="every problem found, for invalid requests")
    request_id: str | None = None
