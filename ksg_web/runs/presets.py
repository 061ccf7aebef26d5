"""Run presets: the parameters of every stage a run (KnowledgeSG or a baseline) may have."""
import copy
import dataclasses
from typing import Any

from jobs.kinds import JobParamsError, job_kinds

ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Finishes on a 2-core CPU with the embedded model in minutes (sizes in docs/PERFORMANCE.md).
    "demo": {
        # Few-shot prompting and the loss on the responses, as before issue 23: at the demo's size (45
        # training patients, 8 DP steps) an adapter carries nothing of how the private messages read,
        # trained on the whole record or not, DP or not (docs/RESULTS.md, "Issue 23, continued"), and
        # its opened user turn writes the base model's generic requests (gyms, Docker) where the
        # few-shot prompt writes medical ones. The paper preset samples the user's turn.
        "dp_finetune": {"target_epsilon": 4.0, "epochs": 1.0, "logical_batch_size": 16, "physical_batch_size": 8,
                        "max_length": 64, "lora_rank": 8, "lora_alpha": 16, "learning_rate": 2e-3,
                        "loss_on": "response"},
        "generate": {"num_instructions": 40, "prompting": "few_shot", "few_shot": 3, "temperature": 0.9,
                     "top_p": 0.95, "max_new_tokens": 48},
        "filter": {"dedup_threshold": 0.7, "relevance_threshold": 0.5, "pii_action": "mask"},
        "distill": {"temperature": 0.3, "top_p": 0.9, "max_new_tokens": 96},
        "finetune_target": {"epochs": 2.0, "logical_batch_size": 8, "physical_batch_size": 8, "max_length": 160,
                            "lora_rank": 8, "lora_alpha": 16, "learning_rate": 2e-3},
        # the nonprivate baseline as a practitioner who does not protect anyone trains: every token of
        # the whole records, four epochs, LoRA on every linear layer (the leaky upper bound; its held-out
        # loss is logged beside the training loss, so the over-fitting shows). Whole means whole: the
        # demo's records run to 259 tokens, and at 80 the reply (record number, age, history) was cut.
        "finetune_private": {"epochs": 4.0, "logical_batch_size": 16, "physical_batch_size": 8, "max_length": 256,
                             "lora_rank": 16, "lora_alpha": 32, "learning_rate": 2e-3, "loss_on": "record",
                             "target_modules": ALL_LINEAR},
        # 30 reconstruction targets against at least 20 candidates (every target's true name is one, so
        # 30 different people make 30): a leak of 5x chance is outside chance's interval
        # (reconstruction.attack_power), with fewer scorings than the former 20 x 50
        # 64 held-out questions, each judged in both answer orders (128 judge prompts): the win-rate's
        # and the judge consistency's 95% intervals are then about +-0.12 wide. They are drawn from the
        # whole held-out split, which must hold 64 records (ksg_dataset_add --heldout-fraction); with
        # fewer, all of them are used and the report says how many.
        # The sizes are caps (evaluation.sequential): in 3 looks the attacks and the judge sample a quarter, a
        # half, then all of them, stopping at the first look whose interval decides (a leak shown, or one of
        # 5x chance excluded; a judge found uninformative or informative), each interval at 1 - 0.05 / 3.
        "evaluate": {"max_records": 60, "max_length": 128, "reconstruction_targets": 30, "candidate_set_size": 20,
                     "generation_records": 64, "max_new_tokens": 48, "canary_references": 1000,
                     "sequential_looks": 3},
    },
    # The paper's scale, for GPU machines: about 500 private records, 1000 raw instructions. Stage 1
    # learns the whole record, the instruction included, so that stage 2 can open the user's turn
    # and let the DP adapter write the message (KnowledgeSG's way of carrying the private
    # distribution into the synthetic instructions).
    "paper": {
        "dp_finetune": {"target_epsilon": 4.0, "epochs": 3.0, "logical_batch_size": 64, "physical_batch_size": 8,
                        "max_length": 512, "lora_rank": 16, "lora_alpha": 32, "learning_rate": 2e-4,
                        "loss_on": "record"},
        "generate": {"num_instructions": 1000, "prompting": "user_turn", "few_shot": 3, "temperature": 0.9,
                     "top_p": 0.95, "max_new_tokens": 256},
        "filter": {"dedup_threshold": 0.7, "relevance_threshold": 0.5, "pii_action": "mask"},
        "distill": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 512},
        "finetune_target": {"epochs": 3.0, "logical_batch_size": 32, "physical_batch_size": 8, "max_length": 512,
                            "lora_rank": 16, "lora_alpha": 32, "learning_rate": 2e-4},
        "finetune_private": {"epochs": 3.0, "logical_batch_size": 64, "physical_batch_size": 8, "max_length": 512,
                             "lora_rank": 16, "lora_alpha": 32, "learning_rate": 2e-4, "loss_on": "record",
                             "target_modules": ALL_LINEAR},
        "evaluate": {"max_records": 500, "max_length": 512, "reconstruction_targets": 200, "candidate_set_size": 100,
                     "generation_records": 100, "max_new_tokens": 256, "canary_references": 10000,
                     "sequential_looks": 3},
    },
}
# What a baseline changes in every preset: self_instruct has no adapter whose user turn could be
# sampled, so it asks with the public seeds, as the paper's Self-Instruct baseline does.
BASELINE_PRESET = {"self_instruct": {"generate": {"prompting": "few_shot"}}}
MODEL_FIELDS = {"base_model": ("dp_finetune", "generate", "finetune_target", "finetune_private", "evaluate"),
                "professional_model": ("filter", "distill", "evaluate")}


