"""`Synthesizer`: runs the stages of a workdir, resumably.

Each stage reads the previous stage's file and appends one record per query to its own,
durably, as each query finishes; a rerun skips the queries already there. A stage runs only
once the earlier ones are complete. Teacher stages run `concurrency` queries at a time through
one `TeacherClient`; when the budget is reached they stop sending, let the requests in flight
finish (and be cached), keep going through the queries the cache answers, save the
accounting and raise `BudgetExceeded`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import cached_property
from typing import Any

from reasonrank.backends.base import Backend
from reasonrank.errors import ConfigError, ReasonRankError
from reasonrank.io.readers import Doc
from reasonrank.synth.accounting import Budget, BudgetExceeded, Ledger, Prices
from reasonrank.synth.cache import AnswerCache
from reasonrank.synth.report import COUNTERS, shortfall
from reasonrank.synth.settings import STAGES, SynthSettings
from reasonrank.synth.stages import (
    FailureLog,
    StageContext,
    assemble_item,
    label_item,
    negatives_item,
    positives_item,
)
from reasonrank.synth.store import JsonlLog, read_json, write_json
from reasonrank.synth.teacher import TeacherClient, TeacherStopped
from reasonrank.synth.workdir import Workdir

log = logging.getLogger(__name__)

class TooFewRecords(ReasonRankError):  # noqa: N818 - a result, not a failure of the code
    """The export holds fewer records than `min_records`; the message says where the queries
    were lost and how to fix the main causes. The files are written all the same."""


ProgressHook = Callable[[str, int, int], None]
"""Called as `hook(stage, completed, total)` when a stage starts and after each query."""

_WORKERS = {"positives": positives_item, "negatives": negatives_item, "label": label_item}


class Synthesizer:
    """The pipeline over one workdir. Use as a context manager (it holds open files)."""

    def __init__(self, workdir: Workdir, settings: SynthSettings, *,
                 progress: ProgressHook | None = None, backend: Backend | None = None,
                 tokenizer: Any = None) -> None:
        """`backend` and `tokenizer` inject ready objects (default: an `OpenAIBackend` from
        the settings and the tokenizer `settings.tokenizer` names)."""
        self.workdir = workdir
        self.settings = settings
        self.progress = progress
        self._backend = backend
        self._owns_backend = backend is None  # an injected backend is its owner's to close
        self._tokenizer = tokenizer
        self._preflight_done = False
        self.ledger = Ledger(Prices(settings.price_input, settings.price_output))
        self.budget = Budget(settings.max_cost_usd, settings.max_total_tokens)
        self._lock = workdir.lock()
        try:
            self.cache = AnswerCache(workdir.cache_path)
            for entry in self.cache.entries():
                self.ledger.add_sent(entry.stage, entry.prompt_tokens, entry.output_tokens,
                                     estimated=entry.estimated, this_run=False)
            self.ledger.load_cached_counts(read_json(workdir.usage_path))
            self.failures = FailureLog(workdir.failures_path)
            saved = read_json(workdir.summary_path)
        except BaseException:
            self._lock.close()
            raise
        self.counts: dict[str, dict[str, Any]] = saved if isinstance(saved, dict) else {}

    # -- resources ---------------------------------------------------------------------------

    @cached_property
    def corpus(self) -> dict[str, Doc]:
        from reasonrank.io import read_corpus

        return read_corpus(self.settings.corpus)

    @cached_property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from reasonrank.backends.base import load_tokenizer

            self._tokenizer = load_tokenizer(self.settings.tokenizer, "synth prompts")
        return self._tokenizer

    @cached_property
    def builder(self) -> Any:
        from reasonrank.core.prompts import PromptBuilder

        return PromptBuilder(self.tokenizer, "reasoning", self.settings.max_passage_tokens)

    def backend(self) -> Backend:
        if self._backend is None:
            from reasonrank.backends.openai import OpenAIBackend

            s = self.settings
            self._backend = OpenAIBackend(
                s.teacher_model, api_base=s.api_base, api_key_env=s.api_key_env,
                endpoint=s.endpoint, tokenizer=self.tokenizer,
                request_timeout=s.request_timeout, max_retries=s.http_retries,
                concurrency=s.concurrency, extra_body=s.extra_body)
        return self._backend

    def _count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def teacher(self) -> TeacherClient:
        return TeacherClient(
            self.backend(), self.cache, self.ledger, self.budget,
            model=self.settings.teacher_model, endpoint=self.settings.endpoint,
            concurrency=self.settings.concurrency, count_tokens=self._count_tokens,
            extra_body=self.settings.extra_body,
            budget_hint=(f"Progress is saved in {self.workdir.root}: raise the limit (e.g. --set "
                         "max_cost_usd=... or --set max_total_tokens=...) and rerun the same "
                         "command; cached answers are reused at no cost."))

    # -- checks before work starts ----------------------------------------------------------

    def preflight(self, stage: str) -> list[str]:
        """Warnings about settings that will waste the run, logged once per `Synthesizer`
        (before a stage runs, or when the CLI calls this first): prompts that may not fit
        `max_model_len`, and lists so short that the filter threshold cannot drop any."""
        if self._preflight_done:
            return []
        self._preflight_done = True
        stages = STAGES if stage == "all" else (stage,)
        s = self.settings
        out = []
        if s.max_model_len is not None:
            for name, passages, setting, used_by in (
                    ("selection", s.selection_window, "selection_window",
                     ("positives", "negatives")),
                    ("label", s.list_size, "list_size", ("label",))):
                if not any(st in stages and self._may_run(st) for st in used_by):
                    continue
                needed, fixed = self._prompt_budget(name, passages)
                if needed + s.max_new_tokens > s.max_model_len:
                    out.append(
                        f"{name} prompts may need up to {needed:,} tokens ({passages} passages "
                        f"x max_passage_tokens {s.max_passage_tokens} + {fixed:,} for the "
                        f"instructions and the longest query) + max_new_tokens "
                        f"{s.max_new_tokens:,} = {needed + s.max_new_tokens:,}, more than "
                        f"max_model_len {s.max_model_len:,}: the server will reject such "
                        f"requests and each one is dropped. Lower max_passage_tokens, {setting} "
                        "or max_new_tokens, or serve a longer context")
        if "export" in stages:
            from reasonrank.training.records import filter_is_vacuous

            size = min(s.list_size, s.pool_depth)
            floor = filter_is_vacuous(s.threshold, ((size, p) for p in
                                                    range(1, min(s.max_positives, size) + 1)))
            if floor is not None:
                out.append(
                    f"lists of at most {size} passages (list_size {s.list_size}, pool_depth "
                    f"{s.pool_depth}) score NDCG@10 >= {floor:.2f} however the teacher ranks "
                    f"them, so the self-consistency filter (threshold {s.threshold}) cannot "
                    f"drop any: raise threshold above {floor:.2f} or use lists of more than "
                    "10 passages")
        for warning in out:
            log.warning("%s", warning)
        return out

    def _may_run(self, stage: str) -> bool:
        return not self.workdir.has_output(stage) or bool(self.pending(stage))

    def _prompt_budget(self, kind: str, passages: int) -> tuple[int, int]:
        """(the most prompt tokens a `kind` request may take, the part that is not passages):
        the prompt rendered with the longest query (and answer) and empty passages, plus
        `passages` x `max_passage_tokens`."""
        from reasonrank.synth.prompts import POSITIVES, selection_prompt

        queries = self._queries()
        longest = max(queries.values(), key=len, default="")
        if kind == "label":
            prompt = self.builder.render(longest, [""] * passages)
        else:
            from reasonrank.io.readers import read_query_answers

            answer = max(read_query_answers(self.settings.queries).values(), key=len,
                         default="") or None
            prompt = selection_prompt(self.builder, POSITIVES, longest, answer,
                                      [""] * passages)
        fixed = len(self.tokenizer.encode(prompt.text, add_special_tokens=False))
        return fixed + passages * self.settings.max_passage_tokens, fixed

    # -- stage files -------------------------------------------------------------------------

    def records(self, stage: str) -> dict[str, dict[str, Any]]:
        """qid -> record of a stage file (the first record of a qid wins)."""
        out: dict[str, dict[str, Any]] = {}
        for record in JsonlLog(self.workdir.stage_path(stage)).records():
            out.setdefault(str(record["qid"]), record)
        return out

    def _queries(self) -> dict[str, str]:
        from reasonrank.io import read_queries

        return read_queries(self.settings.queries)

    def _inputs(self, stage: str) -> list[Any]:
        """The items a stage works on: qids (candidates) or the previous stage's records."""
        if stage == "candidates":
            return list(self._queries())
        previous = {"positives": "candidates", "negatives": "positives",
                    "assemble": "negatives", "label": "assemble"}[stage]
        order = {q: i for i, q in enumerate(self.records("candidates"))}
        items = sorted(self.records(previous).values(), key=lambda r: order.get(r["qid"], 0))
        return [r for r in items if not (stage == "label" and r.get("skipped"))]

    def pending(self, stage: str) -> list[Any]:
        """The items of `stage` not done yet."""
        done = self.records(stage)
        return [item for item in self._inputs(stage)
                if (item if isinstance(item, str) else item["qid"]) not in done]

    def _require_complete(self, stage: str) -> None:
        for earlier in STAGES[:STAGES.index(stage)]:
            if earlier == "export":
                continue
            left = len(self.pending(earlier))
            if left:
                raise ConfigError(
                    f"stage {earlier!r} is not finished ({left} quer{'y' if left == 1 else 'ies'} "
                    f"left), so {stage!r} cannot run yet: run `reasonrank synth {earlier} "
                    f"--workdir {self.workdir.root}` (or `all`) first")

    # -- running -----------------------------------------------------------------------------

    def run(self, stage: str) -> dict[str, Any]:
        """Run one stage (skipping what is done); returns its counts."""
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}")
        self.settings.check_required(stage)
        self._require_complete(stage)
        self.preflight(stage)
        try:
            if stage == "candidates":
                self._candidates()
            elif stage == "assemble":
                self._assemble()
            elif stage == "export":
                self.counts["export"] = self._export()
            else:
                self._teacher_stage(stage)
        finally:
            self.save_usage()
            if stage in COUNTERS:
                self.counts[stage] = COUNTERS[stage](list(self.records(stage).values()))
            write_json(self.workdir.summary_path, self.counts)
        if stage == "export":
            problem = shortfall(self.counts, self.settings.min_records,
                                self.settings.max_new_tokens)
            if problem is not None:
                raise TooFewRecords(f"{problem}; every unusable teacher answer, with its raw "
                                    f"text: {self.workdir.failures_path}")
        return self.counts[stage]

    def run_all(self) -> dict[str, dict[str, Any]]:
        """Every stage in order (finished ones are only re-counted)."""
        self.preflight("all")
        for stage in STAGES:
            self.run(stage)
        return self.counts

    def save_usage(self) -> None:
        write_json(self.workdir.usage_path, self.ledger.to_dict())

    def tick(self, stage: str, completed: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, completed, total)

    def _context(self) -> StageContext:
        return StageContext(self.settings, self.corpus, self.builder,
                            self.records("candidates"), self.failures)

    def _candidates(self) -> None:
        from reasonrank.io.readers import read_query_answers
        from reasonrank.synth.inputs import doc_text, first_stage_run

        queries = self._queries()
        answers = read_query_answers(self.settings.queries)
        todo = self.pending("candidates")
        total = len(queries)
        self.tick("candidates", total - len(todo), total)
        if not todo:
            return
        corpus = self.corpus
        completed = total - len(todo)

        def advance(n: int) -> None:
            nonlocal completed
            completed += n
            self.tick("candidates", completed, total)

        run = first_stage_run(self.settings, corpus, {q: queries[q] for q in todo}, advance)
        out = JsonlLog(self.workdir.stage_path("candidates"))
        try:
            for qid in todo:
                pool = [[d, score] for d, score in run.get(qid, [])
                        if d in corpus and doc_text(corpus[d]).strip()]
                out.append({"qid": qid, "query": queries[qid], "answer": answers.get(qid),
                            "pool": pool})
        finally:
            out.close()

    def _assemble(self) -> None:
        ctx = self._context()
        positives = self.records("positives")
        todo = self.pending("assemble")
        total = len(self._inputs("assemble"))
        completed = total - len(todo)
        out = JsonlLog(self.workdir.stage_path("assemble"))
        try:
            for negatives in todo:
                out.append(assemble_item(ctx, positives[negatives["qid"]], negatives))
                completed += 1
                self.tick("assemble", completed, total)
        finally:
            out.close()

    def _teacher_stage(self, stage: str) -> None:
        todo = self.pending(stage)
        total = len(self._inputs(stage))
        self.tick(stage, total - len(todo), total)
        if not todo:
            return
        ctx = self._context()
        out = JsonlLog(self.workdir.stage_path(stage))
        try:
            asyncio.run(self._drive(stage, ctx, todo, out, total))
        finally:
            out.close()

    async def _drive(self, stage: str, ctx: StageContext, todo: list[dict[str, Any]],
                     out: JsonlLog, total: int) -> None:
        worker = _WORKERS[stage]
        teacher = self.teacher()
        items = iter(todo)
        completed = total - len(todo)
        errors: list[BaseException] = []
        budget: list[BudgetExceeded] = []

        async def loop() -> None:
            nonlocal completed
            while not errors:
                item = next(items, None)
                if item is None:
                    return
                try:
                    record = await worker(ctx, teacher, item)
                except TeacherStopped:
                    return
                except BudgetExceeded as exc:
                    budget.append(exc)  # go on: queries the cache answers still finish
                    continue
                except Exception as exc:
                    errors.append(exc)  # the others finish their query, then stop
                    return
                out.append(record)
                completed += 1
                self.tick(stage, completed, total)

        handled = _stop_on_signals(asyncio.get_running_loop(), teacher)
        try:
            await asyncio.gather(*(loop() for _ in range(self.settings.concurrency)))
        finally:
            for sig in handled:
                asyncio.get_running_loop().remove_signal_handler(sig)
            if self._owns_backend:
                await teacher.backend.aclose()
        if teacher.stopped:  # every answer received is cached and every finished query saved
            raise KeyboardInterrupt
        if errors:
            raise errors[0]
        if budget:
            raise self.budget.exceeded(self.ledger, teacher.budget_hint)

    def _export(self) -> dict[str, Any]:
        from reasonrank.synth.export import export

        return export(self, self._context())

    def close(self) -> None:
        self.cache.close()
        self.failures.close()
        self._lock.close()

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _stop_on_signals(loop: asyncio.AbstractEventLoop, teacher: TeacherClient) -> list[int]:
    """On the first SIGINT or SIGTERM stop sending requests and let those in flight finish
    (their answers are cached); a second signal acts as usual. Main thread only."""
    import signal

    wanted = [signal.SIGINT, signal.SIGTERM]

    def stop() -> None:
        log.warning("stopping: waiting for the teacher answers in flight (signal again to quit)")
        teacher.stop()
        for sig in wanted:
            loop.remove_signal_handler(sig)

    handled = []
    for sig in wanted:
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        handled.append(sig)
    return handled
