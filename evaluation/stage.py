"""The `evaluate` stage (client side: it reads the private training and held-out records).

It answers the two questions a compliance officer asks of a model, side by side with the base
model: does it leak the private data (membership inference, name reconstruction), and is it
useful (held-out loss, ROUGE-L against the held-out references, win-rate judged by W_Pro in
both answer orders, IFD of the synthetic data vs the private data, fidelity of the synthetic
instructions to the held-out private ones). The headline figures also stream as `metric` events.
The reconstruction attack, membership inference and the judge take their sizes as caps and sample
in `sequential_looks` looks until their interval decides (evaluation.sequential); each says in the
report how many items it used and why it stopped.

The report is written twice, one file on each side of the privacy boundary (jobs.artifacts): the
whole of it, excerpts of private records included, in the client-only area on the private volume
(`evaluation_records.json`), and its aggregates (evaluation.private_parts) in the server-readable
artifact directory (`evaluation.json`). Before writing, the stage scans every server-readable
file of the run (the synthetic data among them) for the private records' text
(privacy.leak_scan) and reports what it finds, masked.
"""
import dataclasses
import json
import random

import torch
from django.conf import settings

from jobs.selectors import artifact_input, run_artifacts
from jobs.services import job_event_record
from privacy.leak_scan import PrivateTextIndex, file_scan
from privacy.canary import CANARY_MAX_LENGTH
from privacy.selectors import dataset_audit_canaries, dataset_canaries, dataset_records, release_claim
from synthesis.lm.generation import TransformersBackend

from .audit import AUDIT_DELTA, audit_report, scores_calibrated
from .canary import exposure_report
from .fidelity import fidelity_of_texts, fidelity_unmeasured
from .membership import membership_report
from .private_parts import evaluation_aggregates
from .reconstruction import reconstruction_report
from .scoring import response_logprobs
from .verdict import verdict
from .utility import (greedy_answers, heldout_loss_finding, heldout_loss_report, ifd_report, judged_sequentially,
                      rouge_l_report)

REPORT_FILE, RECORDS_FILE = "evaluation.json", "evaluation_records.json"


