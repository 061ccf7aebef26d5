"""Names from where they stand in a sentence, and organisations and places that look like names,
read from spaCy's parse of the text (tagger and dependency parser, no list of names).

The small NER model misses or mislabels many names it has not seen ("Amadou Diallo missed ...":
ORG; "whether Yusuf can ...": WORK_OF_ART), but its parser still places them: a proper noun that
is the subject of a verb, the owner in "X's <noun>", or beside "I" in "X and I" stands where a
person stands. Such a place is weaker evidence than an introduction ("my name is"), so these
spans score SYNTAX_SCORE, below privacy.pii's CONFIDENT_SCORE.

The same parse tells a surname inside a company name or a town from a person, for the NER's
PERSON spans and for the spans above: a subject whose verb's object is "its" ("Williams, Lam and
Jones raised its guidance"), a word an organisation name ends in ("Miller Inc", "Austin and
Sons"), "X shares rose", a list of three or more lone capitalised words or one joined by "&" (a
firm's name: "Garcia, Cook and Mccarthy", "Procter & Gamble"), a lone double-barrelled surname,
a town's affixes ("Port Scottborough", "Colemouth"), "in X" or the goal of a verb of motion
("flying to Kraków"), an eponym ("Parkinson's disease", "Raynaud's makes ..."). The words here
are words of organisations, places and things: lists of what to skip, never of what to find.
A firm-shaped list of first names ("Anna, Ben and Carl") is lost with the firms, unless a name
in it is found elsewhere in the text (its other mentions are marked then).
"""
import re

from .pii_rules import NOT_NAMES, is_name_word, is_street, looks_like_medicine, name_extent, particle_name_runs

SYNTAX_SCORE = 0.75  # a proper noun in a person's place in the sentence, with no other evidence
_PERSON_PLACES = {"nsubj", "nsubjpass", "poss"}
_PROPER_TAGS = {"NNP", "NNPS"}
# entity labels the small model gives reliably enough to say "not a person"
_NOT_NAME_LABELS = {"NORP", "DATE", "TIME", "EVENT", "LANGUAGE", "LAW", "MONEY", "PERCENT", "QUANTITY", "ORDINAL",
                    "CARDINAL"}
_NOT_PERSON_LABELS = _NOT_NAME_LABELS | {"GPE", "LOC"}
# a pronoun of a person: the proper noun it refers back to is a person, whatever the NER called it
# ("Last night Radomir fainted ... hit his head": GPE; "my transfer to Wojciech ... paid him": ORG)
_PERSON_PRONOUNS = frozenset("he him his himself she her hers herself".split())
# the verbs whose object is a person: "tell Maarten that ...", "remind X to ..."
_PERSON_OBJECT_VERBS = frozenset("""
    tell tells told telling remind reminds reminded reminding inform informs informed informing thank thanks thanked
    let lets warn warned reassure reassured introduce introduced register registers registered registering enrol
    enrols enrolled enrolling enroll enrolls refer refers referred referring invite invites invited inviting
    congratulate congratulated marry married ask asks asked asking
""".split())
# "add X to the account", "remove X from the mortgage": who is on an account is a person
_ACCOUNT_VERBS = frozenset("add adds added adding remove removes removed removing".split())
_HOLDINGS = frozenset("account accounts mortgage policy lease tenancy deeds agreement will".split())
# what only a person has: "Hodan's blood sugar", "Tavita's inhaler" (the owner is a person whatever
# the NER called it; "London's hospitals" has none of these)
_PERSONAL_NOUNS = frozenset("""
    blood sugar temperature fever rash cough asthma eczema inhaler medication medicine tablets insulin appointment
    appointments prescription symptoms pain allergy allergies diabetes pregnancy baby birthday operation scan results
    leg legs arm arms knee knees back head eyes ears teeth chest skin weight heart lungs sleep school teacher nursery
    husband wife partner mum dad mother father son daughter brother sister grandmother grandfather salary wages
    pension will funeral divorce tenancy passport vaccination jab jabs nappy nappies bottle mood behaviour behavior
    id licence license payslips visa
""".split())
# the words that open a yes/no question: "Is Raynaud's the reason ...": the "'s" is no "is"
_QUESTION_OPENERS = frozenset("is was are were could can does did do might may would should has have".split())
# what an institution does to a customer's money: "Revolut blocked my transfer", "Visa declined the payment"
_INSTITUTION_VERBS = re.compile(r"(?i:block|froze|freez|charg|declin|refus|refund|reject|suspend|clos|debit|bounc|revers|match|"
                                r"cancel|report|rais|cut|withh[oe]ld|flag)")
