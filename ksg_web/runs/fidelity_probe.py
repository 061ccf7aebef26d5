"""How much of the private instructions' distribution an adapter carries, before a run spends
anything on it: sample instructions from W_Loc (+ an adapter) the way stage 2 would and measure
their fidelity (evaluation.fidelity: MAUVE, precision/recall/density/coverage, with intervals) to
the dataset's held-out instructions. Client side: it reads the held-out split, so it needs a
grant on the dataset; what it prints is aggregate figures and the synthetic samples (which a
run would send to the server anyway), never a private record.

It answers "at which epsilon does the DP adapter carry the private data's distribution?" with
numbers: `manage.py ksg_fidelity --dataset D --adapter-job J` per stage-1 job, and with no
adapter for the base model's own figure."""
from dataclasses import dataclass

import torch
from django.conf import settings

from evaluation.fidelity import fidelity_of_texts
from jobs.models import Artifact, Job
from jobs.selectors import artifact_input
from privacy.access import datasets_usable_by
from privacy.models import PrivateDataset
from privacy.pii import pii_find_many
from privacy.selectors import dataset_records
from privacy.services import AccessRefused
from synthesis.lm.generation import SamplingParams, TransformersBackend
from synthesis.prompts import generation_prompts, instruction_extract, user_turn_instruction, user_turn_prompts

ADAPTER_KINDS = ("dp_finetune", "finetune_private")
NAME_KINDS = ("name",)


@dataclass(frozen=True)
class ProbeSettings:
    """What to sample: `count` instructions by `prompting` ("user_turn" or "few_shot"), as stage 2
    samples them; max_length bounds the embedding (tokens)."""

    prompting: str = "user_turn"
    count: int = 60
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0
    max_length: int = 128
    domain: str = "medical"
    few_shot: int = 3


def adapter_fidelity(*, dataset: PrivateDataset, actor, adapter_job: Job | None, base_model: str,
                     probe: ProbeSettings) -> dict:
    """{"fidelity": evaluation.fidelity report, "samples": the sampled instructions, "with_name":
    how many of them the PII detector finds a name in (the filter stage would drop them),
    "adapter": what was sampled from}. Raises AccessRefused without a grant on the dataset,
    ValueError for an adapter job that is not a finished stage-1 (or nonprivate) job on it."""
    if not datasets_usable_by(actor).filter(pk=dataset.pk).exists():
        raise AccessRefused(f"you have no grant on dataset '{dataset.name}': its held-out split is private")
    adapter_path, described = None, f"{base_model} alone (no adapter)"
    if adapter_job is not None:
        adapter_path, described = _adapter_of(adapter_job, dataset)
    return adapter_path_fidelity(dataset=dataset, adapter_path=adapter_path, described=described,
                                 base_model=base_model, probe=probe)


def adapter_path_fidelity(*, dataset: PrivateDataset, adapter_path, described: str, base_model: str,
                          probe: ProbeSettings) -> dict:
    """adapter_fidelity's measurement for an adapter directory (None: the base model alone),
    `described` saying what it is. No access check: the caller made it (adapter_fidelity), or
    is a developer's script on its own data (benchmarks/noise_carry.py)."""
    heldout = [record["instruction"] for record in dataset_records(dataset=dataset, split="heldout")]
    sampling = SamplingParams(temperature=probe.temperature, top_p=probe.top_p,
                              max_new_tokens=probe.max_new_tokens, seed=probe.seed)
    if probe.prompting == "user_turn":
        prompts, extract = user_turn_prompts(probe.count), user_turn_instruction
    else:
        prompts = generation_prompts(domain=probe.domain, count=probe.count, few_shot=probe.few_shot, seed=probe.seed)
        extract = instruction_extract
    sampler = TransformersBackend.load(model_spec=base_model, adapter_path=adapter_path,
                                       cache_dir=settings.KSG_MODEL_CACHE)
    try:
        samples = [extract(completion.text) for completion in sampler.generate(prompts, sampling)]
    finally:
        sampler.close()
    encoder = TransformersBackend.load(model_spec=base_model, adapter_path=None, cache_dir=settings.KSG_MODEL_CACHE,
                                       dtype=torch.float32)
    try:
        fidelity = fidelity_of_texts(encoder.model, encoder.tokenizer, heldout, samples, encoder=base_model,
                                     max_length=probe.max_length, seed=probe.seed)
    finally:
        encoder.close()
    kept = [text for text in samples if text]
    with_name = sum(any(span.kind in NAME_KINDS for span in spans) for spans in pii_find_many(kept))
    return {"adapter": described, "prompting": probe.prompting, "fidelity": fidelity, "samples": samples,
            "with_name": with_name, "nonempty": len(kept), "heldout": len(heldout)}


def _adapter_of(job: Job, dataset: PrivateDataset):
    if job.kind not in ADAPTER_KINDS or job.dataset_id != dataset.pk:
        raise ValueError(f"job {job.pk} is a {job.kind} job on another dataset or of another kind: give a "
                         f"{' or '.join(ADAPTER_KINDS)} job of dataset '{dataset.name}'")
    artifact = Artifact.objects.filter(job=job, kind="adapter").order_by("-pk").first()
    if job.status != Job.Status.SUCCEEDED or artifact is None:
        raise ValueError(f"job {job.pk} is {job.status} and has no adapter; give a finished one")
    epsilon = job.params.get("target_epsilon")
    described = (f"job {job.pk}: {job.kind}, " + (f"target epsilon {epsilon}" if job.kind == "dp_finetune"
                                                   else "no DP (epsilon infinite)")
                 + f", loss on {job.params.get('loss_on', 'response')}")
    return artifact_input(artifact_id=artifact.pk, kind="adapter"), described
