"""The platform's own PII recognisers: regular expressions, no model and no list of names.

Structured kinds (email, id, phone, date): patterns for the shapes these values take, and for
identifiers the label before the value ("MRN 12345678", "account no. 1234 5678 90").

Names: the context that introduces a person, never a list of names (a list finds only the names
it holds; the NER model in privacy.pii finds the others, and these rules the ones it misses):
"my name is X", "this is X", "X here", a title ("Dr. X"), a greeting ("Dear X,", "Hi X,"), a
sign-off ("Thanks,\\nX", "Regards, X"), a lone name on a message's last line, a role ("my
husband X", "chief executive X"). Each rule has a score (how often that context is a name), so
a caller can tell a span introduced by "my name is" from one guessed from a last line.
The words below are words that are not names (function words, days, months, titles, greetings):
a list of what to skip, never of what to find.
"""
import re
from collections.abc import Iterator

from .pii_lower import LOWER_WORD

# --- structured kinds ------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")

_ID_LABEL = (
    r"(?i:\b(?:MRN|medical\s+record(?:\s+(?:number|no\.?|\#))?|(?:patient|member|customer|client|NHS|passport"
    r"|national\s+insurance|social\s+security|insurance|licen[cs]e|case|claim)\s+"
    r"(?:id|number|no\.?|\#)|(?:account|acct\.?)(?:\s+(?:number|no\.?|\#))?|(?:policy|card|routing)\s+"
    r"(?:number|no\.?|\#)))|\bID\b"
)
_ID_PATTERNS = (
    # the value after a label: "MRN 12345678", "account no. 1234 5678 90", "member ID: AB-123456"
    re.compile(
        rf"(?:{_ID_LABEL})[\s:#.]*(?:(?i:is|ending\s+in)\s+)?(?P<value>(?:[A-Z]{{1,4}}-?)?\d+(?:[ -]\d{{3,}})*)"
    ),
    re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"),  # US social security number
    re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),  # IBAN
    re.compile(r"(?<![\w$€£.,])(?![2-9]\d{9}(?!\d))\d{9,}(?!\d|[.,]\d)"),  # long bare numbers
)
_ID_MIN_DIGITS = 4

_PHONE_EXTENSION = r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?"
_PHONE_PATTERNS = (
    # (555) 123-4567, 555-123-4567, 555.123.4567, +1-555-123-4567x89, 001-555-123-4567
    re.compile(
        r"(?<![\w+])(?:(?:\+?1|001)[\s.-]?)?(?:\(\d{3}\)[\s.-]?|\d{3}[\s.-])\d{3}[\s.-]\d{4}" + _PHONE_EXTENSION + r"\b"
    ),
    # +44 20 7946 0958, +33 (0)1 23 45 67 89
    re.compile(rf"(?<![\w+])\+\d{{1,3}}(?:[\s.-]?\(?\d{{1,5}}\)?){{1,6}}{_PHONE_EXTENSION}(?!\d)"),
    # 07700 900461, 020 7946 0958, 0161 496 0000: a national number with its leading 0 (UK and others)
    re.compile(r"(?<![\w+.,])0\d{2,4}[ ]\d{3,4}[ ]?\d{3,4}(?!\d|[.,]\d)"),
    # 5551234567: ten bare digits shaped like a North American number
    re.compile(r"(?<![\w$€£.,])[2-9]\d{9}(?!\d|[.,]\d)"),
)
_PHONE_DIGITS = range(7, 16)  # E.164 numbers have at most 15 digits

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_DATE_PATTERNS = (
    re.compile(r"\b\d{4}([-/])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])\b"),  # 2024-03-01
    re.compile(r"\b(\d{1,2})([/.-])(\d{1,2})\2(?:\d{4}|\d{2})\b(?![.-]\d)"),  # 03/01/2024, 1.3.24
    re.compile(rf"\b{_MONTH}\s+{_DAY}(?:,?\s+\d{{4}})?\b(?!:)"),  # March 1, 2024; Mar. 1st
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?(?![\w])"),  # 1 March 2024
)