_MONEY_NOUNS = frozenset("""
    payment payments transfer transfers card cards account accounts fee fees charge charges refund transaction
    transactions loan loans application mortgage limit claim subscription profit profits prices price rates rate
    guidance outlook dividend interest overdraft deposit withdrawal debit
""".split())
# a firm's work, for a subject the NER already calls an organisation
_FIRM_WORK_VERBS = re.compile(r"(?i:handl|manag|process|administ|audit|run|oversee|review|investigat|advis|act)")
_FIRM_WORK_NOUNS = _MONEY_NOUNS | frozenset("""
    liquidation insolvency administration audit accounts tax taxes payroll pension pensions investments portfolio
    savings claims estate probate sale purchase merger acquisition takeover case
""".split())
# words after a name that make it a firm's or a product's: "my Monzo app", "the Visa card", "Tesco shares"
_FIRM_NOUN_AFTER = re.compile(r"[ \t]+(?:app|apps|card|cards|account|accounts|bank|branch|branches|website|statement"
                              r"|statements|fees|overdraft|customers|store|stores|shop|shops|helpline|plc|points)\b")
# how an organisation's name ends: "Miller Inc", "Hale & Co", "Lam and Partners", "Cummings Group"
_ORG_WORDS = frozenset("""
    Inc Incorporated LLC LLP Ltd Limited PLC Plc plc Corp Corporation Co Company Companies Group Holdings Partners
    Associates Sons Brothers Bros GmbH AG SA SpA BV NV Pty Bank Trust Foundation Fund Capital Ventures Industries
    Enterprises Solutions Systems Technologies Labs Media Motors Airlines Insurance Hospital Hospitals Clinic Surgery
    Pharmacy Council University College School Institute Society Agency Authority Ministry Department Services
    Consulting Logistics Partnership International Worldwide Global Money Lodge Wing Pay Lettings Estates Properties
    Homes Legal Accountants Dental Builders Construction Haulage Design Studio Studios Marketplace Works Ceramics
""".split())
_ORG_AFTER = re.compile(r"[ \t]*(?:,[ \t]*)?(?:&|and)?[ \t]*(?P<word>[A-Z][A-Za-z]*)\b\.?")
_SHARES_AFTER = re.compile(r"(?:['’]s)?[ \t]+(?:shares|stock|share\s+price|shareholders|board)\b")
# where a place stands: "demand in Colemouth", and the goal of a verb of motion ("flying to Kraków",
# "move my savings to Monzo"); a plain "to", "for" or "with" is where persons stand too
_PLACE_BEFORE = re.compile(
    r"(?:\b(?:in|near|outside|across|around|throughout)|\b(?i:go|goes|going|went|gone|move[sd]?|moving|fly|flies"
    r"|flying|flew|flown|travel(?:s|led|ling|ed|ing)?|drive|drives|drove|driving|driven|return(?:s|ed|ing)?|head(?:s|ed"
    r"|ing)?|switch(?:es|ed|ing)?|emigrat\w+|relocat\w+)(?:[ \t]+[\w'’]+){0,3}?[ \t]+"
    r"(?:to|into|towards))[ \t]+\Z")
_FIRM_BEFORE = re.compile(r"\b(?i:banks?|banked|banking|account|accounts|mortgage|loan|insured|insurance|pension|savings"
                          r"|ISA)[ \t]+(?:is[ \t]+|are[ \t]+)?(?:with|at)[ \t]+\Z")
_STREET_BEFORE = re.compile(r"\b(?:Street|St|Road|Rd|Lane|Avenue|Ave|Drive|Close|Way|Crescent|Terrace|Place|Gardens|Grove"
                            r"|Square|Mews|Row|Walk|Hill),[ \t]*\Z")
_POSSESSIVE_AFTER = re.compile(r"['’]s?\b")
# a town's affixes: "Lake Jacquelineshire", "Port Scottborough", "New Carolynville", "Kimberlymouth"
_PLACE_FIRST_WORDS = frozenset("Lake Port East West North South New Mount Fort Saint San Santa Upper Lower".split())
_PLACE_SUFFIX = re.compile(r"(?:mouth|ville|burgh|borough|shire|furt|stad|chester|haven|town|view)\Z")
_ITS = frozenset({"its"})
# "Parkinson's disease", "Crohn's disease": a person's name in a thing's name (only nouns a person's
# own "X's <noun>" hardly takes: "Maria's test", "Maria's fracture" stay a person's)
_EPONYM_NOUNS = frozenset("disease syndrome palsy phenomenon lymphoma sarcoma reflex manoeuvre maneuver contracture "
                          "theorem flare flares".split())
