"""Forms built from the job kinds' parameter dataclasses, so bounds and help live in one place."""
import dataclasses

from django import forms

from .kinds import job_kind_spec


def params_form_class(kind: str) -> type[forms.Form]:
    """A Form with one field per parameter of `kind`, with its default, bounds and help text."""
    form_fields = {}
    for spec in dataclasses.fields(job_kind_spec(kind).params_class):
        options = {
            "initial": spec.default,
            "help_text": spec.metadata.get("help", ""),
            "min_value": spec.metadata.get("min"),
            "max_value": spec.metadata.get("max"),
            "required": True,
        }
        if spec.type in (int, "int"):
            form_fields[spec.name] = forms.IntegerField(**options)
        elif spec.type in (float, "float"):
            form_fields[spec.name] = forms.FloatField(**options)
        elif spec.type in (str, "str"):
            form_fields[spec.name] = forms.CharField(initial=spec.default, help_text=options["help_text"], max_length=1000)
        else:
            raise TypeError(f"{kind}.{spec.name}: no form field for parameters of type {spec.type!r}")
    return type(f"{kind.title()}ParamsForm", (forms.Form,), form_fields)
