"""The serving engine: a deployment's model loaded once per process, concurrent requests batched.

One interface, ServingEngine (submit, complete, stream, close), and one class per strategy, picked
once from the backend by serving_engine_create:

- ContinuousBatchingEngine: the transformers backend on the continuous-batching engine
  (synthesis/engine.py, Llama-family models). One thread steps the engine; a request joins the
  running batch at the next step, whatever its sampling settings, and leaves when it ends; a
  streamed request gets its text as its tokens are sampled, in the same batch; a stream whose
  reader goes away is cancelled.
- GroupedBatchEngine: any backend with `generate` (vLLM): a request waits up to
  BATCH_WAIT_SECONDS for others and the waiting requests with the same sampling settings run as
  one `generate` batch; a stream arrives in one piece (vLLM's offline engine has no token stream).
- StreamAloneEngine: transformers on a model the engine cannot run: grouped batches as above; a
  stream decodes on its own through `model.generate`'s streamer, one at a time.

Streamed tokens become text through an IncrementalDetokenizer (a short window per token, not the
whole answer). The PII filter on what leaves is output_filter.py; which deployment's engine is
loaded in this process, registry.py.
"""
import logging
import queue
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Iterator

from transformers.generation.streamers import BaseStreamer

from synthesis.lm.engine import EngineError
from synthesis.lm.generation import (Completion, GenerationError, SamplingParams, TransformersBackend,
    prompt_token_ids)
from .detokenizer import IncrementalDetokenizer

logger = logging.getLogger(__name__)

BATCH_WAIT_SECONDS = 0.02
MAX_BATCH = 64  # requests running at once
RECENT_BATCHES = 1000  # batch sizes kept for inspection; the totals count every batch
ANSWER_TIMEOUT_SECONDS = 600
CLOSE_TIMEOUT_SECONDS = 60  # close() waits this long for the loop to end (one engine step, one batch)


class EngineClosed(RuntimeError):
    """The engine was closed (its deployment stopped) before the request was answered."""


@dataclass(eq=False)
class _Request:
    messages: list[dict]
    sampling: SamplingParams
    future: Future = field(default_factory=Future)
    pieces: "queue.Queue | None" = None  # a stream's text pieces, then the Completion (or an exception)
    detokenizer: IncrementalDetokenizer | None = None  # a stream's, on the continuous engine
    sequence: object = None  # the engine's Sequence, once added


@dataclass(frozen=True)
class Cancel:
    """To the loop: a stream's reader went away; stop spending compute on its request."""
    request: _Request


@dataclass(frozen=True)
class Shutdown:
    """To the loop: close() was called; fail what is left and end."""