def structured_candidates(text: str) -> Iterator[tuple[str, int, int]]:
    """(kind, start, end) of every structured match, in the order email, id, phone, date."""
    for match in _EMAIL.finditer(text):
        yield "email", match.start(), match.end()
    for pattern in _ID_PATTERNS:
        for match in pattern.finditer(text):
            group = "value" if "value" in pattern.groupindex else 0
            if sum(c.isdigit() for c in match.group(group)) >= _ID_MIN_DIGITS:
                yield "id", match.start(group), match.end(group)
    for pattern in _PHONE_PATTERNS:
        for match in pattern.finditer(text):
            if sum(c.isdigit() for c in match.group()) in _PHONE_DIGITS:
                yield "phone", match.start(), match.end()
    for index, pattern in enumerate(_DATE_PATTERNS):
        for match in pattern.finditer(text):
            if index == 1 and min(int(match.group(1)), int(match.group(3))) > 12:
                continue  # neither 03/01 nor 01/03 reading is a month
            yield "date", match.start(), match.end()


# --- names from context ----------------------------------------------------------------------
def _letters(predicate) -> str:
    """The Latin letters (ASCII, Latin-1, Extended-A/B, Vietnamese) for which predicate holds."""
    codes = (*range(0x41, 0x5B), *range(0x61, 0x7B), *range(0xC0, 0x250), *range(0x1E00, 0x1F00))
    return "".join(chr(code) for code in codes if predicate(chr(code)))


_UPPER, _LOWER = _letters(str.isupper), _letters(str.islower)
# A capitalised word: Sarah, McDonald, O'Brien, Smith-Jones, Ní, Ångström, Wiśniewska, Thị, and a
# romanised Korean given name whose second syllable is lower case: Seo-yeon, Ha-eun (never ALL
# CAPS, nor a single letter but the Irish "Ó").
_TOKEN = re.compile(
    rf"(?<![\w'’])Ó(?=[ \t][{_UPPER}])|"  # the Irish "Ó" of Ó Lónáin: a name's one-letter word
    rf"(?<![\w'’])(?:[hnt](?=[{_UPPER}]))?[{_UPPER}](?:[{_LOWER}]+|['’](?=[{_UPPER}]))"  # Irish "hEarchú", "nGallchóir"
    rf"(?:[{_UPPER}][{_LOWER}]+)*(?:-[{_UPPER}][{_LOWER}]+|-[{_LOWER}]{{2,5}}(?![\w-]))?(?![\w])"
)
# between the words of one name: spaces, a middle initial ("John Q. Smith"), a particle ("van der")
_PARTICLES = r"(?:van|von|der|den|de|del|della|di|da|du|dos|das|le|la|bin|binti|ibn|al|el|ter|ten|zu|y|ap|ab|ferch|verch)"
_NAME_GAP = re.compile(rf"[ \t]{{1,3}}(?:[{_UPPER}]\.[ \t]{{1,3}}|(?:{_PARTICLES}[ \t]{{1,3}}){{1,2}})?")
_LEADING_PARTICLES = re.compile(rf"(?:{_PARTICLES}[ \t]{{1,3}}){{0,2}}(?:(?:al|el|ul|ad|ar|as|ash|at|az|ud|abu|bin|ibn|bint)-)?")
_TITLES = frozenset({"Dr", "Doctor", "Mr", "Mrs", "Ms", "Mx", "Miss", "Prof", "Professor", "Nurse", "Sister"})
_BEFORE_NAMES = frozenset("""
    Hi Hello Hey Hiya Dear Thanks Thank Regards Best Cheers Good Morning Afternoon Evening Sincerely Yours Love Take
    Care Many Warmly Kind Warm Signed
""".split()) | _TITLES
NOT_NAMES = frozenset("""
    The An And But Or So Nor Yet My Our Your His Her Their Its We He She They It This That These Those
    Is Are Was Were Be Been Has Have Had Do Does Did Can Could Would Should Will May Might Must Shall
    If When What Why How Where Who Whom Which Whose In On At For From To With By Of As About After
    Before Since Until Then Than Also Just Not Here There Today Tomorrow Yesterday Tonight Now Please
    Thanks Thank Regards Best Sincerely Cheers Kind Warm Hi Hello Hey Dear Yes No Okay Ok Sorry Good
    Morning Afternoon Evening Night Love Yours Take Care Many Warmly Greetings Welcome
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April June July
    August September October November December Christmas Easter
    Street Avenue Road Lane Drive Boulevard Court Place Square Park Suite Apt Way Close
    Hospital Clinic Center Centre Surgery Pharmacy Bank Inc Ltd Group Company Corp University College School
    Doctor Nurse Sister Patient Sir Madam Team Office Department Account Customer Client Support Service Services
    All Everyone Everybody Colleagues Friends Folks Guys Mum Mom Dad Mother Father
    Manager Practice Reception Receptionist Pharmacist Partner Partners Sirs Staff Head Chief Officer Member
    Email Call Text Phone Ring Contact Send Write Ask Tell Mobile Tel Fax Address Note Notes Subject Re
    English British American Canadian Irish Scottish Welsh French German Spanish Italian Polish Dutch
    I Im A
    Relations Operations Affairs Advice Liaison Complaints Enquiries Banking Compliance Payments Lending Claims
    Collections Admissions Appointments Bereavement Safeguarding Outpatients Helpdesk Resources Care Bookings Booking
    Radiology Dermatology Cardiology Oncology Neurology Urology Gynaecology Obstetrics Paediatrics Orthopaedics
    Physiotherapy Pathology Haematology Endocrinology Rheumatology Gastroenterology Ophthalmology Audiology Maternity
    Solicitor Solicitors Paralegal Associate Counsel Law Family Conveyancing Litigation Probate Lettings
    Admin Administrator Handover Ward Financial Ombudsman Thx Supervisor Matter Flat Registry Branch Managers Region
    Property Physio Practitioner Histopathology Mine Stalls Fraud Chargeback Employment Tribunal Attendance Order
    Attorney Quantum Deposit Husband Wife Keys Induction Action
    Card Cards Referral Colleague Cust Callback Underwriting Interpreter Issuer Machine Landlord Tenant App Vitamin Confirmation
    Payee Consultant Rheumatologist Draft Heads Terms Unit Applicant Applicants Executor Executors Claimant Defendant
    Respondent Appellant Witness Judge Registrar
""".split()) | _TITLES

