"""The serving engine: a deployment's model loaded once per process, concurrent requests batched,
and every output passed through the PII filter before it leaves.

Backends: the synthesis stage's (`backend_load("auto")`): transformers on the CPU, the vLLM
engine with the LoRA adapter where CUDA and vllm are present. Batching, on the transformers
backend with the continuous-batching engine (synthesis/engine.py, Llama-family models): one
thread steps the engine; a request joins the running batch at the next step, whatever its
sampling settings, and leaves when it ends; a streamed request gets its text as its tokens are
sampled, in the same batch. Elsewhere (vLLM, other model types) a request waits up to
BATCH_WAIT_SECONDS for others and the waiting requests with the same sampling settings run as one
`generate` batch; a stream there decodes on its own with a token streamer (transformers) or
arrives in one piece (vLLM's offline engine has no token stream).

Output filter: the synthesis stage's PII detector runs on every completion; "mask" replaces each
span by its kind ([NAME], [EMAIL], ...), "refuse" withholds an output that has any. A stream is
filtered as it goes: the last HOLD_BACK_WORDS words are held back until more text arrives (a name
is only recognisable once its last word is there), and a span is masked wherever it overlaps
what is sent, so no detected character leaves unmasked.
"""
import logging
import queue
import re
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Iterator

from django.conf import settings

from jobs.selectors import artifact_location
from privacy.pii import pii_find

from ..generation import Completion, GenerationError, SamplingParams, TransformersBackend, backend_load

logger = logging.getLogger(__name__)

BATCH_WAIT_SECONDS = 0.02
MAX_BATCH = 64  # requests running at once
HOLD_BACK_WORDS = 4  # a title and up to three name words
REFUSAL = "[withheld: the answer contained personal data]"


@dataclass(frozen=True)
class FilteredText:
    text: str
    spans: dict[str, int] = field(default_factory=dict)  # masked spans per kind
    refused: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.spans)


def output_filter(text: str, *, mode: str) -> FilteredText:
    """A whole output through the PII filter: masked (mode "mask") or withheld ("refuse")."""
    spans = pii_find(text)
    counts = dict(Counter(span.kind for span in spans))
    if not spans:
        return FilteredText(text)
    if mode == "refuse":
        return FilteredText(REFUSAL, counts, refused=True)
    return FilteredText(_masked(text, [(s.start, s.end, s.kind) for s in spans], 0, len(text)), counts)


def _masked(text: str, spans: list[tuple[int, int, str]], start: int, end: int) -> str:
    """text[start:end] with every span overlapping it replaced by its kind (once per span)."""
    parts, position = [], start
    for span_start, span_end, kind in sorted(spans):
        if span_end <= start or span_start >= end:
            continue
        if span_start > position:
            parts.append(text[position:span_start])
        if span_start >= start or position == start:
            parts.append(f"[{kind.upper()}]")
        position = max(position, min(span_end, end))
    parts.append(text[position:end])
    return "".join(parts)


class StreamFilter:
    """The PII filter for a stream: feed() the text pieces as they are decoded, send what it
    returns; finish() returns the rest. `refused` turns true (mode "refuse") at the first span:
    stop sending then."""

    def __init__(self, *, mode: str):
        self.mode = mode
        self.raw = ""
        self.sent_until = 0  # characters of raw already sent (masked)
        self.spans: dict[tuple[int, int], str] = {}
        self.refused = False

    def feed(self, piece: str) -> str:
        self.raw += piece
        words = list(re.finditer(r"\S+", self.raw))
        if len(words) <= HOLD_BACK_WORDS:
            return ""
        return self._send_until(words[-HOLD_BACK_WORDS].start())

    def finish(self) -> str:
        return self._send_until(len(self.raw))

    def _send_until(self, boundary: int) -> str:
        if self.refused or boundary <= self.sent_until:
            return ""
        found = pii_find(self.raw)
        for span in found:
            if span.start < boundary:
                self.spans[(span.start, span.end)] = span.kind
        if self.spans and self.mode == "refuse":
            self.refused = True
            return ""
        spans = [(start, end, kind) for (start, end), kind in self.spans.items()]
        # a span that runs past the boundary is sent whole, masked, so it is never split
        boundary = max([boundary] + [end for start, end, _ in spans if start < boundary < end])
        delta = _masked(self.raw, spans, self.sent_until, boundary)
        self.sent_until = boundary
        return delta

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.spans.values()))