def evaluate_run(params, ctx) -> None:
    job = ctx.job
    if job.dataset_id is None:
        raise ValueError("an evaluation needs the dataset the model was derived from")
    if job.artifacts.filter(kind="report").exists():
        return  # idempotent: the report of this job is already there
    # Planted canaries are measured by their exposure, not mixed into the attacks on real records.
    train_all = [r for r in dataset_records(dataset=job.dataset, split="train") if not r.get("canary")]
    train = train_all[: params.max_records]
    heldout_all = dataset_records(dataset=job.dataset, split="heldout")
    heldout = heldout_all[: params.max_records]
    if not heldout:
        raise ValueError(f"dataset {job.dataset.name!r} has no held-out records; register it with a held-out fraction")
    canaries = dataset_canaries(dataset=job.dataset)
    identifying_fields = tuple(getattr(job.dataset, "identifying_fields", None) or ())
    adapter = artifact_input(artifact_id=params.adapter_artifact, kind="adapter")
    cache = settings.KSG_MODEL_CACHE
    baseline = job.parent.params.get("baseline") if job.parent_id else None  # the run's, where it is in one
    report = {"dataset": {"name": job.dataset.name, "sha256": job.dataset.sha256, "canaries": len(canaries)},
              "model": {"adapter_artifact": params.adapter_artifact, "base_model": params.base_model,
                        "baseline": baseline},
              "adapter_artifact": params.adapter_artifact, "records": {"train": len(train), "heldout": len(heldout)},
              "parameters": dataclasses.asdict(params)}

    # fp32: the attacks' likelihoods are evidence, not to be shifted by bf16 rounding
    target = TransformersBackend.load(model_spec=params.base_model, adapter_path=adapter, cache_dir=cache,
                                      dtype=torch.float32)
    base = TransformersBackend.load(model_spec=params.base_model, adapter_path=None, cache_dir=cache,
                                    dtype=torch.float32)
    try:
        ctx.check()
        report["privacy"] = {
            "membership": membership_report(target.model, target.tokenizer, train, heldout, max_length=params.max_length,
                                            looks=params.sequential_looks),
            # targets from every training record (one per person first), candidates from both splits
            "reconstruction": reconstruction_report(target.model, target.tokenizer, train_all,
                                                    limit=params.reconstruction_targets,
                                                    candidate_set_size=params.candidate_set_size, seed=params.seed,
                                                    identifying_fields=identifying_fields,
                                                    candidate_records=train_all + heldout_all,
                                                    looks=params.sequential_looks),
            "audit": _audit(params, job, target, base),
            "claim": _claim(job),
        }
        if canaries:
            report["privacy"]["canaries"] = exposure_report(target.model, target.tokenizer, canaries,
                                                            reference_sample=params.canary_references, seed=params.seed,
                                                            looks=params.sequential_looks)
        ctx.metric(step=1, membership_auc=report["privacy"]["membership"]["loss"]["auc"],
                   membership_auc_min_k=report["privacy"]["membership"]["min_k"]["auc"],
                   reconstruction_top1=report["privacy"]["reconstruction"]["likelihood_top1_rate"],
                   reconstruction_random=report["privacy"]["reconstruction"]["expected_random_top1_rate"],
                   **({"canary_exposure_mean": report["privacy"]["canaries"]["mean_exposure"]} if canaries else {}))
        ctx.check()
        questions = judged_questions(heldout_all, count=params.generation_records, seed=params.seed)
        # greedy answers to every drawn question, once per model, in one batch each: ROUGE-L scores them
        # all (it measures the models), and the judge compares them in looks until its consistency
        # decides (evaluation.sequential), so it may read only the first of them
        answers = {"target": greedy_answers(target, questions, max_new_tokens=params.max_new_tokens),
                   "base": greedy_answers(base, questions, max_new_tokens=params.max_new_tokens)}
        report["utility"] = {
            "heldout_loss": {"target": heldout_loss_report(target.model, target.tokenizer, heldout, max_length=params.max_length),
                             "base": heldout_loss_report(base.model, base.tokenizer, heldout, max_length=params.max_length)},
            "rouge_l": {side: rouge_l_report(questions, answers[side]) for side in ("target", "base")},
        }
        loss = report["utility"]["heldout_loss"]
        loss["finding"] = heldout_loss_finding(
            loss["target"], loss["base"], base_model=params.base_model,
            distilled_by=params.professional_model if params.synthetic_artifact else None)
        ctx.check()
        report["utility"]["win_rate"] = _win_rate(params, questions, answers["target"], answers["base"])
        report["utility"]["questions"] = _questions_note(params.generation_records, questions,
                                                         report["utility"]["win_rate"]["n"], heldout_all)
        report["utility"]["ifd"] = _ifd(params, base, train)
        report["utility"]["fidelity"] = _fidelity(params, base, heldout)
    finally:
        target.close()
        base.close()
    utility = report["utility"]
    ctx.metric(step=2, heldout_loss_target=utility["heldout_loss"]["target"]["loss"],
               heldout_loss_base=utility["heldout_loss"]["base"]["loss"],
               rouge_l_target=utility["rouge_l"]["target"]["mean"], win_rate=utility["win_rate"]["win_rate"],
               judge_consistency=utility["win_rate"]["consistency"])
    report["verdict"] = verdict(report)
    report["leak_scan"] = leak_scan_run(job, synthetic_artifact=params.synthetic_artifact)
    _leak_scan_report(ctx, job, report["leak_scan"])
    report_write(ctx, report)
    ctx.log("evaluation report written", membership_auc=report["privacy"]["membership"]["loss"]["auc"])
    if job.parent_id:  # the run keeps its headline figures as an event of its own
        job_event_record(job_id=job.parent_id, kind="metric", payload={"stage": "evaluate", **headline_metrics(report)})


