"""Forms built from the job kinds' parameter dataclasses, so bounds and help live in one place."""
import dataclasses
import re
from decimal import Decimal
from typing import Any

from django import forms

from ksg_web.runs.presets import MODEL_FIELDS, PRESETS
from synthesis.prompts import DOMAINS

from jobs.kinds import job_kind_spec
from ksg_web.runs.pipeline import BASELINES, RUN_KINDS
from jobs.kinds import job_kind_label

# What each baseline is, for the run form (the pipeline itself is BASELINES).
BASELINE_CHOICES = {
    "knowledgesg": ("KnowledgeSG",
                    "DP fine-tuning on the private data, then synthetic instructions from the DP model, filtered by "
                    "the professional model, answered by it, and a target model trained on those pairs. Spends the "
                    "target epsilon."),
    "dp_direct": ("DP model used directly",
                  "Only the DP fine-tuning: the stage-1 adapter is the model. Spends the target epsilon."),
    "self_instruct": ("Self-Instruct",
                      "Stages 2-5 from the base model alone: no private data, no epsilon spent."),
    "nonprivate": ("Non-private LoRA",
                   "Plain fine-tuning on the raw private records with no DP guarantee: the leaky upper bound the "
                   "others are compared with. Only where the dataset allows it; recorded in the ledger."),
    "scrubbed": ("Scrubbed LoRA",
                 "Plain fine-tuning on the private records after masking every name, email, phone, date and id "
                 "the PII detector finds: the usual alternative to DP, and no guarantee (what the detector misses "
                 "is trained on). Only where the dataset allows non-private baselines; recorded in the ledger."),
}
# Fields the run form sets once for every stage, or that the run sets itself (artifact ids).
RUN_WIDE_FIELDS = {"domain", "target_epsilon", "records", *MODEL_FIELDS}  # records: set by the baseline
# The knobs shown first for each stage; the rest are folded under "more settings".
MAIN_KNOBS = {
    "dp_finetune": ("epochs", "logical_batch_size", "max_length", "max_grad_norm", "learning_rate"),
    "generate": ("num_instructions", "temperature", "top_p", "max_new_tokens"),
    "filter": ("dedup_threshold", "relevance_threshold"),
    "distill": ("temperature", "max_new_tokens"),
    "finetune_target": ("epochs", "logical_batch_size", "max_length", "learning_rate"),
    "finetune_private": ("epochs", "logical_batch_size", "max_length", "learning_rate"),
    "evaluate": ("max_records", "reconstruction_targets", "generation_records"),
}
KNOB_SEPARATOR = "__"  # form field name of a stage knob: "<stage>__<field>"


def param_form_field(spec: dataclasses.Field, *, initial: Any = None, required: bool = True) -> forms.Field:
    """A form field for one parameter of a params dataclass: its bounds, choices and help text."""
    initial = spec.default if initial is None else initial
    help_text = spec.metadata.get("help", "")
    choices = spec.metadata.get("choices")
    if choices is not None:
        return forms.ChoiceField(choices=[(choice, choice) for choice in choices], initial=initial,
                                 help_text=help_text, required=required)
    bounds = {"min_value": spec.metadata.get("min"), "max_value": spec.metadata.get("max")}
    if spec.type in (int, "int"):
        return forms.IntegerField(initial=initial, help_text=help_text, required=required, **bounds)
    if spec.type in (float, "float"):
        return forms.FloatField(initial=initial, help_text=help_text, required=required, **bounds)
    if spec.type in (str, "str"):
        return forms.CharField(initial=initial, help_text=help_text, required=required, max_length=1000)
    raise TypeError(f"{spec.name}: no form field for parameters of type {spec.type!r}")


def params_form_class(kind: str) -> type[forms.Form]:
    """A Form with one field per parameter of `kind`, with its default, bounds and help text."""
    form_fields = {spec.name: param_form_field(spec) for spec in dataclasses.fields(job_kind_spec(kind).params_class)}
    return type(f"{kind.title()}ParamsForm", (forms.Form,), form_fields)


def stage_knobs(kind: str) -> list[dataclasses.Field]:
    """The parameters of a stage a user sets on the run form: not artifact ids, not run-wide."""
    return [spec for spec in dataclasses.fields(job_kind_spec(kind).params_class)
            if not spec.name.endswith("_artifact") and spec.name not in RUN_WIDE_FIELDS]


def preset_values(preset: str) -> dict[str, dict[str, Any]]:
    """Every knob's value under a preset (the dataclass default where the preset is silent)."""
    values = {}
    for kind in RUN_KINDS:
        given = PRESETS[preset].get(kind, {})
        values[kind] = {spec.name: given.get(spec.name, spec.default) for spec in stage_knobs(kind)}
    dp_defaults = {spec.name: spec.default for spec in dataclasses.fields(job_kind_spec("dp_finetune").params_class)}
    values["target_epsilon"] = PRESETS[preset].get("dp_finetune", {}).get("target_epsilon",
                                                                           dp_defaults["target_epsilon"])
    return values