# where an illness is named: "diagnosed with Hashimoto's last year", "my wife's Raynaud's"
_ILLNESS_BEFORE = re.compile(r"(?:\b(?i:diagnosed[ \t]+with|suffers?[ \t]+from|suffering[ \t]+from|suffered[ \t]+from"
                             r"|treated[ \t]+for|tested[ \t]+for|test[ \t]+for|living[ \t]+with|symptoms[ \t]+of)"
                             r"|['’]s|\b(?:my|your|his|her|our|their))[ \t]+\Z")
# the names of a list "Garcia, Cook and Mccarthy", "Hale & Lam": what follows the list speaks for all
_JOINT = r"(?:,[ \t]*(?:and[ \t]+|&[ \t]*)?|[ \t]+and[ \t]+|[ \t]*&[ \t]*)"
_LIST_NEXT = re.compile(_JOINT + r"(?=[A-Z])")
_CAPITALISED = re.compile(r"[A-Z][\w'’-]*")
_LIST_BEFORE = re.compile(r"(?<![\w'’-])(?P<word>[A-Z][\w'’-]*)" + _JOINT + r"\Z")
FIRM_LIST_MEMBERS = 3  # "Garcia, Cook and Mccarthy": three or more lone words in a list name a firm
# a double-barrelled surname alone, no first name or title before it: "Jones-Davis will cut 450 jobs",
# "Regulators fined Gould-Foster $576 million"
_DOUBLE_BARRELLED = re.compile(r"[A-Z][^\W\d_A-Z]+-[A-Z][^\W\d_A-Z]+\Z")


def _name_shaped(token) -> bool:
    return token.tag_ in _PROPER_TAGS and is_name_word(token.text) and token.text not in NOT_NAMES


def _run(doc, head) -> tuple[int, int]:
    """Token indices [first, last] of the proper-noun run that ends at `head` ("Amadou Diallo",
    "Rhiannon Pryce-Llewellyn": spaCy splits a hyphenated word into three tokens)."""
    first = head.i
    while first > 0 and head.i - first < 5:
        before = doc[first - 1]
        if (before.text == "-" and first > 1 and not before.whitespace_ and not doc[first - 2].whitespace_
                and is_name_word(doc[first - 2].text)):
            first -= 2
        elif _name_shaped(before) and before.head.i in range(first - 1, head.i + 1):
            first -= 1
        else:
            break
    return first, head.i


def _in_person_place(token) -> bool:
    """The token is the subject of a verb, the owner in "X's <noun>", or stands beside "I"/"me"."""
    if token.dep_ == "poss":
        following = token.doc[token.i + 1: token.i + 3]
        return (len(following) == 2 and following[0].text in ("'s", "’s", "'", "’")
                and following[1].text[:1].islower() and following[1].lower_ not in _EPONYM_NOUNS
                and following[1].tag_ not in ("DT", "PDT"))
    if token.dep_ in _PERSON_PLACES:  # the subject of a verb that follows it ("Negative: ..." is no subject)
        following = token.doc[token.i + 1] if token.i + 1 < len(token.doc) else None
        return (token.head.i > token.i and token.head.tag_[:2] in ("VB", "MD")
                and (following is None or following.text not in (":", ";", ".", "!", "?")))
    return any(child.dep_ == "conj" and child.lower_ in ("i", "me") for child in token.children)


def _person_by_role(token) -> bool:
    """The token is a person by what is said of it, whatever the NER's label: the indirect object
    of a verb ("I owe Liliana money"), the object of "tell", "remind", "thank", "register", ...,
    the owner of what only a person has ("Hodan's blood sugar")."""
    if token.dep_ == "dative" and token.head.tag_[:2] == "VB":
        return True
    if token.dep_ == "dobj" and token.head.lower_ in _ACCOUNT_VERBS and any(
            prep.lower_ in ("to", "from", "onto", "off") and any(obj.lower_ in _HOLDINGS for obj in prep.children)
            for prep in token.head.children if prep.dep_ in ("prep", "dative")):
        return True  # "remove Min-ji Yeom from the account": an account has persons on it
    if token.dep_ == "poss" and _in_person_place(token):
        owned = token.head
        return any(word.lower_ in _PERSONAL_NOUNS for word in [owned, *(c for c in owned.children if c.dep_ == "compound")])
    return token.dep_ == "dobj" and token.head.lower_ in _PERSON_OBJECT_VERBS


