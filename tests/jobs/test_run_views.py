"""The data scientist's run pages over HTTP: the run form (only usable datasets, the budget left,
refusals shown on the form with nothing created, a submit that creates the run, its first stage
and the reservation), the run page (timeline, live-stream settings, no inline script), the
timeline fragment, the list of runs and the comparison of runs on one dataset."""
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Artifact, Job
from jobs.services import artifact_record
from privacy.models import LedgerEntry
from privacy.selectors import dataset_balance
from privacy.services import budget_reserve, dataset_grant
from tests.evaluation.test_report import evaluation_json, make_run
from tests.privacy.factories import make_dataset
from tests.support.tiny_model import tiny_model_dir

pytestmark = pytest.mark.django_db


@pytest.fixture()
def world(settings, tmp_path, make_user):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # four users per test, quickly
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.KSG_ARTIFACT_DIR.mkdir()
    users = {"owner": make_user("olive"), "other": make_user("dan"),
             "officer": make_user("cleo", role="compliance_officer"), "admin": make_user("root", staff=True)}
    clinic = make_dataset(users["owner"], name="clinic", epsilon_limit="10")
    bank = make_dataset(users["other"], name="bank-tickets", epsilon_limit="5")
    return {**users, "clinic": clinic, "bank": bank}


@pytest.fixture()
def tiny_model(tmp_path):
    return tiny_model_dir(tmp_path / "tiny", ["What helps with a headache?", "Rest and water."])


def as_user(client, user):
    client.force_login(user)
    return client


def run_form(dataset, model_dir, **changes) -> dict:
    data = {"dataset": dataset.pk, "preset": "demo", "baseline": "knowledgesg", "domain": "medical",
            "target_epsilon": "3", "base_model": str(model_dir), "professional_model": str(model_dir)}
    data.update(changes)
    return data


def field_block(page: str, name: str) -> str:
    """The rendered <div class="field"> holding the input named `name`: label, help and errors."""
    for block in page.split('<div class="field')[1:]:
        if f'name="{name}"' in block:
            return block
    raise AssertionError(f"no field {name!r}")


