"""The OpenAI-compatible endpoints of deployed models: `GET /v1/models` and
`POST /v1/chat/completions` (messages, temperature, top_p, max_tokens, stream as server-sent
events), authenticated with a serving key (`Authorization: Bearer ksk-...`). Errors use the
OpenAI shape {"error": {"message", "type", "code"}} so the official client raises its usual
exceptions. Every completion request made with a valid key is audited, whatever its outcome
(requests without one are refused with 401 and not written: an outsider cannot fill the audit).

The completion view is async: under daphne a sync view would hold the one thread Django runs
sync views in, so concurrent requests would wait for each other instead of sharing a batch.
The database work runs through sync_to_async; the model's answer is awaited on the engine's
Future. A deployment stopped while a request is on its way answers as a stopped one does before:
404, the model does not exist for this key."""
import asyncio
import json
import threading
import time
import uuid

from asgiref.sync import sync_to_async

from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .deployments import completion_audit_record, serving_key_authenticate, serving_key_over_limit
from synthesis.lm.generation import Completion, GenerationError, SamplingParams
from ..models import Deployment
from .output_filter import StreamFilter, output_filter
from .registry import DeploymentStopped, engine_for
from .servers import EngineClosed

MAX_TOKENS_LIMIT = 4096
MAX_MESSAGES = 200
MAX_CONTENT = 100_000  # characters per message


class ServingError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.audit: dict = {}

    def response(self) -> JsonResponse:
        response = JsonResponse({"error": {"message": self.message, "type": self.kind, "code": self.code,
                                           "param": None}}, status=self.status)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="v1"'
        return response


def _key(request):
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    key = serving_key_authenticate(secret.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        raise ServingError(401, "a valid serving key is needed: Authorization: Bearer ksk-... (ask the dataset's "
                                "owner or an administrator for one)", kind="authentication_error",
                           code="invalid_api_key")
    return key


def _model_not_found(name: str) -> ServingError:
    return ServingError(404, f"the model {name!r} does not exist or this key may not use it "
                             "(GET /v1/models lists yours)", code="model_not_found")


def _granted(key):
    return key.deployments.filter(active=True).select_related("adapter_artifact", "run")


@require_GET
def models_list(request):
    try:
        key = _key(request)
    except ServingError as error:
        return error.response()
    return JsonResponse({"object": "list", "data": [
        {"id": d.name, "object": "model", "created": int(d.created_at.timestamp()), "owned_by": "knowledgesg"}
        for d in _granted(key).order_by("name")]})


def _sampling(body: dict) -> SamplingParams:
    def number(name, default, low, high):
        value = body.get(name, default)
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ServingError(400, f"{name} must be a number in [{low}, {high}], got {value!r}", code="invalid_value")
        return value

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or 256
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise ServingError(400, f"max_tokens must be a whole number in [1, {MAX_TOKENS_LIMIT}], got {max_tokens!r}",
                           code="invalid_value")
    if body.get("n", 1) not in (1, None):
        raise ServingError(400, "n must be 1: one answer per request", code="invalid_value")
    top_p = number("top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise ServingError(400, "top_p must be above 0", code="invalid_value")
    return SamplingParams(temperature=float(number("temperature", 1.0, 0.0, 2.0)), top_p=float(top_p),
                          max_new_tokens=max_tokens)


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise ServingError(400, f"messages must be a list of 1 to {MAX_MESSAGES} chat messages", code="invalid_value")
    cleaned = []
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: only text is understood
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict)
                              and part.get("type") == "text")
        role = message.get("role") if isinstance(message, dict) else None
        role = "system" if role == "developer" else role
        if role not in ("system", "user", "assistant") or not isinstance(content, str) or len(content) > MAX_CONTENT:
            raise ServingError(400, f"messages[{index}] must be {{role: system|user|assistant, content: text of at "
                                    f"most {MAX_CONTENT} characters}}", code="invalid_value")
        cleaned.append({"role": role, "content": content})
    return cleaned


def _admit(request) -> tuple[dict, Deployment, list[dict], SamplingParams, bool]:
    """Key, model, rate limit and body checks (database work: run in a thread)."""
    audit = {"status_code": 200, "model_name": "", "stream": False}
    try:
        key = audit["key"] = _key(request)
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ServingError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise ServingError(400, "the body must be a JSON object")
        name = audit["model_name"] = str(body.get("model", ""))[:100]
        deployment = _granted(key).filter(name=name).first()
        if deployment is None:
            raise _model_not_found(name)
        audit["deployment"] = deployment
        if serving_key_over_limit(key, deployment):
            raise ServingError(429, f"rate limit: {deployment.requests_per_minute} requests per minute for this key",
                               kind="rate_limit_error", code="rate_limit_exceeded")
        messages, sampling = _messages(body), _sampling(body)
        stream = audit["stream"] = bool(body.get("stream"))
        if deployment.store_texts:
            audit["prompt"] = messages
        return audit, deployment, messages, sampling, stream
    except ServingError as error:
        error.audit = audit
        raise