# (what comes before the name, what must follow it or None, score: how often the context is a name)
_SCORE_INTRO, _SCORE_TITLE, _SCORE_GREETING, _SCORE_SIGNOFF, _SCORE_ROLE, _SCORE_NAME_LINE = 0.95, 0.95, 0.9, 0.85, 0.85, 0.7
_SCORE_BESIDE_ME, _SCORE_RECORD_OF = 0.85, 0.75
# where a clause starts: a line's or a sentence's start, after a comma, or after a word that opens one
_CLAUSE_START = "(?:^|(?<=[.!?;:,(\n][ \t])|(?<=\n)|" + "|".join(
    rf"(?<=\b{word}[ \t])" for word in "and but so if that when while because both then can could will would should did do"
                                       " does are were have had Can Could Will Would Should Did Do Does Are Were Have Had"
                                       " Both Then When While If".split()) + ")"
_END = r"(?=[ \t]*(?:[,.!?;:)(\n]|$))"  # the name ends a phrase
_SELF_END = r"(?=[ \t]*(?:[,.!?;:)(\n]|$)|[ \t]+(?:here|speaking|from|again|and|calling|writing)\b|[ \t]+[-–—][ \t])"
_PAIR = r"|(?=[ \t]+(?:and|&)[ \t]+[^\W\d_][\w'’-]*(?:[ \t]+[^\W\d_][\w'’-]*)?[ \t]*(?:[,.!?\n]|$))"
_AND_NEXT = re.compile(r"[ \t]+(?:and|&)[ \t]+")
_PHRASE_END = re.compile(r"(?=[ \t]*(?:[,.!?;:)\n]|$)|[ \t]+(?:and|&)[ \t]+)")
_SIGNOFF = (r"\b(?i:thanks\s+so\s+much|thank\s+you\s+so\s+much|thanks\s+again|many\s+thanks|thank\s+you|thanks"
            r"|regards|best\s+regards|kind\s+regards|warm\s+regards|best\s+wishes|best|cheers|sincerely"
            r"|yours\s+sincerely|yours\s+truly|yours|warmly|take\s+care|love|all\s+the\s+best|respectfully|signed)"
            r"[,!.]?(?:(?:[ \t]*\n)+[ \t]*|[ \t]*[-–—][ \t]*|[ \t]+)")