class DatasetChoiceField(forms.ModelChoiceField):
    """Each dataset named with the epsilon it has left, server-rendered."""

    def __init__(self, *args, balances: dict[int, dict], **kwargs):
        self.balances = balances
        super().__init__(*args, **kwargs)

    def label_from_instance(self, dataset) -> str:
        balance = self.balances.get(dataset.pk)
        return f"{dataset.name} (ε left {balance['left']} of {balance['limit']})" if balance else dataset.name


class RunForm(forms.Form):
    """A KnowledgeSG run or a baseline: the run-wide choices, then every stage's knobs
    (fields "<stage>__<name>", blank = the preset's value)."""

    dataset = DatasetChoiceField(queryset=None, balances={}, empty_label=None,
                                 help_text="Only datasets you may use are listed.")
    preset = forms.ChoiceField(choices=[(name, name) for name in PRESETS], initial="demo",
                               help_text="demo: minutes on a laptop CPU with the embedded model; "
                                         "paper: the paper's sizes, for a GPU machine.")
    baseline = forms.ChoiceField(choices=[(name, label) for name, (label, _) in BASELINE_CHOICES.items()
                                          if name in BASELINES],
                                 initial="knowledgesg", widget=forms.RadioSelect)
    domain = forms.ChoiceField(choices=[(domain, domain) for domain in DOMAINS], initial="medical",
                               help_text="Prompts and few-shot seed examples of this domain.")
    target_epsilon = forms.DecimalField(label="Target epsilon", min_value=Decimal("0.01"), max_value=Decimal(100),
                                        decimal_places=6, required=False)
    base_model = forms.CharField(label="Base model (W_Loc)", max_length=1000, initial="smollm2-135m-instruct",
                                 help_text="smollm2-135m-instruct (embedded), a local Hugging Face model directory, "
                                           "or a hub id.")
    professional_model = forms.CharField(label="Professional model (W_Pro)", max_length=1000,
                                         initial="smollm2-135m-instruct",
                                         help_text="Judges relevance and writes the responses: a domain expert model "
                                                   "(a local directory or hub id), or the embedded model.")

    def __init__(self, *args, datasets, balances: dict[int, dict], preset: str = "demo", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = datasets
        self.fields["dataset"].balances = balances
        defaults = preset_values(preset if preset in PRESETS else "demo")
        self.fields["preset"].initial = preset
        self.fields["target_epsilon"].initial = defaults["target_epsilon"]
        self.fields["target_epsilon"].help_text = (
            "Epsilon stage 1 may spend (reserved before it starts; what it does not spend is released). "
            "Used by KnowledgeSG and the DP model baseline.")
        for kind in RUN_KINDS:
            for spec in stage_knobs(kind):
                field = param_form_field(spec, initial=defaults[kind][spec.name], required=False)
                field.label = spec.name.replace("_", " ").capitalize()
                self.fields[f"{kind}{KNOB_SEPARATOR}{spec.name}"] = field

    def stage_groups(self) -> list[dict]:
        """The knobs grouped by stage, main ones first, for the template."""
        groups = []
        for kind in RUN_KINDS:
            main = [self[f"{kind}{KNOB_SEPARATOR}{name}"] for name in MAIN_KNOBS.get(kind, ())]
            more = [self[f"{kind}{KNOB_SEPARATOR}{spec.name}"] for spec in stage_knobs(kind)
                    if spec.name not in MAIN_KNOBS.get(kind, ())]
            groups.append({"kind": kind, "label": job_kind_label(kind), "main": main, "more": more,
                           "about": job_kind_spec(kind).params_class.__doc__.strip().splitlines()[0],
                           "baselines": " ".join(name for name, stages in BASELINES.items() if kind in stages)})
        return groups

    def baseline_options(self) -> list[dict]:
        return [{"value": name, "label": label, "help": help_text, "stages": BASELINES[name]}
                for name, (label, help_text) in BASELINE_CHOICES.items() if name in BASELINES]

    def clean(self):
        cleaned = super().clean()
        baseline = cleaned.get("baseline")
        if baseline and "dp_finetune" in BASELINES[baseline] and cleaned.get("target_epsilon") is None \
                and "target_epsilon" not in self.errors:
            self.add_error("target_epsilon", "a run with DP fine-tuning needs a target epsilon")
        return cleaned

    def knob_values(self) -> dict[str, dict[str, Any]]:
        """The knobs filled in on the form, per stage ({"generate": {"num_instructions": 100}})."""
        values: dict[str, dict[str, Any]] = {}
        for name, value in self.cleaned_data.items():
            kind, separator, field_name = name.partition(KNOB_SEPARATOR)
            if separator and value not in (None, ""):
                values.setdefault(kind, {})[field_name] = value
        return values

    def add_service_error(self, message: str) -> None:
        """An error of the run services next to the knob it names ("generate.top_p must be ..."),
        else at the top of the form."""
        match = re.match(r"(\w+)\.(\w+) ", message)
        field_name = f"{match.group(1)}{KNOB_SEPARATOR}{match.group(2)}" if match else None
        self.add_error(field_name if field_name in self.fields else None, message)