def _audit(params, job, target, base) -> dict:
    """The one-run audit (evaluation.audit) of the evaluated model and, where the run has one
    apart from it, of its stage-1 DP adapter, with what the ledger claims for them at the audit's
    delta; {"problem": ...} when the dataset has no audit canaries."""
    canaries = dataset_audit_canaries(dataset=job.dataset)
    if not canaries:
        return {"problem": "the dataset was registered without audit canaries, so no run on it can be audited; "
                           "register it again with audit canaries (ksg_dataset_add --audit-canaries 128)"}
    delta = min(AUDIT_DELTA, job.dataset.budget.delta)
    rows = [{"instruction": canary["instruction"], "response": canary["response"]} for canary in canaries]
    base_scores = response_logprobs(base.model, base.tokenizer, rows, max_length=CANARY_MAX_LENGTH)
    models = {"model": target}
    dp_adapter = None
    if params.dp_adapter_artifact and params.dp_adapter_artifact != params.adapter_artifact:
        dp_adapter = TransformersBackend.load(
            model_spec=params.base_model, adapter_path=artifact_input(artifact_id=params.dp_adapter_artifact, kind="adapter"),
            cache_dir=settings.KSG_MODEL_CACHE, dtype=torch.float32)
        models["dp_adapter"] = dp_adapter
    result = {"canaries": len(canaries), "delta": delta}
    try:
        for name, backend in models.items():
            scores = scores_calibrated(response_logprobs(backend.model, backend.tokenizer, rows,
                                                         max_length=CANARY_MAX_LENGTH), base_scores)
            result[name] = audit_report([s for s, c in zip(scores, canaries) if c["included"]],
                                        [s for s, c in zip(scores, canaries) if not c["included"]], delta=delta)
    finally:
        if dp_adapter is not None:
            dp_adapter.close()
    return result


def _claim(job) -> dict | None:
    """What the ledger claims for the run's model (privacy.selectors.release_claim), its epsilon
    also at the audit's delta; None outside a run or before any release."""
    if not job.parent_id:
        return None
    run_jobs = [job.parent_id, *job.parent.children.values_list("pk", flat=True)]
    return release_claim(job_ids=run_jobs, delta=min(AUDIT_DELTA, job.dataset.budget.delta))


def report_write(ctx, report: dict) -> None:
    """The whole report in the client-only area (RECORDS_FILE), its aggregates in the
    server-readable artifact directory (REPORT_FILE); both `report` artifacts of the job."""
    for directory, name, content in ((ctx.client_artifact_dir, RECORDS_FILE, report),
                                     (ctx.artifact_dir, REPORT_FILE, evaluation_aggregates(report))):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(json.dumps(content, indent=1))
        ctx.artifact(kind="report", path=directory / name)


def leak_scan_run(job, *, synthetic_artifact: int = 0) -> dict:
    """Every server-readable file of the run (each stage's artifacts in the server area; the
    synthetic data given to this evaluation, if it is not one of them) scanned for any
    SPAN_WORDS-word span and identifying value of the dataset's records (both splits, the canaries
    with their secrets). Findings hold the private text; the aggregates keep it masked."""
    splits = {split: dataset_records(dataset=job.dataset, split=split) for split in ("train", "heldout")}
    index = PrivateTextIndex({**splits, "canaries": dataset_canaries(dataset=job.dataset),
                              "audit canaries": dataset_audit_canaries(dataset=job.dataset)})
    files = run_artifacts(run_id=job.parent_id, area="server") if job.parent_id else []
    if synthetic_artifact and not any(artifact.pk == synthetic_artifact for artifact, _ in files):
        synthetic = artifact_input(artifact_id=synthetic_artifact, kind="synthetic_data")
        files.append((None, synthetic))
    findings, scanned = [], 0
    for artifact, path in files:
        for file in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            scanned += 1
            name = file.name if path.is_file() else f"{path.name}/{file.relative_to(path)}"
            findings += [{"file": f"job-{artifact.job_id}/{name}" if artifact else name, "kind": f.kind,
                          "record": f.record, "text": f.text, "masked": f.masked, "records": f.records}
                         for f in file_scan(index, file, name=name)]
    return {"span_words": index.span_words, "files": scanned, "findings": findings}


def _leak_scan_report(ctx, job, scan: dict) -> None:
    """A log event on this job and on its run for each file with findings, spans masked: a
    verbatim private span in the synthetic data is one the filter stage should have caught."""
    by_file: dict[str, list[str]] = {}
    for finding in scan["findings"]:
        by_file.setdefault(finding["file"], []).append(f"{finding['kind']} \"{finding['masked']}\"")
    for file, masked in by_file.items():
        message = f"private text found in a server-readable file of the run: {file}: {'; '.join(dict.fromkeys(masked))}"
        ctx.log(message, leak_scan_findings=len(masked))
        if job.parent_id:
            job_event_record(job_id=job.parent_id, kind="log", payload={"message": message, "stage": "evaluate"})