_RULES = tuple((re.compile(before, re.MULTILINE), re.compile(after, re.MULTILINE) if after else None, score)
               for before, after, score in (
    (r"\b(?i:my\s+name\s+is|my\s+name['’]s|name\s+is|call\s+me|named)[ \t]+", None, _SCORE_INTRO),
    (r"(?:\bI\s+am|\bI['’]m|\b[Tt]his\s+is|\b[Ii]t['’]?s|\b[Ii]t\s+is)[ \t]+", _SELF_END, _SCORE_INTRO),
    (r"\b(?:Dr|Doctor|Mr|Mrs|Ms|Mx|Miss|Prof|Professor|Nurse|Sister|DC|DS|DI|DCI|PC|Sgt|Insp|Cllr|Rev|Revd|Fr|Dame|Lord"
     r"|Lady|FY1|FY2|SHO|HCA)\.?[ \t]+", None, _SCORE_TITLE),
    (r"\b(?:Dear|Hi|Hello|Hey|Hiya|Morning|Good\s+(?:morning|afternoon|evening))[ \t]+", _END + _PAIR, _SCORE_GREETING),
    (_SIGNOFF, _END + r"|(?=[ \t]+(?:and|&)[ \t]+[^\W\d_][\w'’-]*(?:[ \t]+[^\W\d_][\w'’-]*)?[ \t]*(?:[,.!?\n]|$))",
     _SCORE_SIGNOFF),
    (_SIGNOFF + r"[^\W\d_][\w'’-]*[ \t]+(?:and|&)[ \t]+", _END, _SCORE_SIGNOFF),  # "Kind regards, Lavanya and Karthik R"
    # a signature after a dash at the end: "... my money back. - Agnese Bērziņa"
    (r"(?:^|(?<=\s))[-–—][ \t]*", r"(?=[ \t]*\Z)", _SCORE_SIGNOFF),
    # who someone spoke to, or what a person is called: "the man I spoke to, Ruairidh, told me"
    (r"\b(?i:spoke\s+to|speaking\s+to|talked\s+to|talking\s+(?:to|with)|chatting\s+with|speaking\s+with|dealt\s+with"
     r"|(?:is|was|are|were)\s+called|(?:she|he)['’]s\s+called|the\s+late|especially|particularly|married|divorced"
     r"|engaged\s+to|separated\s+from)[,]?[ \t]+", None, _SCORE_ROLE),
    # "a little boy called Mirwais", "the lovely HCA called Kobina"
    (r"\b(?:a|an|the)[ \t]+(?:[\w'’-]+[ \t]+){0,2}(?:called|named)[ \t]+", None, _SCORE_ROLE),
    # "From all the Pietikäinen family": a surname
    (r"\b(?i:the)[ \t]+", r"(?=[ \t]+family\b)", _SCORE_ROLE),
    # a transcript's speaker: "Agent (Faamanu):"
    (r"\b(?:Agent|Adviser|Advisor|Customer|Caller|Nurse|Doctor|Operator|Partner|Associate|Trainee|Solicitor|Paralegal"
     r"|Husband|Wife|Son|Daughter|Mother|Father)[ \t]*\([ \t]*", r"(?=[ \t]*\))", _SCORE_ROLE),
    # a message's sender: "Message from Tsehay Gebrehiwot:", "tel call from X re ..."; "baby X"; "Payee: X"
    (r"\b(?i:message|call|email|text|voicemail)[ \t]+from[ \t]+|\bbaby[ \t]+|\b(?:Payee|Account\s+name|Name):[ \t]*", None,
     _SCORE_ROLE),
    # a signature after the last sentence with a role: "Araceli, Customer Support", "Yohannes (Surgical Nurse Practitioner)"
    (r"(?<=[.!?])[ \t]+", r"(?=,[ \t]+[A-Z][\w &]{2,40}[ \t]*\Z|[ \t]*\([^()\n]{3,60}\)[ \t]*\Z)", _SCORE_SIGNOFF),
    # a header or a file note's label: "From: Pavitra Ramasubbu", "Applicants X and partner Y"
    (r"(?:^|(?<=\n))[ \t]*(?:From|To|Cc|Sent\s+by|Attendee|Attendees|Caller|Deceased):[ \t]*|\b(?:Applicants?|Executors?"
     r"|Beneficiary|Beneficiaries|and\s+partner)[ \t]+", None, _SCORE_ROLE),
    # a person with an age: "Aarav (8) and Ishani (5)", "Dorin Munteanu, aged 19"
    (r"(?:^|(?<=[\s(,]))", r"(?=[ \t]*\(\d{1,3}\)|,?[ \t]+aged[ \t]+\d|,[ \t]*\d{1,2}(?:[ \t]+and\b|[ \t]*[),]))",
     _SCORE_ROLE),
    # a name that opens the message, called to: "Joost, please stop the Lamotrigine"
    (r"(?:\A|(?<=\n)|(?<=[.!?][ \t]))[ \t]*", r"(?=,[ \t]+(?i:please|could|can|would|just|thanks|thank|I|we|your|you|sorry"
     r"|hope|as)\b)",
     _SCORE_ROLE),
    (r"\b(?i:thanks|thank\s+you|sorry|hello|hi|okay|ok|yes|no|of\s+course)\b[^.!?\n]{0,60},[ \t]*",
     r"(?=[ \t]*(?:[.!?]|$))", _SCORE_SIGNOFF),
    (r"(?:\b(?i:my|your|his|her|our|their|the|two|three|four|both)|['’]s)\s+(?i:(?:late|little|dear)\s+)?(?i:ex[ \t-])?"
     r"(?i:husband|wife|partner|son|daughter|mother|father|mum|mom|dad|mate|pal|solicitor|conveyancer|accountant|broker"
     r"|barrister|executor|attorney|midwife|social\s+worker|caseworker|key\s+worker|nephews|nieces|grandsons"
     r"|granddaughters|brothers|sisters|parents|trainee|paralegal|associate|assistant|secretary|PA"
     r"|brother|sister|friend|colleague|neighbour|neighbor|carer|caregiver|GP|boss|manager|grandson|granddaughter"
     r"|grandmother|grandfather|grandma|grandpa|aunt|uncle|cousin|fiancée?|boyfriend|girlfriend|nephew|niece"
     r"|flatmate|roommate|landlord|landlady|ex-husband|ex-wife|ex-partner|ex|children|kids|sons|daughters|twins"
     r"|grandchildren)(?:,|[ \t]*\()?[ \t]*", None, _SCORE_ROLE),
    # who a note was passed to: "Sent to Morag to review", "passed to Yejin in Complaints"
    (r"\b(?i:sent|passed|forwarded|handed|escalated|referred|assigned|allocated)[ \t]+(?:it[ \t]+|this[ \t]+)?to[ \t]+",
     r"(?=[ \t]+(?:to[ \t]+[a-z]+|in[ \t]+[A-Z]|for[ \t]+(?:review|approval|sign)))", _SCORE_ROLE),
    (r"\b(?i:patient|client|customer|chief\s+executive|finance\s+chief|chief\s+(?:financial|operating)\s+officer"
     r"|spokes(?:person|woman|man)|chair(?:man|woman|person)?|CEO|CFO|COO|founder|president|director|advis[eo]r"
     r"|appointed|according\s+to):?[ \t]+", None, _SCORE_ROLE),
    (r"(?:^|(?<=[.!?,;:][ \t]))[ \t]*", r"(?=[ \t]+(?:here|speaking)\b)", _SCORE_INTRO),  # "Robert White here, 54"
    # a name after the last sentence of a line: "I am very unhappy. Bärbel Dobes\n"
    (r"(?<=[.!?])[ \t]+", r"(?=[ \t]*(?:\n|\Z))", _SCORE_NAME_LINE),
    (r"\b(?i:first\s+name|surname|last\s+name|family\s+name|given\s+name|forename)(?:\s+is)?[ \t]+", None, _SCORE_INTRO),
    # "Seo-yeon and I are both ...", "Noa and me": beside the writer stands a person
    # (at a clause's start, not after "in": "hiking in Snowdonia and I think ...")
    (_CLAUSE_START, r"(?=(?:,[ \t]*[^\W\d_][\w'’-]*(?:[ \t]+[^\W\d_][\w'’-]*)?)*,?[ \t]+and[ \t]+(?:I|me|myself)\b)",
     _SCORE_BESIDE_ME),
    # what is kept about a person: "the address for Lindiwe Khumalo", "a letter for X", "on behalf of X"
    (r"\b(?i:address|details|account|letter|post|mail|appointment|prescription|results|records|file|referral"
     r"|statement|paperwork|forms)[ \t]+for[ \t]+|\b(?i:on[ \t]+behalf[ \t]+of)[ \t]+", None, _SCORE_RECORD_OF),
    (r"(?:^|(?<=[.!?,;:][ \t]))[ \t]*",
     r"(?=[ \t]+is[ \t]+my[ \t]+(?i:sur|first[ \t]+|last[ \t]+|family[ \t]+|given[ \t]+)?name\b)", _SCORE_INTRO),
))
# a line that is only a name, as a signature: the last line, or one after a line that ends a sentence
_NAME_LINE = re.compile(r"(?:(?<=[.!?]\n)|(?<=[.!?][ \t]\n)|(?<=[.!?]\n\n)|(?<=[.!?]\n[ \t]\n)|\n(?=[^\n]*\n?\Z))"
                        r"[ \t]*([^\n]+?)[ \t]*(?=\n|\Z)")