def _pronoun_antecedents(doc) -> set[int]:
    """Indices of proper nouns that a later "he", "she", "his", "her" in the same sentence refers
    back to: the nearest name-shaped proper noun before it, unless a common noun or another
    third-person pronoun stands between as a subject (then that is the antecedent)."""
    found = set()
    for pronoun in doc:
        if pronoun.lower_ not in _PERSON_PRONOUNS:
            continue
        before = list(doc[pronoun.sent.start: pronoun.i])
        if not before and pronoun.sent.start > 0:  # a sentence that opens with "She": the last sentence's person,
            before = list(doc[pronoun.sent.start - 1].sent)  # its subject where a name is one ("Can Mihaela have Calpol?")
            subjects = [token for token in before if token.dep_ in ("nsubj", "nsubjpass") and _name_shaped(token)]
            before = subjects or before
        for token in reversed(before):
            if token.dep_ in ("nsubj", "nsubjpass") and (token.tag_ in ("NN", "NNS") or token.lower_ in
                                                         _PERSON_PRONOUNS | {"they", "it"}):
                break
            if (_name_shaped(token) and token.dep_ not in ("compound", "flat") and token.ent_type_ not in _NOT_NAME_LABELS
                    and doc[token.i - 1].lower_ not in ("the", "a", "an") and not _illness_object(token)):
                found.add(token.i)
                break
    return found


def _illness_object(token) -> bool:
    """ "has Alzheimer's", "diagnosed with Crohn's": a possessive with no noun after it, as an
    object, is an illness named after a person ("at Maria's" stays a person's house)."""
    following = token.doc[token.i + 1] if token.i + 1 < len(token.doc) else None
    return (following is not None and following.tag_ == "POS" and token.dep_ != "poss"
            and (token.dep_ == "dobj" or token.head.lower_ == "with"))


def syntax_name_candidates(doc) -> list[tuple[int, int, float]]:
    """(start, end, score) character spans of proper nouns in a person's place in the sentence,
    or that a person's pronoun refers back to, not organisations or places; none where the
    pipeline has no parser."""
    if doc is None or not doc.has_annotation("DEP") or not doc.has_annotation("TAG"):
        return []
    spans = []
    referred = _pronoun_antecedents(doc)
    for token in doc:
        if not _name_shaped(token) or token.ent_type_ in _NOT_NAME_LABELS:
            continue
        if not (token.i in referred or _person_by_role(token)
                or token.ent_type_ not in _NOT_PERSON_LABELS and _in_person_place(token)):
            continue
        first, last = _run(doc, token)
        start, end = name_extent(doc.text, doc[first].idx, doc[last].idx + len(doc[last].text))
        if first > 0 and doc[first - 1].lower_ in ("the", "a", "an", "this", "that", "its", "our", "their"):
            continue  # "The Sainsbury's pharmacy": a thing
        if not is_organisation_or_place(doc.text, start, end, doc=doc):
            spans.append((start, end, SYNTAX_SCORE))
    for start, end in particle_name_runs(doc.text):  # "Femke de Smedt"; not "in Porto de Galinhas" (a place)
        if (not any(token.ent_type_ in ("LOC", "FAC") for token in doc if start <= token.idx < end)
                and not is_organisation_or_place(doc.text, start, end, doc=doc)):
            spans.append((start, end, SYNTAX_SCORE))
    return spans


def _subject_of_its(doc, start: int, end: int) -> bool:
    """The span is (in) the subject of a verb whose own words take "its": a company."""
    tokens = [token for token in doc if start <= token.idx < end]
    if not tokens:
        return False
    subject = tokens[-1]
    for _ in range(6):  # up through "Williams, Lam and Jones": conj and compound lead to the subject
        if subject.dep_ in ("nsubj", "nsubjpass") or subject.dep_ not in ("conj", "compound", "appos", "flat"):
            break
        subject = subject.head
    if subject.dep_ not in ("nsubj", "nsubjpass"):
        return False
    inside = {token.i for token in subject.subtree}
    return any(token.lower_ in _ITS and token.i not in inside for token in subject.head.subtree
               if token.i > subject.i)