def preset_stages(preset: str, *, domain: str = "medical", target_epsilon: float | None = None,
                  base_model: str | None = None, professional_model: str | None = None,
                  overrides: list[str] = (), baseline: str = "knowledgesg") -> dict[str, dict[str, Any]]:
    """Stage parameters of a preset for a run of `baseline` (BASELINE_PRESET), with the run-wide
    choices applied, then `overrides` ("stage.field=value", typed by the field) on top."""
    if preset not in PRESETS:
        raise JobParamsError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    stages = copy.deepcopy(PRESETS[preset])
    for kind, values in BASELINE_PRESET.get(baseline, {}).items():
        stages[kind].update(values)
    for kind in ("generate", "filter", "distill"):
        stages[kind]["domain"] = domain
    if target_epsilon is not None:
        stages["dp_finetune"]["target_epsilon"] = target_epsilon
    for field_name, value in (("base_model", base_model), ("professional_model", professional_model)):
        if value:
            for kind in MODEL_FIELDS[field_name]:
                stages[kind][field_name] = value
    for item in overrides:
        kind, field_name, value = override_value(item)
        if kind not in stages:
            raise JobParamsError(f"--set {item!r}: {kind} is not a stage of a run; stages: {', '.join(stages)}")
        stages[kind][field_name] = value
    return stages


def override_value(item: str) -> tuple[str, str, Any]:
    """("stage", "field", typed value) from "stage.field=value"."""
    key, sep, text = item.partition("=")
    kind, dot, field_name = key.strip().partition(".")
    if not sep or not dot:
        raise JobParamsError(f"--set {item!r}: write stage.field=value, e.g. generate.num_instructions=100")
    kinds = {name: spec for name, spec in job_kinds().items() if spec.params_class is not None}
    if kind not in kinds:
        raise JobParamsError(f"--set {item!r}: unknown stage {kind!r}; stages: {', '.join(kinds)}")
    fields = {f.name: f for f in dataclasses.fields(kinds[kind].params_class)}
    if field_name not in fields:
        raise JobParamsError(f"--set {item!r}: {kind} has no field {field_name!r}; fields: {', '.join(fields)}")
    wanted = fields[field_name].type
    try:
        value = int(text) if wanted in (int, "int") else float(text) if wanted in (float, "float") else text.strip()
    except ValueError:
        raise JobParamsError(f"--set {item!r}: {kind}.{field_name} needs a {getattr(wanted, '__name__', wanted)}") from None
    return kind, field_name, value