# What a lone capitalised word that the NER calls a person is more likely to be: a medicine (a
# stem from the USAN naming scheme, or after "take", "prescribed", "on") or a street.
_DRUG_STEM = re.compile(r"(?:pril|olol|sartan|statin|prazole|azole|mycin|cillin|cycline|floxacin|formin|gliptin|dipine"
                        r"|oxetine|triptan|profen|fenac|sone|olone|mab|vir|azepam|zolam|tidine|setron|lukast|dronate"
                        r"|parin|thyroxine|amol|traline|pram|pentin|gabalin|apine|epine|idone|xaban|gatran|semide"
                        r"|thiazide|terol|coxib|caine|tyline|ipramine|codone|adol|gliflozin|glutide|tinib|platin|racetam|pezil"
                        r"|zumab|ximab|mumab|nib|lamide|trigine|oxacin|azine|pine|stigmine)\Z")
# what follows a medicine's name: "Amlodipine 5 mg", "Calpol syrup", "Ventolin inhaler"
_MEDICINE_AFTER = re.compile(r"[ \t]+(?:\d+(?:\.\d+)?[ \t]*(?:mg|mcg|µg|ml|g)\b|(?:tablets?|capsules?|pills?|syrup|cream"
                             r"|gel|drops|spray|patch(?:es)?|injections?|inhaler|sachets?|dose|doses|suspension)\b"
                             r"|(?:(?:is|are|was|were)[ \t]+)?(?:out[ \t]+of[ \t]+stock|in[ \t]+short[ \t]+supply|discontinued)\b)")
