"""What the PII detector is, in words: its NER pipeline and version, the fine-tuned NER loaded into
it (privacy.pii_train's weights and their meta.json) with the measurement recorded for it, or that
it runs on rules alone. privacy.pii builds its detector's description with these; nothing here
loads a model."""
import importlib.metadata
import importlib.util
import json
from pathlib import Path

RULES_ONLY = "none"  # KSG_PII_MODEL=none: no NER model, rules only; KSG_PII_NER=none: the pipeline's own NER


def fine_tuned_meta(ner: str, model: str, version: str | None) -> dict | None:
    """The meta.json of the fine-tuned NER in directory `ner` where it was trained from the
    pipeline `model` at `version`; None where there is none, or it is another pipeline's."""
    if not ner or ner == RULES_ONLY or version is None:
        return None
    try:
        meta = json.loads((Path(ner) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("base") != model or meta.get("base_version") != version or not (Path(ner) / "ner").is_dir():
        return None
    return meta


def installed_version(model: str) -> str | None:
    """The version of the spaCy pipeline package (or directory) `model`, None where it is not
    installed; found without loading it."""
    if not model or model == RULES_ONLY:
        return None
    meta = Path(model) / "meta.json"
    if meta.is_file():
        return json.loads(meta.read_text(encoding="utf-8")).get("version", "unknown version")
    if importlib.util.find_spec(model) is None:
        return None
    try:
        return importlib.metadata.version(model)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def _measured_text(tuned: dict) -> str:
    """The fine-tuned NER's recorded measurement on marked sets it was not trained on (pooled), in
    words, or that there is none (ksg_pii_measure --record records one)."""
    from .intervals import wilson_interval

    measured = [m for m in tuned.get("measured", []) if m.get("set") not in tuned.get("sources", [])]
    if not measured:
        return "; not yet measured on messages it was not trained on"
    total = {key: sum(m.get(key, 0) for m in measured) for key in ("messages", "planted", "found", "spans", "correct")}
    if not total["planted"] or not total["spans"]:
        return "; not yet measured on messages it was not trained on"
    recall = wilson_interval(total["found"], total["planted"])
    precision = wilson_interval(total["correct"], total["spans"])
    return (f"; name recall {total['found']}/{total['planted']} = {total['found'] / total['planted']:.3f} "
            f"[{recall['low']:.3f}, {recall['high']:.3f}] and precision {total['correct']}/{total['spans']} = "
            f"{total['correct'] / total['spans']:.3f} [{precision['low']:.3f}, {precision['high']:.3f}] on "
            f"{total['messages']} hand-marked messages it was not trained on ({', '.join(m['set'] for m in measured)})")


def detector_describe(model: str, version: str | None, tuned: dict | None = None, ner_dir: str | None = None) -> dict:
    """{"engine", "model", "model_version", "rules_only", "ner_fine_tuned" (its directory, or None), "text"}."""
    engine = f"Presidio {importlib.metadata.version('presidio-analyzer')}"
    rules = ("the platform's rules for names in context (\"my name is\", titles, greetings, sign-offs) and for "
             "emails, phone numbers, dates and record numbers")
    if version is None:
        reason = "no NER model is configured" if not model or model == RULES_ONLY else (
            f"the NER model {model} (KSG_PII_MODEL) is not installed")
        return {"engine": engine, "model": None, "model_version": None, "rules_only": True,
                "text": f"{engine} on rules only: {reason}, so a name is found only where its context introduces "
                        f"it (a name written without such context is missed); {rules}"}
    fine_tuned = "" if tuned is None else (
        f", its NER fine-tuned on {tuned.get('marked') or 'some'} messages marked by hand and copies of them with "
        f"other names{_measured_text(tuned)}")
    return {"engine": engine, "model": model, "model_version": version, "rules_only": False,
            "ner_fine_tuned": None if tuned is None else ner_dir,
            "text": f"{engine} with spaCy's named-entity recogniser ({model} {version}{fine_tuned}) for person names, "
                    f"and {rules}"}
