"""Fine-tuning the detector's spaCy NER on messages like the ones it must read: hand-marked
messages (tests/privacy/pii_sets) and copies of them with every name swapped for another.

The small English pipeline as published misses about 4 in 10 name mentions in a clinic's, a
bank's or a law firm's messages (docs/RESULTS.md): it was trained on news and web text, where names are mostly
English and capitalised. No larger pipeline is on the package registry this platform installs
from, so the pipeline is fine-tuned here, on CPU in minutes:
- the text: the hand-marked messages, and NAME_SWAPS copies of each with its names replaced by
  names from SWAP_LOCALES (Faker's lists of other locales than the demo data's, minus any name the
  demo lists hold: the demo data's recall stays a recall on names the detector was not built
  from), in the case the message wrote them ("hi guo" stays lower-case);
- the labels: PERSON where the marks say, and the base pipeline's own other entities (ORG, GPE,
  DATE, ...) where they do not touch a person: rehearsal, so the pipeline keeps what it knew;
  the base pipeline's PERSON spans that are not marked are taught as not a person;
- only the NER is updated: the tagger and parser the syntax rules read (privacy.pii_syntax) are
  the base pipeline's, unchanged.
The result is the NER's weights and a meta.json (the base pipeline, the sources, the settings):
privacy.pii loads them into the base pipeline where KSG_PII_NER names them (PII_NER_DIR, shipped
with the code, by default). `python manage.py ksg_pii_train` makes them again.
"""
import functools
import importlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .demo_data import NAME_LOCALES, _name_lists
from .pii_measure import _true_spans

SETS_DIR = Path(__file__).resolve().parent.parent / "tests" / "privacy" / "pii_sets"
# Faker locales the swapped names come from: Latin script, none of the demo data's NAME_LOCALES
SWAP_LOCALES = ("pl_PL", "ro_RO", "da_DK", "no_NO", "lt_LT", "lv_LV", "sk_SK", "sl_SI", "et_EE", "de_AT", "de_CH",
                "pt_PT", "es_AR", "es_MX", "en_GB", "en_NZ", "en_KE", "en_NG", "en_PK", "en_TH", "az_AZ", "is_IS",
                "ha_NG", "sw", "es_CL", "uz_UZ", "fr_BE")
# the marked sets the shipped NER (privacy/pii_ner) is trained on; the sets after them are never
# trained on: they measure it (docs/RESULTS.md)
PII_TRAIN_SETS = ("pii_handwritten", *(f"pii_handwritten_heldout{n}" for n in ("", 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)))
NAME_SWAPS = 4  # copies of each message with other names
NEGATIVE_WEIGHT = 2  # a message with no name is repeated NAME_SWAPS x this many times: it teaches what is not a name
EPOCHS = 12
DROPOUT = 0.2
BATCH = 16
SEED = 24
_PARTICLES = {"van", "von", "der", "den", "de", "da", "di", "del", "della", "la", "le", "du", "bin", "binti", "bint",
              "al", "el", "ibn", "ben", "ter", "ten", "dos", "das", "do", "y", "e", "ap", "st", "ó", "ní", "nic", "ua"}
_SURNAME_TITLES = re.compile(r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Lady|Lord|Judge|Sgt|PC|DC|DS|Cllr)\.?\s+$",
                             re.IGNORECASE)


def read_marked(paths: Iterable[Path]) -> list[tuple[str, list[str]]]:
    """(text, its marked name values) of each line of the .jsonl files; ValueError naming the file
    and line of one that is not a {"text", "pii"} object."""
    marked = []
    for path in paths:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                    names = (row.get("pii") or {}).get("name", [])
                    if not isinstance(row["text"], str) or not all(isinstance(name, str) for name in names):
                        raise TypeError("text and names must be strings")
                except (ValueError, KeyError, TypeError, AttributeError) as error:
                    raise ValueError(f"{path}, line {number}: not a {{\"text\", \"pii\": {{\"name\": [...]}}}} object "
                                     f"({error})") from error
                marked.append((row["text"], list(names)))
    return marked