# a word joined to a medicine is one too: "Nurofen with Lemsip", "Citalopram and Ozempic"
_MEDICINE_JOINT_BEFORE = re.compile(r"(?<![\w'’-])(?P<word>[A-Z][a-z]+)[ \t]*(?:,|\band|\bor|\bwith|\bplus)[ \t]+\Z")
_MEDICINE_JOINT_AFTER = re.compile(r"[ \t]*(?:,|and\b|or\b|with\b|plus\b)[ \t]*(?P<word>[A-Z][a-z]+)\b")
_MEDICINE_BEFORE = re.compile(r"\b(?i:take|takes|taking|took|tried|prescribe|prescribes|prescribed|prescribing|started"
                              r"|stopped|dose\s+of|mg\s+of|on)"
                              r"[ \t]+\Z")
_STREET_AFTER = re.compile(r"[ \t]+(?:Street|St|Road|Rd|Lane|Ln|Avenue|Ave|Drive|Close|Way|Crescent|Terrace|Place"
                           r"|Square|Gardens|Grove|Row|Walk|Court|Boulevard|Parade|Mews)\b")
_DETERMINER_AFTER = re.compile(r"[ \t]+(?:the|a|an|your|my|this|these|those|our|their|it)\b")
_DETERMINER_BEFORE = re.compile(r"\b(?i:the|a|an|this|these|those|some|any|its)[ \t]+\Z")
_HOUSE_NUMBER = re.compile(r"\d+[A-Za-z]?,?[ \t]+\Z")  # "12 London Road", "8234 Finley Vista": a street