def _list_extent(text: str, start: int, end: int) -> tuple[int, list[str], bool]:
    """The list of capitalised words that text[start:end] stands in ("Garcia, Cook and Mccarthy"
    from "Cook"): its end, its members (text[start:end] among them) and whether "&" joins any
    (a firm's sign: "Procter & Gamble"; persons are joined by "and")."""
    members, ampersand = [text[start:end]], False
    while (joint := _LIST_NEXT.match(text, end)) and (word := _CAPITALISED.match(text, joint.end())):
        members.append(word.group())
        ampersand |= "&" in joint.group()
        end = word.end()
    while (joint := _LIST_BEFORE.search(text, max(0, start - 60), start)) and joint.group("word") not in NOT_NAMES:
        members.insert(0, joint.group("word"))
        ampersand |= "&" in joint.group()
        start = joint.start()
    return end, members, ampersand


def is_organisation_or_place(text: str, start: int, end: int, *, doc=None) -> bool:
    """Whether the capitalised words text[start:end] name an organisation or a place rather than
    a person, from the words around them (and the parse `doc`, where given)."""
    words = text[start:end].split()
    if not words:
        return False
    if any(word.rstrip(".,") in _ORG_WORDS for word in words[1:]):
        return True
    if (len(words) == 1 and _DOUBLE_BARRELLED.match(words[0])
            and not re.search(r"(?<![\w'’-])[A-Z][\w'’.-]*[ \t]+\Z", text[max(0, start - 40):start])):
        return True
    end, members, ampersand = _list_extent(text, start, end)
    if ampersand or any(member in _ORG_WORDS for member in members[1:]):  # "Procter & Gamble", "Austin and Sons"
        return True
    if len(members) >= FIRM_LIST_MEMBERS and all(len(member.split()) == 1 for member in members):
        return True
    after = _ORG_AFTER.match(text, end)
    if after and after.group("word") in _ORG_WORDS:
        return True
    if _SHARES_AFTER.match(text, end):
        return True
    if len(words) > 1 and words[0] in _PLACE_FIRST_WORDS or _PLACE_SUFFIX.search(words[-1]):
        return True
    if _PLACE_BEFORE.search(text, max(0, start - 60), start) and not _POSSESSIVE_AFTER.match(text, end):
        return True
    if is_street(text, start) or (len(words) == 1 and looks_like_medicine(text, start, end)):
        return True
    if _STREET_BEFORE.search(text, max(0, start - 16), start):  # "14 Cedar Close, Harrogate": the town
        return True
    if _FIRM_BEFORE.search(text, max(0, start - 40), start):  # "he banks with Monzo": a bank
        return True
    if _eponym(text, start, end, doc) or _FIRM_NOUN_AFTER.match(text, end):
        return True
    if doc is None or not doc.has_annotation("DEP"):
        return False
    return (_subject_of_its(doc, start, end) or _institution_subject(doc, start, end) or _at_a_workplace(doc, start)
            or _possessed(doc, start, end))


def is_named_as_organisation_or_place(text: str, start: int, end: int) -> bool:
    """The narrower test for a span that a weak context introduced ("client: X", "sent to X to
    ..."): an organisation's word in or right after it ("Northgate Logistics Ltd"), a firm's product
    after it, or a town after a street ("14 Cedar Close, Harrogate"); not the list and place-word
    tests, which take "Aisyah & Farid" and "Pirjo, Eino and I" for firms."""
    words = text[start:end].split()
    after = _ORG_AFTER.match(text, end)
    return bool(any(word.rstrip(".,") in _ORG_WORDS for word in words[1:]) or (after and after.group("word") in _ORG_WORDS)
                or _FIRM_NOUN_AFTER.match(text, end) or _STREET_BEFORE.search(text, max(0, start - 16), start))


def _possessed(doc, start: int, end: int) -> bool:
    """The span is something a person has: "when I collected her Clenil" ("her" owns it; "told
    her Kofi was ill" has no owner)."""
    return any(child.dep_ == "poss" and child.tag_ == "PRP$" and child.i < token.i
               for token in doc if start <= token.idx < end for child in token.children)


