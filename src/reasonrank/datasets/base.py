"""What every local IR dataset loads into: queries, judgements and, optionally, passages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reasonrank.errors import ConfigError
from reasonrank.io import Doc, Qrels, build_requests
from reasonrank.types import Request

if TYPE_CHECKING:
    from reasonrank.evaluation import EvalResult


@dataclass
class IRDataset:
    """Queries `{qid: text}`, qrels `{qid: {docid: rel}}` and an optional corpus."""

    name: str
    queries: dict[str, str]
    qrels: Qrels
    corpus: dict[str, Doc] | None = None

    def __len__(self) -> int:
        return len(self.queries)

    def requests(
        self,
        run: Mapping[str, Sequence[tuple[str, float]]],
        *,
        top_k: int | None = None,
        corpus: Mapping[str, Doc | str] | None = None,
    ) -> list[Request]:
        """Reranking requests: `run` joined with the queries and the corpus (`build_requests`)."""
        docs = corpus if corpus is not None else self.corpus
        if docs is None:
            raise ConfigError(f"{self.name}: reranking needs a corpus; none was loaded")
        return build_requests(run, docs, self.queries, top_k)

    def evaluate(self, run: Mapping[str, Any], metrics: Sequence[str] | None = None) -> EvalResult:
        """Score `run` against the qrels (`reasonrank.evaluation.evaluate`)."""
        from reasonrank.evaluation import DEFAULT_METRICS, evaluate

        return evaluate(run, self.qrels, tuple(metrics or DEFAULT_METRICS))