@dataclass(eq=False)
class _Request:
    messages: list[dict]
    sampling: SamplingParams
    future: Future
    pieces: "queue.Queue | None" = None  # a stream's decoded text pieces, then the Completion
    sequence: object = None  # the engine's Sequence, once added
    sent: str = ""  # text already put on `pieces`


class ServingEngine:
    """One deployment's model in this process (see the module docstring)."""

    def __init__(self, backend: TransformersBackend):
        self.backend = backend
        self._requests: queue.Queue = queue.Queue()
        self._model_lock = threading.Lock()
        self.batches: list[int] = []  # requests running per step or batch, newest last (tests, benchmark)
        self.decode_engine = None  # the continuous loop's DecodeEngine, once it runs
        continuous = isinstance(backend, TransformersBackend) and backend.uses_engine
        loop = self._continuous_loop if continuous else self._batch_loop
        threading.Thread(target=loop, name="serving-batcher", daemon=True).start()

    def submit(self, messages: list[dict], sampling: SamplingParams) -> Future:
        """Queue one answer, batched with whatever else is running; the Future gets the Completion."""
        future: Future = Future()
        self._requests.put(_Request(messages, sampling, future))
        return future

    def complete(self, messages: list[dict], sampling: SamplingParams, *, timeout: float = 600) -> Completion:
        """submit() and wait for the answer."""
        return self.submit(messages, sampling).result(timeout=timeout)

    def stream(self, messages: list[dict], sampling: SamplingParams) -> Iterator[str | Completion]:
        """Decoded text pieces as they come, then the Completion (token counts, finish_reason)."""
        backend = self.backend
        if not isinstance(backend, TransformersBackend):  # vLLM's offline engine: the answer in one piece
            with self._model_lock:
                completion = backend.generate([messages], sampling)[0]
            yield completion.text
            yield completion
            return
        if not backend.uses_engine:
            yield from self._stream_alone(messages, sampling)
            return
        request = _Request(messages, sampling, Future(), pieces=queue.Queue())
        self._requests.put(request)
        finished = False
        try:
            while True:
                item = request.pieces.get(timeout=600)
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Completion):
                    finished = True
                    return
        finally:
            if not finished:  # the reader went away: stop spending compute on it
                self._requests.put(("cancel", request))

    # --- the continuous loop (the engine) -----------------------------------------------------

    def _continuous_loop(self) -> None:
        """Requests join the running batch at the next step and leave when they end; a stream's
        pieces go out as its tokens are sampled."""
        from ..engine import EngineError
        from ..generation import prompt_token_ids

        backend = self.backend
        engine = self._decode_engine_new()
        active: set[_Request] = set()
        while True:
            items = [self._requests.get()] if not engine.busy else []
            while True:
                try:
                    items.append(self._requests.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                if isinstance(item, tuple):  # ("cancel", request)
                    if item[1].sequence is not None:
                        engine.cancel(item[1].sequence)
                        active.discard(item[1])
                    continue
                try:
                    ids = prompt_token_ids(backend.tokenizer, item.messages)
                    item.sequence = engine.add(ids, temperature=item.sampling.temperature, top_p=item.sampling.top_p,
                                               max_new_tokens=item.sampling.max_new_tokens,
                                               seed=secrets.randbelow(2**31), tag=item,
                                               on_token=self._piece_send if item.pieces is not None else None)
                    active.add(item)
                except EngineError as exc:
                    self._fail(item, GenerationError(str(exc)))
            if not engine.busy:
                continue
            try:
                finished = engine.step()
            except BaseException as exc:  # every running request learns why; the engine starts clean
                logger.exception("a serving step with %d requests failed", len(active))
                for request in active:
                    self._fail(request, exc)
                active.clear()
                engine = self._decode_engine_new()
                continue
            self.batches.append(len(engine.running) + len(finished))
            for sequence in finished:
                request = sequence.tag
                active.discard(request)
                completion = backend.completion(sequence.generated, sequence.prompt_length)
                if request.pieces is not None:
                    request.pieces.put(completion)
                request.future.set_result(completion)

    def _decode_engine_new(self):
        """A fresh engine of MAX_BATCH slots (kept as decode_engine, for tests and stats)."""
        self.decode_engine = self.backend.engine_create(prompt_length=512, max_new_tokens=512, max_sequences=MAX_BATCH)
        return self.decode_engine

    def _piece_send(self, sequence, token: int) -> None:
        """A stream's new text: the decoded answer so far, minus what was sent, held back while it
        ends inside a multi-byte character."""
        request = sequence.tag
        generated = [t for t in sequence.generated if t not in set(self.backend.eos_ids)]
        text = self.backend.tokenizer.decode(generated, skip_special_tokens=True)
        if text.endswith("\ufffd") or len(text) <= len(request.sent):
            return
        request.pieces.put(text[len(request.sent):])
        request.sent = text

    @staticmethod
    def _fail(request: _Request, exc: BaseException) -> None:
        if request.pieces is not None:
            request.pieces.put(exc)
        if not request.future.done():
            request.future.set_exception(exc)

    # --- batches (vLLM, or a model the engine cannot run) ---------------------------------------

    def _stream_alone(self, messages: list[dict], sampling: SamplingParams) -> Iterator[str | Completion]:
        """A stream on `model.generate` with a token streamer, one request at a time."""
        import torch
        from transformers import TextIteratorStreamer

        backend = self.backend
        streamer = TextIteratorStreamer(backend.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        result: dict = {}

        def run() -> None:
            try:
                with self._model_lock:
                    result["completion"] = backend.generate([messages], sampling, streamer=streamer)[0]
            except BaseException as exc:  # the consumer re-raises it
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run, name="serving-stream", daemon=True)
        with torch.inference_mode():
            thread.start()
            for piece in streamer:
                if piece:
                    yield piece
            thread.join()
        if "error" in result:
            raise result["error"]
        yield result["completion"]

    def _batch_loop(self) -> None:
        while True:
            waiting = [self._requests.get()]
            deadline = time.monotonic() + BATCH_WAIT_SECONDS
            while len(waiting) < MAX_BATCH and (left := deadline - time.monotonic()) > 0:
                try:
                    waiting.append(self._requests.get(timeout=left))
                except queue.Empty:
                    break
            groups: dict[tuple, list[_Request]] = {}
            for request in waiting:
                if isinstance(request, tuple):  # a cancel: batches run whole
                    continue
                key = (request.sampling.temperature, request.sampling.top_p, request.sampling.max_new_tokens)
                groups.setdefault(key, []).append(request)
            for (temperature, top_p, max_new_tokens), requests in groups.items():
                sampling = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                          seed=secrets.randbelow(2**31))
                try:
                    with self._model_lock:
                        completions = self.backend.generate([r.messages for r in requests], sampling)
                    self.batches.append(len(requests))
                    for request, completion in zip(requests, completions):
                        request.future.set_result(completion)
                except BaseException as exc:
                    logger.exception("a serving batch of %d failed", len(requests))
                    for request in requests:
                        if not request.future.done():
                            request.future.set_exception(exc)


_engines: dict[int, ServingEngine] = {}
_engines_lock = threading.Lock()


def engine_for(deployment) -> ServingEngine:
    """The deployment's engine in this process, loaded on first use (base model + merged adapter)."""
    with _engines_lock:
        engine = _engines.get(deployment.pk)
        if engine is None:
            adapter = artifact_location(deployment.adapter_artifact)
            backend = backend_load(model_spec=deployment.base_model, adapter_path=adapter,
                                   cache_dir=settings.KSG_MODEL_CACHE)
            engine = _engines[deployment.pk] = ServingEngine(backend)
            logger.info("deployment %s loaded (%s + adapter artifact %s)", deployment.name, deployment.base_model,
                        deployment.adapter_artifact_id)
        return engine


def engines_unload() -> None:
    """Forget every loaded engine (tests; a deployment stopped)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.backend.close()
        _engines.clear()
