"""The `export` stage (server side): a run's final model as a merged full model directory that
`AutoModelForCausalLM.from_pretrained` loads anywhere, with a model card stating its privacy
guarantee and its evaluation.

The model exported is the one the run's evaluation measured (the evaluate stage's adapter on
its base model): KnowledgeSG's target adapter, a baseline's adapter. The LoRA weights are merged
into the base (W + B A, PEFT's merge_and_unload), written as safetensors with the tokenizer.
The card is built from the run report without the dataset's records (the dataset's name and
hash, never its text), so the stage stays on the server side of the privacy boundary.
"""
import json
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from jobs.selectors import artifact_input
from privacy.dp.config import DATASET_SIZE_POLICY
from ksg_web.runs.kinds import RUN
from .report import run_report
from jobs.models import Job
from synthesis.lm.loader import causal_lm_load
from synthesis.prompts import seed_instructions

CARD_FILE = "README.md"
PRIVACY_FILE = "privacy.json"


def model_export_run(params, ctx) -> None:
    if ctx.job.artifacts.filter(kind="model").exists():
        return  # idempotent: this export is already written
    run = Job.objects.get(pk=params.run_id, kind=RUN)
    report = run_report(run, records_readable=False)
    adapter_dir = artifact_input(artifact_id=params.adapter_artifact, kind="adapter")
    ctx.log(f"merging adapter artifact {params.adapter_artifact} into {params.base_model}")
    out_dir = ctx.artifact_dir / "merged_model"
    staging = ctx.artifact_dir / "merged_model.partial"
    shutil.rmtree(staging, ignore_errors=True)
    merged_model_write(base_model=params.base_model, adapter_dir=adapter_dir, out_dir=staging)
    ctx.check()
    facts = card_facts(report, base_model=params.base_model, adapter_artifact=params.adapter_artifact)
    (staging / PRIVACY_FILE).write_text(json.dumps(facts, indent=2))
    (staging / CARD_FILE).write_text(model_card(facts))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.replace(out_dir)  # a re-run never sees half a model
    ctx.artifact(kind="model", path=out_dir)
    ctx.log(f"merged model written: {sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6:.0f} MB")
    if params.quantize == "gptq":
        quantized = ctx.artifact_dir / "merged_model_gptq"
        shutil.rmtree(quantized, ignore_errors=True)
        domain = (report.get("parameters") or {}).get("generate", {}).get("domain", "medical")
        gptq_write(model_dir=out_dir, out_dir=quantized, domain=domain)
        ctx.artifact(kind="model", path=quantized)
        ctx.log("4-bit GPTQ copy written")


def merged_model_write(*, base_model: str, adapter_dir: Path, out_dir: Path) -> Path:
    """Load the base model, apply the LoRA adapter, merge it into the weights and save the
    result (safetensors) and the adapter's tokenizer to out_dir."""
    from peft import PeftModel  # deferred: the export stage's libraries load in the worker, never in the web process
    from transformers import AutoTokenizer  # deferred (as above)

    base, _ = causal_lm_load(base_model, cache_dir=settings.KSG_MODEL_CACHE)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(out_dir)
    return out_dir


def gptq_write(*, model_dir: Path, out_dir: Path, domain: str) -> Path:
    """A 4-bit GPTQ copy of a merged model directory (transformers' GPTQConfig, backed by
    gptqmodel and optimum: the `gpu` extra, on a CUDA machine). Calibrated on the public seed
    instructions of the domain, never on private records (this runs on the server side)."""
    import importlib.util  # the gpu extra's packages may be absent

    import torch  # deferred: GPTQ needs torch only in the worker
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig  # deferred (as above)

    missing = [name for name in ("gptqmodel", "optimum") if importlib.util.find_spec(name) is None]
    if not torch.cuda.is_available() or missing:
        raise RuntimeError("a GPTQ export needs a CUDA GPU and the gpu extra (pip install '.[gpu]'); "
                           + ("this machine has no CUDA GPU" if not torch.cuda.is_available()
                              else f"missing: {', '.join(missing)}") + ". Export with quantize=none here.")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    calibration = list(seed_instructions(domain))
    config = GPTQConfig(bits=4, dataset=calibration, tokenizer=tokenizer)
    model = AutoModelForCausalLM.from_pretrained(model_dir, device_map="auto", quantization_config=config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    for name in (CARD_FILE, PRIVACY_FILE):
        shutil.copy(model_dir / name, out_dir / name)
    return out_dir


def card_facts(report: dict[str, Any], *, base_model: str, adapter_artifact: int) -> dict[str, Any]:
    """What the card states, as data (also written as privacy.json): the guarantee from the
    ledger, the dataset's identity, the evaluation's headline figures."""
    privacy = report.get("privacy") or {}
    evaluation = report.get("evaluation") or {}
    attacks = evaluation.get("privacy", {})
    utility = evaluation.get("utility", {})
    reconstruction = attacks.get("reconstruction") or {}
    mechanism = privacy.get("mechanism") or {}
    return {
        "run": report["run"]["id"], "baseline": report["run"]["baseline"],
        "baseline_label": report["run"]["baseline_label"], "base_model": base_model,
        "adapter_artifact": adapter_artifact,
        "dataset": None if report["dataset"] is None else {
            "name": report["dataset"]["name"], "sha256": report["dataset"]["sha256"],
            "train_records": report["dataset"]["train_records"], "size": DATASET_SIZE_POLICY},
        # q and T are part of the guarantee; n follows from them (DATASET_SIZE_POLICY)
        "mechanism": {key: mechanism[key] for key in ("sample_rate", "steps", "noise_multiplier", "max_grad_norm",
                                                      "unit", "max_records_per_unit") if key in mechanism}
        if mechanism else None,
        "privacy": privacy,
        "evaluation": {
            "membership_auc_loss": (attacks.get("membership") or {}).get("loss", {}).get("auc"),
            "reconstruction_top1_rate": reconstruction.get("likelihood_top1_rate"),
            "reconstruction_random_guess_rate": reconstruction.get("expected_random_top1_rate"),
            "reconstruction_targets": reconstruction.get("n_targets"),
            "canary_mean_exposure_bits": (attacks.get("canaries") or {}).get("mean_exposure"),
            "heldout_loss": (utility.get("heldout_loss") or {}).get("target", {}).get("loss"),
            "heldout_loss_base": (utility.get("heldout_loss") or {}).get("base", {}).get("loss"),
            "rouge_l": (utility.get("rouge_l") or {}).get("target", {}).get("mean"),
        } if evaluation else None,
    }


def _number(value, digits: int = 3) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}"