@functools.cache
def _swap_names(locales: tuple[str, ...] = SWAP_LOCALES) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(first names, surnames) of Faker's `locales`, single words, none in the demo data's lists."""
    demo = set()
    for locale in NAME_LOCALES:
        for names in _name_lists(locale):
            demo.update(word.lower() for name in names for word in name.split())
    firsts, lasts = set(), set()
    for locale in locales:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attributes, into in ((("first_names_female", "first_names_male", "first_names"), firsts),
                                 (("last_names",), lasts)):
            for attribute in attributes:
                values = getattr(provider, attribute, None)
                if isinstance(values, (dict, list, tuple)):
                    into.update(name for name in values if " " not in name and "-" not in name)
    keep = lambda names: tuple(sorted(n for n in names if n.lower() not in demo and n.isalpha() and len(n) > 1))
    return keep(firsts), keep(lasts)


def trained_name_words(ner_dir: Path) -> set[str] | None:
    """The words (lower-case) of every name the fine-tuned NER in ner_dir was trained on: the marked
    sets its meta.json lists (where they are still in SETS_DIR) and the swap lists; None where there
    is no fine-tuned NER there or a set it lists is gone (what it learnt cannot be told)."""
    try:
        meta = json.loads((Path(ner_dir) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    paths = [SETS_DIR / name for name in meta.get("sources", [])]
    if not paths or not all(path.is_file() for path in paths):
        return None
    words = {word.lower() for _, names in read_marked(paths) for name in names for word in re.findall(r"\w+", name)}
    firsts, lasts = _swap_names(tuple(meta.get("swap_locales", SWAP_LOCALES)))
    return words | {name.lower() for name in (*firsts, *lasts)}


def record_measurement(ner_dir: Path, set_name: str, messages: int, name_row: dict) -> None:
    """Write privacy.pii_measure's name figures on the marked set `set_name` into ner_dir's
    meta.json ("measured", one entry a set, replaced when measured again). A set the NER was
    trained on is refused: its figures say nothing of names the NER has not met."""
    path = Path(ner_dir) / "meta.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    if set_name in meta.get("sources", []):
        raise ValueError(f"the NER in {ner_dir} was trained on {set_name}: measure it on a set it was not trained on")
    entry = {"set": set_name, "messages": messages,
             **{key: name_row[key] for key in ("planted", "found", "spans", "correct", "unseen_planted", "unseen_found")
                if key in name_row}}
    meta["measured"] = [m for m in meta.get("measured", []) if m.get("set") != set_name] + [entry]
    path.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def detector_trained_name_words() -> set[str] | None:
    """trained_name_words of the detector's fine-tuned NER; None where it runs without one."""
    from .pii import pii_detector_description

    ner_dir = pii_detector_description().get("ner_fine_tuned")
    return trained_name_words(ner_dir) if ner_dir else None


def _cased(word: str, like: str) -> str:
    if like.islower():
        return word.lower()
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word


def name_swapped(text: str, names: Sequence[str], rng: random.Random) -> tuple[str, list[str]]:
    """text with each word of its marked names replaced by another name (the same word the same
    way throughout: "Ana Ruiz ... Ana" keeps both mentions one person), and the new values."""
    firsts, lasts = _swap_names()
    leading = {value.split()[0].lower() for value in names if len(value.split()) > 1}
    mapping: dict[str, str] = {}  # a word, lower-case -> its replacement
    spans = _true_spans(text, list(names))
    for start, end in spans:
        words = [word.strip(".,'’").lower() for word in text[start:end].split()]
        surname_place = bool(_SURNAME_TITLES.search(text[max(0, start - 8):start]))
        for i, word in enumerate(words):
            if not word or word in mapping or word in _PARTICLES:
                continue
            first = (i == 0 and (len(words) > 1 or word in leading)) and not surname_place
            if len(words) == 1 and not surname_place and word not in leading:
                first = rng.random() < 0.5  # a single word: a first name as often as a surname
            if len(word) == 1:  # an initial stays an initial: "J. Mwangi"
                mapping[word] = rng.choice("ABCDEFGHIJKLMNOPRSTVWYZ")
                continue
            mapping[word] = rng.choice(firsts if first else lasts)
    out, new_values, last = [], [], 0
    for start, end in sorted(spans):
        swapped = re.sub(r"[^\s.,'’]+", lambda m: _cased(mapping.get(m.group(0).lower(), m.group(0)), m.group(0)),
                         text[start:end])
        out += [text[last:start], swapped]
        new_values.append(swapped)
        last = end
    out.append(text[last:])
    return "".join(out), sorted(set(new_values))


