"""Lower-case names in casual messages ("hi guo, eero here", "my partner harshvardhan"), for
privacy.pii: the capitalised-word rules (privacy.pii_rules), the NER and the parse all need a
capital. After a cue that introduces a person, a lower-case word that English hardly uses
(wordfreq's Zipf frequency below RARE_ZIPF: "harshvardhan" 1.4, "guo" 3.05; "there" 6.3,
"referral" 3.6) and that is not a casual abbreviation ("appt" 2.6, "weds" 2.5) or a verb form is
a name. wordfreq's English list is the only word list read, and it lists words, not names."""
import re
from collections.abc import Iterator

LOWER_NAME_SCORE = 0.85  # a cue and a rare word: as strong as a role ("my husband X") in privacy.pii_rules

RARE_ZIPF = 3.2
_CASUAL_WORDS = frozenset("""
    appt appts physio thurs weds tues wed thur fri sat sun mon tmrw tmw tomoz pls plz thx ty bloods meds prescrip
    docs dr drs mr mrs ms hun hon babe xx xxx lol omg idk btw fyi asap ok okay aswell alot cant wont dont didnt
    isnt wasnt hasnt havent couldnt wouldnt shouldnt im ive id ill youre theyre thats whats theres u ur r ya yeah
    yep nope hiya hey hi hello morning evening again here thanks cheers
""".split())
_VERB_FORM = re.compile(r"(?:ing|ed|ly)\Z")
LOWER_WORD = re.compile(r"[^\W\d_A-Z]{2,20}(?![\w'’-])")
_LOWER_CUES = tuple((re.compile(before, re.MULTILINE), re.compile(after) if after else None) for before, after in (
    (r"(?i:\bmy\s+name\s+is|\bname\s+is|\bcall\s+me)[ \t]+", None),
    (r"(?i:\bi\s+am|\bi['’]?m|\bthis\s+is|\bit['’]?s)[ \t]+", r"[ \t]*(?:[,.!?;:\n]|$)|[ \t]+(?:here|again|from)\b"),
    (r"(?i:\b(?:dr|doctor|mr|mrs|ms|miss|nurse)\.?)[ \t]+", None),
    (r"(?i:\b(?:dear|hi|hello|hey|hiya|thanks|thank\s+you|cheers))[ \t]+", r"[ \t]*(?:[,.!?\n]|$)"),
    (r"(?i:\b(?:my|our|your|his|her|their)\s+(?:little\s+|late\s+)?(?:ex[\s-])?(?:husband|wife|partner|son|daughter|boy|girl|baby|mum"
     r"|mom|dad|mate|pal|bestie"
     r"|brother|sister|friend|colleague|neighbour|neighbor|carer|boss|manager|grandson|granddaughter|nan|nana|grandma"
     r"|grandpa|aunt|auntie|uncle|cousin|fiancée?|boyfriend|girlfriend|nephew|niece|ex|flatmate|landlord|landlady)),?[ \t]+",
     None),
    (r"(?:^|(?<=[.!?,;:][ \t]))[ \t]*", r"[ \t]+here\b"),  # "hi guo, eero here"
    (r"(?<=[.!?])[ \t]+(?:[-–—][ \t]*)?", r"[ \t]*\Z"),
    (r"(?:^|(?<=[.!?,;:][ \t]))[ \t]*", r"[ \t]+and[ \t]+(?:i|me)\b"),  # "roser and i are both ok"  # the message's last word: "... pls. nurcan", "- nemanja"
))


def has_rare_lower_word(text: str) -> bool:
    """Whether text has a lower-case word that could be a name after a cue (one English hardly
    uses): a streamed piece without one, and without a capitalised word, digit or "@", cannot
    start a name."""
    from wordfreq import zipf_frequency

    return any(word.group() not in _CASUAL_WORDS and zipf_frequency(word.group(), "en") < RARE_ZIPF
               for word in re.finditer(r"(?<![\w'’-])[^\W\d_A-Z]{2,20}(?![\w'’-])", text))


def lower_name_candidates(text: str) -> Iterator[tuple[int, int, float]]:
    """(start, end, score) of lower-case names after a cue that introduces a person."""
    from wordfreq import zipf_frequency  # deferred: its word list loads on first use

    for before, after in _LOWER_CUES:
        for match in before.finditer(text):
            word = LOWER_WORD.match(text, match.end())
            if word is None or word.group() in _CASUAL_WORDS or zipf_frequency(word.group(), "en") >= RARE_ZIPF:
                continue
            if _VERB_FORM.search(word.group()):
                continue  # "I am upholding it", "it's finished": a verb, not a name
            second = LOWER_WORD.match(text, word.end() + 1) if text[word.end():word.end() + 1] == " " else None
            if second and (second.group() in _CASUAL_WORDS or zipf_frequency(second.group(), "en") >= RARE_ZIPF):
                second = None
            if after and not after.match(text, word.end()) and not (second and after.match(text, second.end())):
                continue
            end = word.end()
            if second and (after is None or after.match(text, second.end())):
                end = second.end()  # "its jadwiga szczepańska, my son ..."
            yield word.start(), end, LOWER_NAME_SCORE