def _institution_subject(doc, start: int, end: int) -> bool:
    """The span is the subject of what an institution does to money: "Revolut blocked my
    transfer", "Barclaycard keeps charging me a fee", "Why did Visa decline the payment"."""
    tokens = [token for token in doc if start <= token.idx < end]
    if not tokens or tokens[-1].dep_ not in ("nsubj", "nsubjpass"):
        return False
    verb = tokens[-1].head
    verbs = [verb] + [child for child in verb.children if child.dep_ in ("xcomp", "ccomp") and child.tag_[:2] == "VB"]
    if any(_INSTITUTION_VERBS.match(v.lower_) and any(t.lower_ in _MONEY_NOUNS for t in v.subtree if t.i > v.i)
           for v in verbs):
        return True
    # one the NER calls an organisation, doing a firm's work: "Deloitte is handling the liquidation"
    return tokens[-1].ent_type_ == "ORG" and any(
        _FIRM_WORK_VERBS.match(v.lower_) and any(t.lower_ in _FIRM_WORK_NOUNS for t in v.subtree if t.i > v.i)
        for v in verbs)


def _at_a_workplace(doc, start: int) -> bool:
    """The span is where someone works or banks: "my accountant at Grant Thornton", "the
    pharmacist at Boots" ("at" after a noun; "looked at Maria" stays a person)."""
    first = next((token for token in doc if token.idx >= start), None)
    if first is None or first.i < 2:
        return False
    at, before = doc[first.i - 1], doc[first.i - 2]
    return at.lower_ == "at" and before.tag_ in ("NN", "NNS")


def _owns_a_noun(text: str, doc, end: int) -> bool:
    """Whether the possessive ending at `end` ("X's") is followed by the noun it owns ("X's
    husband"); without a parse, a lower-case word after it counts as one."""
    if doc is None or not doc.has_annotation("TAG"):
        return bool(re.match(r"['’]s?[ \t]+[a-z]", text[end:]))
    after = [token for token in doc if token.idx >= end and token.tag_ != "POS"][:1]
    return bool(after) and after[0].tag_ in ("NN", "NNS") and after[0].ent_type_ not in ("DATE", "TIME")


def _eponym(text: str, start: int, end: int, doc) -> bool:
    """The name before `end` is a thing named after a person: "Parkinson's disease", or a
    possessive with no noun after it ("Raynaud's makes my fingers white", "Hashimoto's to ...")."""
    if re.match(r"['’]s?(?![\w'’])", text[end:]) and _ILLNESS_BEFORE.search(
            text, max(0, start - 40), start) and not _owns_a_noun(text, doc, end):
        return True  # "diagnosed with Hashimoto's last year", "my wife's Raynaud's."
    if (bare := re.match(r"[ \t]+(\w+)", text[end:])) and bare.group(1).lower() in _EPONYM_NOUNS:
        return True  # "Hodgkin lymphoma"
    after = re.match(r"['’]s[ \t]+(\w+)", text[end:])
    if not after:
        return False
    if after.group(1).lower() in _EPONYM_NOUNS:
        return True
    if after.group(1).lower() in ("the", "a", "an", "something", "anything", "this", "that"):  # "Is Raynaud's the reason ...": a thing (no "is" after "Is")
        opener = re.search(r"(?:^|[.!?\n][ \t]*)(\w+)[ \t]+[\w'’-]+[ \t]*\Z", text[:end])
        return bool(opener) and opener.group(1).lower() in _QUESTION_OPENERS
    following = [token for token in doc if token.idx == end + after.start(1)] if doc is not None else []
    return bool(following) and doc.has_annotation("TAG") and (following[0].tag_[:2] in ("VB", "MD")
                                                               or following[0].tag_ == "TO")


def name_run_start(doc, start: int) -> int:
    """The start of the proper-noun run that the name at `start` ends: a given name the model left
    out of its span ("remove Min-ji Yeom" where it tagged "Yeom"); `start` when none stands there."""
    if doc is None or not doc.has_annotation("TAG"):
        return start
    first = next((token for token in doc if token.idx == start), None)
    if first is None:
        return start
    i = first.i
    while i > 0:
        before = doc[i - 1]
        if (i > 2 and before.text[:1].islower() and doc[i - 2].text == "-" and not doc[i - 2].whitespace_
                and not doc[i - 3].whitespace_ and _name_shaped(doc[i - 3]) and before.head.i >= first.i):
            i -= 3  # "Min-ji": spaCy's "Min", "-", "ji"
        elif _name_shaped(before) and before.dep_ == "compound" and before.head.i >= first.i:
            i -= 1
        else:
            break
    return doc[i].idx