def errors_of(page: str, name: str) -> str:
    found = re.search(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', field_block(page, name), re.S)
    return found.group(1) if found else ""


def get(client, user, name: str, args=(), **query) -> str:
    return as_user(client, user).get(reverse(name, args=args), query).content.decode()


def dataset_options(page: str) -> list[str]:
    select = page.split('name="dataset"')[1].split("</select>")[0]
    return re.findall(r"<option[^>]*>([^<]*)</option>", select)


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>")
INLINE_HANDLER = re.compile(r"\son[a-z]+=", re.I)


# --- access ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/jobs/runs/", "/jobs/runs/new/", "/jobs/runs/compare/", "/jobs/1/timeline/"])
def test_anonymous_users_are_sent_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_run_form_offers_only_the_datasets_a_user_may_use_with_the_epsilon_left(client, world):
    job = Job.objects.create(kind="dp_finetune", owner=world["owner"], dataset=world["clinic"], params={})
    budget_reserve(job=job, epsilon=4, actor=world["owner"])

    page = as_user(client, world["owner"]).get(reverse("jobs:run-new")).content.decode()
    assert dataset_options(page) == ["clinic (ε left 6 of 10)"]
    assert "ε 6 left of 10 (spent 0, reserved 4)" in page.split('id="budget-hint"')[1].split("</p>")[0]
    balances = json.loads(page.split('id="run-form-balances" type="application/json">')[1].split("</script>")[0])
    assert balances == {str(world["clinic"].pk): {
        "name": "clinic", "limit": "10", "spent": "0", "reserved": "4", "left": "6", "allow_nonprivate": False,
        "approval_threshold": None}}

    assert dataset_options(as_user(client, world["admin"]).get(reverse("jobs:run-new")).content.decode()) == [
        "bank-tickets (ε left 5 of 5)", "clinic (ε left 6 of 10)"]


def test_a_compliance_officer_sees_the_run_form_only_with_datasets_granted_to_them(client, world):
    page = as_user(client, world["officer"]).get(reverse("jobs:run-new")).content.decode()
    assert 'id="no-datasets"' in page and 'name="dataset"' not in page
    response = as_user(client, world["officer"]).post(reverse("jobs:run-new"), {"dataset": world["clinic"].pk})
    assert response.status_code == 400

    dataset_grant(dataset=world["clinic"], actor=world["owner"], user=world["officer"])
    page = as_user(client, world["officer"]).get(reverse("jobs:run-new")).content.decode()
    assert dataset_options(page) == ["clinic (ε left 10 of 10)"]


def test_every_knob_has_a_label_and_the_help_of_its_parameter(client, world):
    page = as_user(client, world["owner"]).get(reverse("jobs:run-new")).content.decode()
    for name, help_text in (("generate__num_instructions", "Raw instructions to sample."),
                            ("filter__relevance_threshold", "Minimum p(yes) of W_Pro&#x27;s relevance verdict."),
                            ("dp_finetune__max_length", "Tokens per example."),
                            ("finetune_target__epochs", "Passes over the synthetic pairs.")):
        block = field_block(page, name)
        assert f'for="id_{name}"' in block and help_text in block, name
    assert "adapter_artifact" not in page and "raw_artifact" not in page  # the run sets those
    assert 'value="40"' in page.split('name="generate__num_instructions"')[1].split(">")[0]  # the demo preset's
    paper = get(client, world["owner"], "jobs:run-new", preset="paper")
    assert 'value="1000"' in paper.split('name="generate__num_instructions"')[1].split(">")[0]
    presets = json.loads(page.split('id="run-form-presets" type="application/json">')[1].split("</script>")[0])
    assert presets["paper"]["generate"]["num_instructions"] == 1000 and presets["demo"]["target_epsilon"] == 4.0
    assert "Plain fine-tuning on the raw private records" in page  # what the nonprivate baseline means
    assert not INLINE_SCRIPT.search(page) and not INLINE_HANDLER.search(page)


# --- submitting --------------------------------------------------------------------------------

def test_a_run_is_submitted_with_its_first_stage_and_its_epsilon_reserved(client, world, tiny_model):
    data = run_form(world["clinic"], tiny_model, generate__num_instructions="7", filter__relevance_threshold="0.6")
    response = as_user(client, world["owner"]).post(reverse("jobs:run-new"), data)

    run = Job.objects.get(kind="run")
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", args=[run.pk])
    assert run.owner == world["owner"] and run.dataset == world["clinic"] and run.status == "running"
    assert run.params["baseline"] == "knowledgesg" and run.params["preset"] == "demo"
    stages = run.params["stages"]
    assert stages["generate"]["num_instructions"] == 7 and stages["filter"]["relevance_threshold"] == 0.6
    assert stages["generate"]["max_new_tokens"] == 48  # untouched knobs keep the preset's value
    assert stages["filter"]["professional_model"] == str(tiny_model)
    [stage] = run.children.all()
    assert stage.kind == "dp_finetune" and stage.status == "queued" and stage.params["base_model"] == str(tiny_model)
    assert stage.params["target_epsilon"] == 3.0
    reserve = LedgerEntry.objects.get(job=stage)
    assert reserve.kind == "reserve" and reserve.epsilon == Decimal("3")
    assert dataset_balance(dataset=world["clinic"]).left == Decimal("7")


def test_an_epsilon_that_does_not_fit_is_refused_on_the_form_and_nothing_is_created(client, world, tiny_model):
    job = Job.objects.create(kind="dp_finetune", owner=world["owner"], dataset=world["clinic"], params={})
    budget_reserve(job=job, epsilon=8, actor=world["owner"])
    response = as_user(client, world["owner"]).post(reverse("jobs:run-new"),
                                                    run_form(world["clinic"], tiny_model, target_epsilon="2.5"))

    assert response.status_code == 400
    error = errors_of(response.content.decode(), "target_epsilon")
    assert "Refused" in error and "at most 2.000000 is left" in error
    assert not Job.objects.filter(kind__in=["run", "dp_finetune"]).exclude(pk=job.pk).exists()
    assert LedgerEntry.objects.count() == 1
    page = response.content.decode()  # the other choices are kept
    assert f'value="{tiny_model}"' in page.split('name="base_model"')[1].split(">")[0]


def test_a_nonprivate_baseline_is_refused_on_a_dataset_that_does_not_allow_it(client, world, tiny_model):
    response = as_user(client, world["owner"]).post(reverse("jobs:run-new"),
                                                    run_form(world["clinic"], tiny_model, baseline="nonprivate"))
    assert response.status_code == 400
    page = response.content.decode()
    baseline = page.split('class="baselines')[1].split("</fieldset>")[0]
    assert "does not allow non-private baselines" in baseline
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()


def test_a_baseline_without_dp_needs_no_target_epsilon(client, world, tiny_model):
    data = run_form(world["clinic"], tiny_model, baseline="self_instruct", target_epsilon="")
    response = as_user(client, world["owner"]).post(reverse("jobs:run-new"), data)
    run = Job.objects.get(kind="run")
    assert response.status_code == 302 and run.params["baseline"] == "self_instruct"
    assert run.children.get().kind == "generate" and not LedgerEntry.objects.exists()

    response = as_user(client, world["owner"]).post(reverse("jobs:run-new"), run_form(world["clinic"], tiny_model,
                                                                                      target_epsilon=""))
    assert response.status_code == 400 and "needs a target epsilon" in errors_of(response.content.decode(), "target_epsilon")


def test_parameter_errors_are_shown_next_to_the_knob_or_on_top(client, world, tiny_model):
    as_user(client, world["owner"])
    response = client.post(reverse("jobs:run-new"), run_form(world["clinic"], tiny_model, generate__top_p="5"))
    assert response.status_code == 400
    assert "less than or equal to 1" in errors_of(response.content.decode(), "generate__top_p")

    # the service's own check: the training split (900 records) is smaller than the batch
    response = client.post(reverse("jobs:run-new"),
                           run_form(world["clinic"], tiny_model, dp_finetune__logical_batch_size="1000"))
    assert response.status_code == 400
    top = response.content.decode().split('class="form-errors"')[1].split("</div>")[0]
    assert "dp_finetune: the training split has 900 records, fewer than logical_batch_size 1000" in top
    assert not Job.objects.exists()


def test_a_dataset_the_user_may_not_use_is_refused(client, world, tiny_model):
    response = as_user(client, world["owner"]).post(reverse("jobs:run-new"), run_form(world["bank"], tiny_model))
    assert response.status_code == 400 and "Select a valid choice" in errors_of(response.content.decode(), "dataset")
    assert not Job.objects.exists()


# --- the run page ------------------------------------------------------------------------------

def test_the_run_page_has_a_timeline_charts_feed_and_report_link_without_inline_code(client, world):
    run = make_run(world["owner"], world["clinic"], evaluation=None)
    page = as_user(client, world["owner"]).get(reverse("jobs:detail", args=[run.pk])).content.decode()

    timeline = page.split('id="run-timeline"')[1].split("</table>")[0]
    kinds = re.findall(r'data-kind="(\w+)"', timeline)
    assert kinds == ["dp_finetune", "generate", "filter", "distill", "finetune_target"]
    assert re.search(r"<td>Evaluation\s*</td>", timeline) and "not run" in timeline  # no evaluation child
    assert "12 s" in timeline  # each child ran 12.5 seconds
    assert 'data-target-epsilon="3.0"' in page and 'data-epsilon-limit="10"' in page
    for element in ('id="run-epsilon-chart"', 'id="run-loss-chart"', 'id="feed-generate"', 'id="feed-filter"',
                    'id="feed-distill"', 'id="stream-state"', 'id="report-link"'):
        assert element in page
    config = page.split('id="job-page-config"')[1].split(">")[0]
    assert f'data-job-id="{run.pk}"' in config and f'data-timeline-url="/jobs/{run.pk}/timeline/"' in config
    assert "/static/js/run_page.js" in page and "/static/js/job_stream.js" in page
    assert not INLINE_SCRIPT.search(page) and not INLINE_HANDLER.search(page)


def test_a_single_job_page_starts_its_stream_from_a_static_file(client, world):
    job = Job.objects.create(kind="selftest", owner=world["owner"], params={"steps": 3})
    page = as_user(client, world["owner"]).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "/static/js/job_page.js" in page and f'data-job-id="{job.pk}"' in page
    assert "run_page.js" not in page
    assert not INLINE_SCRIPT.search(page) and not INLINE_HANDLER.search(page)


def test_the_timeline_fragment_shows_durations_and_downloads(client, world, settings):
    run = Job.objects.create(kind="run", owner=world["owner"], dataset=world["clinic"], status="running",
                             params={"baseline": "dp_direct", "stages": {"dp_finetune": {"target_epsilon": 2.0}}})
    started = timezone.now() - timedelta(minutes=5)
    stage = Job.objects.create(kind="dp_finetune", owner=world["owner"], dataset=world["clinic"], parent=run,
                               status="succeeded", started_at=started, finished_at=started + timedelta(seconds=65))
    adapter = settings.KSG_ARTIFACT_DIR / f"job-{stage.pk}" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    artifact = artifact_record(job_id=stage.pk, kind=Artifact.Kind.ADAPTER, path=adapter)

    response = as_user(client, world["owner"]).get(reverse("jobs:run-timeline", args=[run.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")
    assert f'data-job-id="{stage.pk}"' in rows[0] and "1 min 05 s" in rows[0] and "succeeded" in rows[0]
    assert "Evaluation" in rows[1] and "not started" in rows[1] and "data-job-id" not in rows[1]
    assert f'href="/jobs/artifacts/{artifact.pk}/download/">adapter.zip</a>' in page
    assert f'href="/jobs/{run.pk}/report/"' in page
    assert 'data-target-epsilon="2.0"' in page


def test_the_timeline_fragment_is_only_for_runs_the_user_may_see(client, world):
    run = Job.objects.create(kind="run", owner=world["owner"], dataset=world["clinic"], params={"baseline": "dp_direct"})
    job = Job.objects.create(kind="selftest", owner=world["owner"], params={})
    assert as_user(client, world["other"]).get(reverse("jobs:run-timeline", args=[run.pk])).status_code == 404
    assert as_user(client, world["owner"]).get(reverse("jobs:run-timeline", args=[job.pk])).status_code == 404
    assert as_user(client, world["officer"]).get(reverse("jobs:run-timeline", args=[run.pk])).status_code == 200


def test_the_run_list_shows_visible_runs(client, world):
    mine = Job.objects.create(kind="run", owner=world["owner"], dataset=world["clinic"],
                              params={"baseline": "dp_direct", "preset": "demo",
                                      "stages": {"dp_finetune": {"target_epsilon": 2.0}}})
    theirs = Job.objects.create(kind="run", owner=world["other"], dataset=world["bank"], params={"baseline": "knowledgesg"})
    Job.objects.create(kind="selftest", owner=world["owner"], params={})
    page = as_user(client, world["owner"]).get(reverse("jobs:run-list")).content.decode()
    body = page.split("<tbody>")[1]
    assert f">#{mine.pk}<" in body and "DP fine-tuned model, used directly" in body and f">#{theirs.pk}<" not in body
    assert body.count("<tr>") == 1
    officer_body = as_user(client, world["officer"]).get(reverse("jobs:run-list")).content.decode().split("<tbody>")[1]
    assert f">#{mine.pk}<" in officer_body and f">#{theirs.pk}<" in officer_body


# --- comparison ----------------------------------------------------------------------------------

def test_the_comparison_puts_the_chosen_runs_side_by_side(client, world):
    dataset = make_dataset(world["owner"], name="wards", epsilon_limit="100")
    knowledgesg = make_run(world["owner"], dataset, evaluation=evaluation_json(heldout_loss=1.8))
    nonprivate = make_run(world["owner"], dataset, baseline="nonprivate", evaluation=evaluation_json(heldout_loss=1.2))
    unevaluated = make_run(world["owner"], dataset, baseline="dp_direct", evaluation=None)
    elsewhere = make_run(world["owner"], world["clinic"], evaluation=None)

    response = as_user(client, world["owner"]).get(
        reverse("jobs:run-compare"), {"dataset": dataset.pk, "runs": f"{nonprivate.pk},{knowledgesg.pk},{elsewhere.pk}"})

    assert response.status_code == 200
    page = response.content.decode()
    header = page.split('id="comparison-table"')[1].split("</thead>")[0]
    assert header.index(f">#{nonprivate.pk}<") < header.index(f">#{knowledgesg.pk}<")  # in the order asked
    row = lambda key: re.findall(r"<td>([^<]*)</td>",  # noqa: E731
                                 page.split(f'data-measure="{key}"')[1].split("</tr>")[0])
    assert row("heldout_loss_target") == ["1.200 [0.95, 1.45], n 6", "1.800 [1.55, 2.05], n 6"]  # t over 6 records
    assert row("win_rate") == ["0.667 [0.21, 0.94], n 3"] * 2  # Wilson, 2 of 3
    assert row("fidelity_mauve") == ["0.812 [0.61, 0.95], n 25+40"] * 2  # bootstrap, held-out private+synthetic
    assert row("epsilon_display") == ["∞", "2.41"]
    assert row("baseline") == ["nonprivate", "knowledgesg"]
    assert row("membership_auc_loss")[0] == row("membership_auc_loss")[1] != "—"
    assert f"Not shown (not runs on this dataset that you may see): {elsewhere.pk}" in page
    form = page.split('id="compare-form"')[1].split("</form>")[0]
    assert f'value="{unevaluated.pk}">' in form and f'value="{knowledgesg.pk}" checked' in form

    # checkboxes submit runs=1&runs=2; an unevaluated run shows dashes
    page = client.get(reverse("jobs:run-compare"), {"dataset": dataset.pk, "runs": [unevaluated.pk]}).content.decode()
    assert re.findall(r"<td>([^<]*)</td>", page.split('data-measure="win_rate"')[1].split("</tr>")[0]) == ["—"]


def test_the_comparison_prints_why_a_judge_that_picks_by_position_gives_no_win_rate(client, world):
    dataset = make_dataset(world["owner"], name="wards", epsilon_limit="100")
    consistent = make_run(world["owner"], dataset, evaluation=evaluation_json())
    by_position = make_run(world["owner"], dataset, baseline="nonprivate", evaluation=evaluation_json(judge_by_position=True))
    page = as_user(client, world["owner"]).get(
        reverse("jobs:run-compare"), {"dataset": dataset.pk, "runs": f"{consistent.pk},{by_position.pk}"}).content.decode()
    row = lambda key: re.findall(r"<td>([^<]*)</td>",  # noqa: E731
                                 page.split(f'data-measure="{key}"')[1].split("</tr>")[0])
    win_rate = row("win_rate")
    assert win_rate[0] == "0.667 [0.21, 0.94], n 3"
    assert win_rate[1].startswith("not given: the judge picked by position in 3 of 3 items") and "0.500" not in win_rate[1]
    assert row("judge_consistency") == ["1.000 [0.44, 1.00], n 3", "0.000 [0.00, 0.56], n 3"]


def test_the_comparison_of_an_older_evaluation_shows_its_figures_without_intervals(client, world):
    dataset = make_dataset(world["owner"], name="wards", epsilon_limit="100")
    older = make_run(world["owner"], dataset, evaluation=evaluation_json(intervals=False))
    page = as_user(client, world["owner"]).get(reverse("jobs:run-compare"),
                                               {"dataset": dataset.pk, "runs": older.pk}).content.decode()
    cells = re.findall(r"<td>([^<]*)</td>", page.split('data-measure="heldout_loss_target"')[1].split("</tr>")[0])
    assert cells == ["1.800 no interval (older evaluation)"]


def test_the_comparison_is_only_for_visible_datasets_and_runs(client, world):
    run = make_run(world["owner"], world["clinic"], evaluation=evaluation_json())
    assert as_user(client, world["other"]).get(reverse("jobs:run-compare"),
                                               {"dataset": world["clinic"].pk, "runs": run.pk}).status_code == 404
    page = as_user(client, world["officer"]).get(reverse("jobs:run-compare"),
                                                 {"dataset": world["clinic"].pk, "runs": run.pk}).content.decode()
    assert 'id="comparison-table"' in page
    page = as_user(client, world["owner"]).get(reverse("jobs:run-compare")).content.decode()
    assert "comparison-table" not in page and ">clinic<" in page and "bank-tickets" not in page


def test_a_run_above_the_approval_threshold_waits_and_says_so(client, world, tiny_model):
    from privacy.services import approval_threshold_change

    approval_threshold_change(dataset=world["clinic"], threshold="2", actor=world["owner"], comment="review big runs")
    page = get(client, world["owner"], "jobs:run-new")
    assert "runs above ε 2 wait for a compliance officer" in page.split('id="budget-hint"')[1].split("</p>")[0]

    response = client.post(reverse("jobs:run-new"), run_form(world["clinic"], tiny_model, target_epsilon="3"),
                           follow=True)
    run = Job.objects.get(kind="run")
    assert run.status == "awaiting_approval" and not run.children.exists() and not LedgerEntry.objects.exists()
    assert "waits for a compliance officer&#x27;s approval" in response.content.decode()