def model_card(facts: dict[str, Any]) -> str:
    """The model card (Markdown): guarantee first, then provenance, then the measurements."""
    privacy = facts["privacy"] or {}
    if privacy.get("unbounded"):
        guarantee = ("**No differential-privacy guarantee (epsilon = infinity).** This model was fine-tuned on the "
                     "raw private records without DP (a non-private baseline); it can reproduce them. "
                     "Do not release it.")
    elif facts["baseline"] == "self_instruct":
        guarantee = ("**No private record was used to train it (epsilon = 0)**: self-instruct baseline, synthetic "
                     "data from the base model alone.")
    elif privacy.get("epsilon") is not None:
        unit = privacy["epsilon_unit"]
        protected = ("each training record" if unit == "per record"
                     else f"each person ({unit.removeprefix('per ')}) with all their training records together")
        guarantee = (f"**(epsilon = {privacy['epsilon']}, delta = {privacy['delta']:g})-differential privacy "
                     f"{unit}**: it protects {protected}, from the {privacy.get('accountant', '?')} "
                     "accountant over the DP-SGD steps of stage 1, as committed in the platform's privacy ledger. "
                     "Every later stage only post-processes the DP adapter, so the guarantee carries over.")
    else:
        raise ValueError(f"run {facts['run']} has no epsilon committed in the ledger; there is no guarantee to state")
    dataset = facts["dataset"]
    unit = facts["privacy"]["epsilon_unit"]  # the dataset's, also for runs without DP (said above)
    protected_unit = "each record" if unit == "per record" else f"each person ({unit.removeprefix('per ')})"
    provenance = ("no dataset" if dataset is None else
                  f"dataset `{dataset['name']}` (sha256 `{dataset['sha256']}`, {dataset['train_records']} "
                  "training records); no record of it is in this card or in this directory")
    mechanism = facts.get("mechanism") or {}
    if all(isinstance(mechanism.get(key), (int, float)) for key in ("steps", "sample_rate", "noise_multiplier",
                                                                   "max_grad_norm")):
        per_person = mechanism.get("unit") not in (None, "record")
        sampled = (f"of persons, at most {mechanism.get('max_records_per_unit')} records each, each person's summed "
                   "gradient clipped to" if per_person else "of records, each record's gradient clipped to")
        guarantee += (f" DP-SGD ran {mechanism['steps']} steps at Poisson sample rate {mechanism['sample_rate']:g} "
                      f"{sampled} norm {mechanism['max_grad_norm']:g}, noise multiplier "
                      f"{mechanism['noise_multiplier']:g}.")
    lines = [
        f"# KnowledgeSG model: run {facts['run']} ({facts['baseline_label']})", "",
        "## Privacy guarantee", "", guarantee, "",
        "## Provenance", "",
        f"- Base model: `{facts['base_model']}`; LoRA adapter artifact {facts['adapter_artifact']}, merged into the weights.",
        f"- Derived from {provenance}.",
        "- The training set's size is treated as public: it is stated above and follows from the sample rate "
        f"and the step count; the guarantee protects {protected_unit}'s content and membership, not how many "
        "there are.", "",
    ]
    evaluation = facts["evaluation"]
    if evaluation:
        lines += [
            "## Evaluation (the platform's evaluate stage on this model)", "",
            "| measure | value |", "|---|---:|",
            f"| membership inference ROC AUC (loss; 0.5 is chance) | {_number(evaluation['membership_auc_loss'])} |",
            f"| name reconstruction top-1 rate (random guess {_number(evaluation['reconstruction_random_guess_rate'])}, "
            f"{evaluation['reconstruction_targets']} targets) | {_number(evaluation['reconstruction_top1_rate'])} |",
            f"| canary exposure, mean (bits) | {_number(evaluation['canary_mean_exposure_bits'], 2)} |",
            f"| held-out response loss (base model: {_number(evaluation['heldout_loss_base'])}) | "
            f"{_number(evaluation['heldout_loss'])} |",
            f"| ROUGE-L against held-out references | {_number(evaluation['rouge_l'])} |", "",
        ]
    lines += ["## Loading", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "model = AutoModelForCausalLM.from_pretrained(PATH)", "tokenizer = AutoTokenizer.from_pretrained(PATH)",
              "```", "", f"`{PRIVACY_FILE}` beside this card holds the same facts as data.", ""]
    return "\n".join(lines)
