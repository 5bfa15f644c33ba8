"""Request and response bodies of the rerank API: Cohere v1/v2, Jina, vLLM and TEI shapes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCORE_NOTE = (
    "`relevance_score` is derived from the rank, not predicted: the listwise model outputs an "
    "order, not calibrated scores, so the document at rank r of n documents gets "
    "`1 - (r - 1) / n` (1.0 for the top document, strictly decreasing, always > 0). Compare "
    "scores only within one response."
)


class DocumentObject(BaseModel):
    """A document given as an object. `text` is reranked unless `rank_fields` names other keys,
    which are then joined as `key: value` lines, as Cohere does; other fields are kept and
    returned with the document."""

    # The schema says `text` is a required string: what a document needs unless the request's
    # `rank_fields` names other fields (then `text` may be absent; a document with neither is
    # answered 400 naming its index).
    model_config = ConfigDict(extra="allow", json_schema_extra={
        "required": ["text"],
        "properties": {"text": {"type": "string", "title": "Text",
                                "description": "the text reranked (unless rank_fields is given)"}},
    })
    text: str | None = None


class RerankRequest(BaseModel):
    """Cohere v1 / Jina / vLLM rerank request. Documents are in first-stage order, best first."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, description="accepted and ignored: the served model answers")
    query: str = Field(description="the search query (non-empty)")
    documents: list[str | DocumentObject] = Field(
        description="candidate documents, strings or objects, in first-stage order"
    )
    top_n: int | None = Field(None, description="return only the best N; absent or <= 0: all")
    rank_fields: list[str] | None = Field(
        None, description="keys of object documents to rerank on, joined as `key: value` lines "
        "(default: `text`)"
    )
    return_documents: bool | None = Field(
        None, description="include each document in the results (default: false on /v1/rerank "
        "and /v2/rerank as Cohere documents it; true on /rerank as Jina and vLLM do)"
    )
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="truncate each document to N tokens (never beyond the server's "
        "own passage truncation)"
    )
    max_chunks_per_doc: int | None = Field(None, description="accepted and ignored")


class V2RerankRequest(RerankRequest):
    """Cohere v2 rerank request: string documents."""

    documents: list[str | DocumentObject] = Field(
        description="candidate documents (strings; objects as in v1 are accepted too), in "
        "first-stage order"
    )


class TeiRerankRequest(BaseModel):
    """Text Embeddings Inference's rerank request (`texts`); the answer is a list."""

    model_config = ConfigDict(extra="ignore")
    query: str = Field(description="the search query (non-empty)")
    texts: list[str] = Field(description="candidate texts, in first-stage order")
    return_text: bool = Field(False, description="include each text in the answer")
    raw_scores: bool = Field(False, description="accepted; scores are rank-derived either way")
    truncate: bool | None = Field(None, description="accepted; passages are always truncated")
    truncation_direction: str | None = Field(None, description="accepted and ignored")


class TeiRank(BaseModel):
    index: int = Field(description="the text's index in the request")
    score: float = Field(description=SCORE_NOTE)
    text: str | None = None


class ResultDocument(BaseModel):
    """The document as given: `{"text": ...}` for a string, the object itself for an object."""

    model_config = ConfigDict(extra="allow")
    text: str | None = None


class RerankResult(BaseModel):
    index: int = Field(description="the document's index in the request")
    relevance_score: float = Field(description=SCORE_NOTE)
    document: ResultDocument | None = None


class Usage(BaseModel):
    """Token counts summed over the windows; absent where the backend does not report them."""

    prompt_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


class Meta(BaseModel):
    windows: int = Field(description="sliding windows the model generated")
    parse_status: dict[str, int] = Field(description="windows per parse status")
    latency_s: float = Field(description="server-side time of the reranking")


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="ordered by rank, best first")
    meta: Meta
    usage: Usage


class WindowOut(BaseModel):
    """One window: its bounds, the model's reasoning and answer, and how it was parsed."""

    start: int
    end: int
    pass_index: int
    status: str
    reasoning: str | None = Field(None, description="text inside <think>...</think>")
    answer: str | None = Field(None, description="text inside <answer>...</answer>")
    output: str = Field(description="the raw model output")
    order: list[int] = Field(description="0-based permutation applied to the window")
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    latency_s: float


class ReasoningRerankResponse(RerankResponse):
    windows: list[WindowOut]


class ErrorBody(BaseModel):
    message: str
    type: str


class ErrorResponse(BaseModel):
    """`message` (Cohere), `detail` (Jina, FastAPI) and `error` (OpenAI) carry the same text."""

    message: str
    detail: str
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"]
    model: str | None = Field(None, description="shown only with a valid key when keys are set")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "reasonrank"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