@csrf_exempt
@require_POST
async def chat_completions(request):
    started = time.monotonic()
    try:
        audit, deployment, messages, sampling, stream = await sync_to_async(_admit)(request)
    except ServingError as error:
        if error.audit.get("key") is not None:  # without a valid key there is no one to audit, only noise
            await sync_to_async(_audit)(error.audit, started, status_code=error.status, error=error.message)
        return error.response()
    try:
        engine = await sync_to_async(engine_for, thread_sensitive=False)(deployment)  # loads once per process
        if stream:
            return _streamed(engine, deployment, messages, sampling, audit, started)
        completion = await asyncio.wrap_future(engine.submit(messages, sampling))
    except GenerationError as error:
        await sync_to_async(_audit)(audit, started, status_code=400, error=str(error))
        return ServingError(400, str(error)).response()
    except (DeploymentStopped, EngineClosed):
        error = _model_not_found(deployment.name)
        await sync_to_async(_audit)(audit, started, status_code=error.status, error=error.message)
        return error.response()
    filtered = output_filter(completion.text, mode=deployment.output_filter,
                             low_confidence=settings.KSG_SERVE_PII_LOW_CONFIDENCE)
    finish = "content_filter" if filtered.refused else completion.finish_reason
    await sync_to_async(_audit)(audit, started, completion=completion, filtered=filtered.filtered,
                                filtered_spans=filtered.spans, output=filtered.text if deployment.store_texts else "")
    return JsonResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": deployment.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": filtered.text}, "finish_reason": finish,
                     "logprobs": None}],
        "usage": _usage(completion),
    })


async def _pieces(iterator):
    """A blocking iterator (the engine's token stream) read on its own thread, as an async one."""
    loop, items = asyncio.get_running_loop(), asyncio.Queue()
    done = object()

    def pump() -> None:
        try:
            for item in iterator:
                loop.call_soon_threadsafe(items.put_nowait, item)
        except BaseException as exc:
            loop.call_soon_threadsafe(items.put_nowait, exc)
        loop.call_soon_threadsafe(items.put_nowait, done)

    threading.Thread(target=pump, name="serving-stream-pump", daemon=True).start()
    while (item := await items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def _usage(completion: Completion) -> dict:
    return {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


def _streamed(engine, deployment: Deployment, messages, sampling, audit: dict, started: float):
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": deployment.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    async def events():
        gate = StreamFilter(mode=deployment.output_filter, low_confidence=settings.KSG_SERVE_PII_LOW_CONFIDENCE)
        sent, completion, error, audited = [], None, "", False

        async def audit_write() -> None:
            nonlocal audited
            audited = True
            await sync_to_async(_audit)(audit, started, completion=completion, filtered=bool(gate.spans),
                                        filtered_spans=gate.counts(), output="".join(sent) if deployment.store_texts
                                        else "", error=error, status_code=500 if error else 200)

        try:
            yield chunk({"role": "assistant", "content": ""})
            async for piece in _pieces(engine.stream(messages, sampling)):
                if isinstance(piece, Completion):
                    completion = piece
                    break
                text = gate.feed(piece)
                if gate.refused:
                    break
                if text:
                    sent.append(text)
                    yield chunk({"content": text})
            last = []
            if not gate.refused:
                rest = gate.finish()
                if rest:
                    sent.append(rest)
                    last.append(chunk({"content": rest}))
            if gate.refused:
                sent.append(gate.refusal)
                last.append(chunk({"content": gate.refusal}, "content_filter"))
            else:
                last.append(chunk({}, completion.finish_reason if completion else "stop",
                                  _usage(completion) if completion else None))
            # the audit row before the last chunks: a client closes the connection once it reads [DONE],
            # and the server may then drop this generator without running its `finally`
            await audit_write()
            for line in last:
                yield line
            yield "data: [DONE]\n\n"
        except Exception as exc:  # the client sees the stream end; the audit keeps why
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if not audited:  # an error, or a client gone mid-stream with the generator closed
                await audit_write()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


def _audit(audit: dict, started: float, *, completion: Completion | None = None, **fields) -> None:
    record = {**audit, **fields, "latency_ms": int(1000 * (time.monotonic() - started))}
    if completion is not None:
        record.update(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens)
    completion_audit_record(**record)