def training_texts(marked: Sequence[tuple[str, list[str]]], *, swaps: int = NAME_SWAPS,
                   negative_weight: int = NEGATIVE_WEIGHT,
                   seed: int = SEED) -> list[tuple[str, list[tuple[int, int]]]]:
    """(text, its person spans) for each marked message and `swaps` name-swapped copies of it."""
    rng = random.Random(seed)
    texts = []
    for text, names in marked:
        texts.append((text, _true_spans(text, names)))
        if not names:  # a message with no name teaches what is not one: it weighs more than one with its copies
            texts += [(text, [])] * (swaps * negative_weight)
        for _ in range(swaps if names else 0):
            swapped, values = name_swapped(text, names, rng)
            texts.append((swapped, _true_spans(swapped, values)))
    return texts


def _labelled(nlp, texts: Sequence[tuple[str, list[tuple[int, int]]]]) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """(text, its entities): PERSON on the marked spans, the base pipeline's other entities where
    they touch no person."""
    labelled = []
    with nlp.select_pipes(enable=["tok2vec", "ner"]):
        for (text, persons), doc in zip(texts, nlp.pipe([text for text, _ in texts], batch_size=64)):
            entities = [(start, end, "PERSON") for start, end in persons]
            entities += [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents
                         if ent.label_ != "PERSON" and not any(ent.start_char < e and s < ent.end_char for s, e in persons)]
            labelled.append((text, sorted(entities)))
    return labelled


def _examples(nlp, labelled: Sequence[tuple[str, list[tuple[int, int, str]]]]) -> list:
    """spaCy Examples of the labelled texts (every other token is outside any entity)."""
    from spacy.training import Example

    examples = []
    for text, entities in labelled:
        reference = nlp.make_doc(text)
        spans = []
        for start, end, label in entities:
            span = reference.char_span(start, end, label=label, alignment_mode="expand")
            if span is not None and not any(span.start < s.end and s.start < span.end for s in spans):
                spans.append(span)
        reference.ents = spans
        examples.append(Example(nlp.make_doc(text), reference))
    return examples


def fine_tune(base: str, texts: Sequence[tuple[str, list[tuple[int, int]]]], out: Path, *, epochs: int = EPOCHS,
              seed: int = SEED, sources: Sequence[str] = (), marked: int | None = None, log=print) -> Path:
    """Fine-tune the NER of the installed pipeline `base` on texts; save the NER alone to out/ner
    with out/meta.json saying what it was trained from (privacy.pii loads it into `base`)."""
    import spacy
    from spacy.util import fix_random_seed, minibatch

    fix_random_seed(seed)
    nlp = spacy.load(base)
    examples = _examples(nlp, _labelled(nlp, texts))
    rng = random.Random(seed)
    optimizer = nlp.resume_training()
    with nlp.select_pipes(enable=["ner"]):
        for epoch in range(epochs):
            rng.shuffle(examples)
            losses: dict = {}
            for batch in minibatch(examples, size=BATCH):
                nlp.update(batch, sgd=optimizer, drop=DROPOUT, losses=losses)
            log(f"epoch {epoch + 1}/{epochs}: NER loss {losses.get('ner', 0.0):.1f}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    nlp.get_pipe("ner").to_disk(out / "ner")
    meta = {"base": base, "base_version": nlp.meta.get("version"), "spacy": spacy.__version__,
            "marked": marked, "texts": len(texts), "persons": sum(len(persons) for _, persons in texts), "sources": list(sources),
            "name_swaps": NAME_SWAPS, "negative_weight": NEGATIVE_WEIGHT, "swap_locales": list(SWAP_LOCALES), "epochs": epochs, "seed": seed,
            "dropout": DROPOUT, "batch": BATCH}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out