@dataclass
class ServingStats:
    """Requests per engine step (continuous) or per `generate` batch: running totals over the
    engine's life and the sizes of the latest RECENT_BATCHES, so memory stays bounded."""
    batches: int = 0
    requests: int = 0  # summed over batches: a request counts once per step it runs in
    largest_batch: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_BATCHES))

    def record(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.largest_batch = max(self.largest_batch, size)
        self.recent.append(size)

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class ServingEngine(ABC):
    """One deployment's model in this process: answers for many callers at once, batched by the
    strategy of the subclass. Thread safe; a loop thread owns the batching."""

    def __init__(self, backend):
        self.backend = backend
        self.stats = ServingStats()
        self._requests: queue.Queue = queue.Queue()  # _Request | Cancel | Shutdown, to the loop
        self._model_lock = threading.Lock()  # model calls made outside the loop thread wait for it
        self._state_lock = threading.Lock()
        self._closed = False
        self._loop_thread = threading.Thread(target=self._loop, name="serving-batcher", daemon=True)
        self._loop_thread.start()

    def submit(self, messages: list[dict], sampling: SamplingParams) -> Future:
        """Queue one answer, batched with whatever else is running; the Future gets the Completion."""
        request = _Request(messages, sampling)
        self._put(request)
        return request.future

    def complete(self, messages: list[dict], sampling: SamplingParams, *,
                 timeout: float = ANSWER_TIMEOUT_SECONDS) -> Completion:
        """submit() and wait for the answer (timeout in seconds)."""
        return self.submit(messages, sampling).result(timeout=timeout)

    @abstractmethod
    def stream(self, messages: list[dict], sampling: SamplingParams) -> Iterator[str | Completion]:
        """Text pieces as they are decoded, then the Completion (token counts, finish_reason)."""

    def close(self) -> None:
        """Stop the loop (requests not yet answered fail with EngineClosed) and free the model."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._requests.put(Shutdown())
        self._loop_thread.join(CLOSE_TIMEOUT_SECONDS)
        with self._model_lock:
            self.backend.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @abstractmethod
    def _loop(self) -> None:
        """The loop thread: read the queue, run the model, answer; return at Shutdown."""

    def _put(self, message: _Request) -> None:
        with self._state_lock:
            self._ensure_open()
            self._requests.put(message)

    def _ensure_open(self) -> None:
        if self._closed:
            raise EngineClosed("this deployment's engine is closed: the deployment was stopped")

    @staticmethod
    def _fail(request: _Request, exc: BaseException) -> None:
        if request.pieces is not None:
            request.pieces.put(exc)
        if not request.future.done():
            request.future.set_exception(exc)


def serving_engine_create(backend) -> ServingEngine:
    """The engine for this backend: continuous batching where the backend runs the engine,
    streams alone on other transformers models, grouped batches elsewhere (vLLM)."""
    if isinstance(backend, TransformersBackend):
        return ContinuousBatchingEngine(backend) if backend.uses_engine else StreamAloneEngine(backend)
    return GroupedBatchEngine(backend)


class ContinuousBatchingEngine(ServingEngine):
    """Requests join the running batch at the next engine step and leave when they end."""

    decode_engine = None  # the loop's DecodeEngine, once it runs (tests read its stats)

    def stream(self, messages: list[dict], sampling: SamplingParams) -> Iterator[str | Completion]:
        request = _Request(messages, sampling, pieces=queue.Queue(),
                           detokenizer=IncrementalDetokenizer(self.backend.tokenizer, skip_ids=self.backend.eos_ids))
        self._put(request)
        finished = False
        try:
            while True:
                item = request.pieces.get(timeout=ANSWER_TIMEOUT_SECONDS)
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Completion):
                    finished = True
                    return
        finally:
            if not finished:  # the reader went away: stop spending compute on it
                self._requests.put(Cancel(request))

    def _loop(self) -> None:
        engine = self._decode_engine_new()
        active: set[_Request] = set()
        while True:
            for message in self._messages(block=not engine.busy):
                match message:
                    case Shutdown():
                        for request in active:
                            engine.cancel(request.sequence)
                            self._fail(request, EngineClosed("the deployment was stopped"))
                        engine.release_memory()
                        return
                    case Cancel(request=request) if request.sequence is not None:
                        engine.cancel(request.sequence)
                        active.discard(request)
                    case _Request():
                        self._admit(engine, active, message)
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
            self.stats.record(len(engine.running) + len(finished))
            for sequence in finished:
                active.discard(sequence.tag)
                self._answer(sequence)

    def _messages(self, *, block: bool) -> list:
        """What is on the queue now (waiting for the first message when `block`)."""
        messages = [self._requests.get()] if block else []
        while True:
            try:
                messages.append(self._requests.get_nowait())
            except queue.Empty:
                return messages

    def _admit(self, engine, active: set[_Request], request: _Request) -> None:
        sampling = request.sampling
        try:
            request.sequence = engine.add(
                prompt_token_ids(self.backend.tokenizer, request.messages), temperature=sampling.temperature,
                top_p=sampling.top_p, max_new_tokens=sampling.max_new_tokens, seed=secrets.randbelow(2**31),
                tag=request, on_token=self._piece_send if request.pieces is not None else None)
            active.add(request)
        except EngineError as exc:
            self._fail(request, GenerationError(str(exc)))

    def _answer(self, sequence) -> None:
        request = sequence.tag
        completion = self.backend.completion(sequence.generated, sequence.prompt_length)
        if request.pieces is not None:
            rest = request.detokenizer.finish()
            if rest:
                request.pieces.put(rest)
            request.pieces.put(completion)
        request.future.set_result(completion)

    def _decode_engine_new(self):
        """A fresh engine of MAX_BATCH slots (kept as decode_engine, for tests and stats)."""
        self.decode_engine = self.backend.engine_create(prompt_length=512, max_new_tokens=512, max_sequences=MAX_BATCH)
        return self.decode_engine

    @staticmethod
    def _piece_send(sequence, token: int) -> None:
        """A stream's new text, decoded from the new token and a short window before it."""
        request = sequence.tag
        piece = request.detokenizer.push(token)
        if piece:
            request.pieces.put(piece)


class GroupedBatchEngine(ServingEngine):
    """Requests arriving within BATCH_WAIT_SECONDS run as `generate` batches, one per sampling
    setting; a stream is answered whole, in one piece."""

    def stream(self, messages: list[dict], sampling: SamplingParams) -> Iterator[str | Completion]:
        with self._model_lock:
            self._ensure_open()
            completion = self.backend.generate([messages], sampling)[0]
        yield completion.text
        yield completion

    def _loop(self) -> None:
        while True:
            waiting = self._gather()
            requests = [message for message in waiting if isinstance(message, _Request)]  # a Cancel: batches run whole
            if any(isinstance(message, Shutdown) for message in waiting):
                for request in requests:
                    self._fail(request, EngineClosed("the deployment was stopped"))
                return
            groups: dict[tuple, list[_Request]] = {}
            for request in requests:
                key = (request.sampling.temperature, request.sampling.top_p, request.sampling.max_new_tokens)
                groups.setdefault(key, []).append(request)
            for (temperature, top_p, max_new_tokens), group in groups.items():
                self._run_batch(group, SamplingParams(temperature=temperature, top_p=top_p,
                                                      max_new_tokens=max_new_tokens, seed=secrets.randbelow(2**31)))

    def _gather(self) -> list:
        """The next message, and what else arrives within BATCH_WAIT_SECONDS (up to MAX_BATCH)."""
        waiting = [self._requests.get()]
        deadline = time.monotonic() + BATCH_WAIT_SECONDS
        while len(waiting) < MAX_BATCH and (left := deadline - time.monotonic()) > 0:
            try:
                waiting.append(self._requests.get(timeout=left))
            except queue.Empty:
                break
        return waiting

    def _run_batch(self, requests: list[_Request], sampling: SamplingParams) -> None:
        try:
            with self._model_lock:
                completions = self.backend.generate([r.messages for r in requests], sampling)
            self.stats.record(len(requests))
            for request, completion in zip(requests, completions):
                request.future.set_result(completion)
        except BaseException as exc:
            logger.exception("a serving batch of %d failed", len(requests))
            for request in requests:
                self._fail(request, exc)


class StreamAloneEngine(GroupedBatchEngine):
    """Grouped batches for whole answers; a stream runs `model.generate` alone with a streamer."""

    def stream(self, messages: list[dict], sampling: SamplingParams) -> Iterator[str | Completion]:
        import torch  # deferred: this module imports without torch

        streamer = _PieceStreamer(IncrementalDetokenizer(self.backend.tokenizer, skip_ids=self.backend.eos_ids))
        result: dict = {}

        def run() -> None:
            try:
                with self._model_lock:
                    self._ensure_open()
                    result["completion"] = self.backend.generate([messages], sampling, streamer=streamer)[0]
            except BaseException as exc:  # the consumer re-raises it
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run, name="serving-stream", daemon=True)
        with torch.inference_mode():
            thread.start()
            while (piece := streamer.pieces.get(timeout=ANSWER_TIMEOUT_SECONDS)) is not _PieceStreamer.END:
                yield piece
            thread.join()
        if "error" in result:
            raise result["error"]
        yield result["completion"]


class _PieceStreamer(BaseStreamer):
    """`model.generate`'s streamer for one prompt: the prompt is skipped, each new token's text
    goes on `pieces`, then END."""

    END = object()

    def __init__(self, detokenizer: IncrementalDetokenizer):
        self.detokenizer = detokenizer
        self.pieces: queue.Queue = queue.Queue()
        self._prompt_seen = False
        self._ended = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first puts the prompt
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if piece := self.detokenizer.push(token):
                self.pieces.put(piece)

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if rest := self.detokenizer.finish():
            self.pieces.put(rest)
        self.pieces.put(self.END)
