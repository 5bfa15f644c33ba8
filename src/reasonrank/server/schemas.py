"""Request and response bodies of the rerank API (Cohere / Jina / vLLM `/v1/rerank` shape)."""

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
    """A document given as an object; `text` is reranked, other fields are ignored."""

    model_config = ConfigDict(extra="allow")
    text: str


class RerankRequest(BaseModel):
    """Documents are taken to be in first-stage order, best first."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, description="accepted and ignored: the served model answers")
    query: str = Field(description="the search query (non-empty)")
    documents: list[str | DocumentObject] = Field(
        description="candidate documents, strings or objects with `text`, in first-stage order"
    )
    top_n: int | None = Field(None, ge=1, description="return only the best N (default: all)")
    return_documents: bool = Field(False, description="include each document's text")


class ResultDocument(BaseModel):
    text: str


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
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"]
    model: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "reasonrank"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