def _tokens(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


def _name_run(text: str, tokens: list, index: int, *, max_words: int = 4) -> int:
    """Index of the last token of the name that starts at tokens[index]."""
    last = index
    while (
        last + 1 < len(tokens) and last - index + 1 < max_words
        and _NAME_GAP.fullmatch(text, tokens[last][1], tokens[last + 1][0])
        and tokens[last + 1][2] not in NOT_NAMES
    ):
        last += 1
    return last


def name_context_candidates(text: str) -> Iterator[tuple[int, int, float]]:
    """(start, end, score) of every name a context rule introduces."""
    tokens = _tokens(text)
    starts = {start: i for i, (start, _, _) in enumerate(tokens)}
    for before, after, score in _RULES:
        for match in before.finditer(text):
            particles = _LEADING_PARTICLES.match(text, match.end())  # "Dr. van der Merwe"
            index = starts.get(particles.end())
            if index is None or tokens[index][2] in NOT_NAMES:
                continue
            last = _name_run(text, tokens, index)
            # the longest run whose end the rule accepts ("Thanks, Erica Hernandez" and "Thanks, Erica")
            while last >= index and after is not None and not after.match(text, tokens[last][1]):
                last -= 1
            if last >= index:
                yield particles.start(), tokens[last][1], score
                # the names joined to it: "(Jhaycee and Princess)", "Aisyah & Farid"
                end = tokens[last][1]
                while (joint := _AND_NEXT.match(text, end)) and (following := starts.get(joint.end())) is not None:
                    if tokens[following][2] in NOT_NAMES:
                        break
                    run = _name_run(text, tokens, following)
                    if score < _SCORE_ROLE and not _PHRASE_END.match(text, tokens[run][1]):
                        break
                    yield tokens[following][0], tokens[run][1], score
                    end = tokens[run][1]
    for line in _NAME_LINE.finditer(text):
        words = _tokens(line.group(1))
        if (words and words[0][0] == 0 and words[-1][1] == len(line.group(1)) and len(words) <= 4
                and not any(word in NOT_NAMES for _, _, word in words)
                and all(_NAME_GAP.fullmatch(line.group(1), a[1], b[0]) for a, b in zip(words, words[1:]))):
            yield line.start(1), line.end(1), _SCORE_NAME_LINE


_PARTICLE_RUN = re.compile(rf"(?:[ \t]{{1,3}}{_PARTICLES}){{1,2}}[ \t]{{1,3}}")


def particle_name_runs(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every given name, particle(s) and surname: "Femke de Smedt", "Joris van
    den Broeck" (a shape that places share: "Rio de Janeiro"; the caller rules those out)."""
    tokens = _tokens(text)
    for (start, end, word), (next_start, next_end, next_word) in zip(tokens, tokens[1:]):
        if (word not in NOT_NAMES and word not in _PLACE_OR_FIRM_HEADS and next_word not in NOT_NAMES
                and next_word not in _PLACE_OR_FIRM_HEADS
                and _PARTICLE_RUN.fullmatch(text, end, next_start)):
            yield start, next_end


# the first words of places and firms in languages with such particles: "Banco de Portugal", "Costa del Sol"
_PLACE_OR_FIRM_HEADS = frozenset("""
    Bank Banco Banca Banque Caixa Caja Group Company Foundation Trust Costa Puerto Porto Rio Isla Playa Monte Villa
    Castillo Castle Château Bois Pas Port Saint Sant Santa San Sao São Los Las Cabo Sierra Hotel Casa Palazzo Museo
""".split())


def names_adjacent(text: str, end: int, start: int) -> bool:
    """Whether a name ending at `end` and one starting at `start` are one name: only a space, a
    middle initial or a particle between ("Joris" and "Broeck" in "Joris van den Broeck")."""
    return end <= start and bool(_NAME_GAP.fullmatch(text, end, start))


def name_mentions(text: str, names: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every other mention, in the same text, of a word of the names found: "Ysolde Crumpton"
    introduced once makes a later lone "Ysolde" a name too. Adjacent name words form one span."""
    words = {word for start, end in names for _, _, word in _tokens(text[start:end]) if word not in NOT_NAMES}
    tokens = [token for token in _tokens(text) if token[2] in words]
    lower = {text[start:end] for start, end in names if LOWER_WORD.fullmatch(text, start, end)}
    tokens += [(m.start(), m.end(), m.group()) for word in lower
               for m in re.finditer(rf"(?<![\w'’-]){re.escape(word)}(?![\w'’-])", text)]
    tokens.sort()
    spans: list[list[int]] = []
    for start, end, _ in tokens:
        if spans and _NAME_GAP.fullmatch(text, spans[-1][1], start):
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(start, end) for start, end in spans]


def name_span_clean(text: str, start: int, end: int, *, parsed_noun: bool = False) -> tuple[int, int] | None:
    """An NER span cut to its name words (no title or greeting before, no "'s" after), or None
    when what is left is not name-shaped (digits, lowercase, only words that are not names).
    `parsed_noun`: the parse placed it as a noun, so a determiner after it ("I lent Ottilie my
    car") does not make it a verb."""
    words = _tokens(text[start:end])
    while words and words[0][2] in _BEFORE_NAMES:  # "Hi Erica", "Dr Jones": the model's span takes the greeting
        words = words[1:]
    while words and words[-1][2] in NOT_NAMES:
        words = words[:-1]
    if not words or all(word in NOT_NAMES for _, _, word in words) or any(c.isdigit() or c == "@" for c in text[start:end]) or is_street(text, start + words[0][0]):
        return None
    if _DETERMINER_BEFORE.search(text, max(0, start - 8), start):  # "the Metformin": a thing, not a person
        return None
    if _STREET_AFTER.match(text, start + words[-1][1]):  # "Mill Lane": a street
        return None
    if len(words) == 1 and looks_like_medicine(text, start + words[0][0], start + words[0][1]):
        return None  # "Lisinopril", "take Gaviscon": a medicine
    if len(words) == 1 and not parsed_noun and _DETERMINER_AFTER.match(text, start + words[0][1]):
        return None  # "Mark the box": a verb with its object
    return start + words[0][0], start + words[-1][1]


# a surname's first word that is never a given name: "Ní Bhraonáin", "Mac Giolla", "van der Merwe"
_SURNAME_PARTICLE = re.compile(rf"(?:Ní|Nic|Mac|Ó|Ua|Van|Von|De|Da|Di|Del|Dos|Du|{_PARTICLES})[ \t]")
_WORD_BEFORE = re.compile(rf"(?P<word>{_TOKEN.pattern})[ \t]{{1,3}}\Z")


# an Arabic article or kinship word joined to the surname by a hyphen: "al-Khatib", "bin-Laden"
_HYPHENED_PARTICLE_BEFORE = re.compile(r"(?<![\w'’-])(?:al|el|ul|ad|ar|as|ash|at|az|ud|abu|bin|ibn|bint)-\Z")


def name_start_widened(text: str, start: int) -> int:
    """The start of a name whose span begins at a surname particle, widened over the given name
    just before it ("Siobhán Ní Bhraonáin" where the model tagged "Ní Bhraonáin"); `start` where
    nothing name-shaped stands there ("Dr. Ní Bhraonáin"). A span that begins after a hyphened
    particle starts at the particle ("Mr al-Khatib": the model tagged "Khatib")."""
    if (particle := _HYPHENED_PARTICLE_BEFORE.search(text, max(0, start - 5), start)) is not None:
        start = particle.start()
    if not _SURNAME_PARTICLE.match(text, start):
        return start
    before = _WORD_BEFORE.search(text, max(0, start - 40), start)
    return before.start() if before and before.group("word") not in NOT_NAMES else start


def is_street(text: str, start: int) -> bool:
    """Whether the capitalised words at `start` follow a house number: "12 London Road"."""
    return bool(_HOUSE_NUMBER.search(text, max(0, start - 12), start))


def is_name_word(word: str) -> bool:
    """Whether `word` is shaped like a word of a name: capitalised, not ALL CAPS ("Ní", "O'Brien")."""
    return bool(_TOKEN.fullmatch(word))


def looks_like_medicine(text: str, start: int, end: int, *, joined: bool = True) -> bool:
    """Whether the word text[start:end] is more likely a medicine: a USAN stem ("Lisinopril"), a
    word after "take", "prescribed", "on" ("take Gaviscon"), before a dose or a form ("Amlodipine
    5 mg", "Calpol syrup"), or joined by "and", "or", "with" to a word that is one of those
    ("Nurofen with Lemsip")."""
    if (_DRUG_STEM.search(text[start:end]) or _MEDICINE_BEFORE.search(text, max(0, start - 16), start)
            or _MEDICINE_AFTER.match(text, end)):
        return True
    if not joined:
        return False
    before = _MEDICINE_JOINT_BEFORE.search(text, max(0, start - 30), start)
    after = _MEDICINE_JOINT_AFTER.match(text, end)
    return bool(before and looks_like_medicine(text, before.start("word"), before.end("word"), joined=False)
                or after and looks_like_medicine(text, after.start("word"), after.end("word"), joined=False))


def name_extent(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) widened to the whole name-shaped words it touches: spaCy splits "Jones-Davis"
    into three tokens, a name word is one."""
    for match in _TOKEN.finditer(text, max(0, start - 40), min(len(text), end + 40)):
        if match.start() < start < match.end() or match.start() <= start < match.end():
            start = min(start, match.start())
        if match.start() < end <= match.end():
            end = max(end, match.end())
    return start, end


def has_name_word(text: str) -> bool:
    """Whether text has a capitalised word that could be part of a name (one not in NOT_NAMES)."""
    return any(match.group() not in NOT_NAMES for match in _TOKEN.finditer(text))