def headline_metrics(report: dict) -> dict:
    """The figures a compliance officer reads first, from an evaluation report (None if absent)."""
    privacy, utility = report["privacy"], report["utility"]
    canaries = privacy.get("canaries") or {}
    return {
        "membership_auc": privacy["membership"]["loss"]["auc"],
        "membership_auc_min_k": privacy["membership"]["min_k"]["auc"],
        "membership_tpr_at_1pct_fpr": privacy["membership"]["loss"]["tpr_at_1pct_fpr"],
        "reconstruction_top1": privacy["reconstruction"]["likelihood_top1_rate"],
        "reconstruction_random": privacy["reconstruction"]["expected_random_top1_rate"],
        "canary_exposure_mean": canaries.get("mean_exposure"),
        "audit_epsilon_lower_bound": ((privacy.get("audit") or {}).get("model") or {}).get("epsilon_lower_bound"),
        "heldout_loss_target": utility["heldout_loss"]["target"]["loss"],
        "heldout_loss_base": utility["heldout_loss"]["base"]["loss"],
        "rouge_l_target": utility["rouge_l"]["target"]["mean"],
        "win_rate": utility["win_rate"]["win_rate"],  # None where the judge was uninformative
        "judge_consistency": utility["win_rate"]["consistency"],
    }


def judged_questions(heldout: list[dict], *, count: int, seed: int) -> list[dict]:
    """The held-out records the models answer (ROUGE-L) and the judge compares: `count` of the
    whole held-out split, drawn without replacement with `seed` (all of them, shuffled, where the
    split holds fewer; _questions_note says so in the report)."""
    return random.Random(seed).sample(heldout, min(count, len(heldout)))


def _questions_note(requested: int, questions: list[dict], judged: int, heldout: list[dict]) -> dict:
    """How many held-out questions were asked for, held out and used (ROUGE-L uses every one; the
    judge, `judged` of them: it may stop before, evaluation.sequential), and a sentence when fewer
    were used than asked for."""
    note = None
    if len(questions) < requested:
        note = (f"{requested} questions were asked for but the dataset holds out only {len(heldout)} records: "
                f"ROUGE-L uses {len(questions)} and the judge at most that many; register the data with a larger "
                f"held-out fraction for more")
    return {"requested": requested, "held_out": len(heldout), "used": len(questions), "judged": judged, "note": note}


def _win_rate(params, questions: list[dict], answers_target: list[str], answers_base: list[str]) -> dict:
    """Target vs base greedy answers to the held-out questions, judged by W_Pro in both answer
    orders (utility.judged_sequentially: 2 judge prompts per question, as many questions as its
    consistency needs, up to all of them)."""
    judge = TransformersBackend.load(model_spec=params.professional_model, adapter_path=None,
                                     cache_dir=settings.KSG_MODEL_CACHE, dtype=torch.float32)
    try:
        return judged_sequentially(judge, [record["instruction"] for record in questions], answers_target,
                                   answers_base, looks=params.sequential_looks)
    finally:
        judge.close()


def _ifd(params, base, train: list[dict]) -> dict:
    """IFD, scored with the base model, of the private data and (if given) the synthetic data."""
    result = {"private": ifd_report(base.model, base.tokenizer, train, max_length=params.max_length)}
    if params.synthetic_artifact:
        result["synthetic"] = ifd_report(base.model, base.tokenizer, _synthetic_records(params),
                                         max_length=params.max_length)
    return result


def _fidelity(params, base, heldout: list[dict]) -> dict:
    """Fidelity (evaluation.fidelity) of the synthetic instructions to the held-out private
    ones, both embedded by the base model; "not applicable" for a model trained without synthetic
    data (nonprivate, dp_direct)."""
    if not params.synthetic_artifact:
        return fidelity_unmeasured("not applicable: no synthetic data (this model was not trained on any)",
                                   n_private=len(heldout))
    return fidelity_of_texts(base.model, base.tokenizer, [record.get("instruction") for record in heldout],
                             [record.get("instruction") for record in _synthetic_records(params)],
                             encoder=params.base_model, max_length=params.max_length, seed=params.seed)


def _synthetic_records(params) -> list[dict]:
    """The first max_records (instruction, response) pairs of the evaluation's synthetic data."""
    path = artifact_input(artifact_id=params.synthetic_artifact, kind="synthetic_data")
    synthetic = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return synthetic[: params.max_records]
