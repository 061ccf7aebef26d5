"""What the name recognisers propose that is not a person, for privacy.pii's last step.

The fine-tuned NER (privacy.pii_train) and the context rules (privacy.pii_rules) find names in
new contexts; three kinds of capitalised word they take for one, in clinic, bank and law-firm
mail, are told apart here from their place in the text, not from a list of names:
- a common English word opening a line or sentence, found on weak evidence ("Attendees:",
  "Loss: 3 payments", "Fluids restarted."): wordfreq's Zipf frequency;
- a greeting or closing in another language ("Hola,", "Saludos, Marisol", "Mvh,"): the words of
  SALUTATIONS, the other languages' "Dear" and "Regards" (pii_rules skips the English ones);
- the line under a signer's name ("Dr Folasade Umeh\\nRespiratory Physician", "Irina Volkova\\n
  Customer Due Diligence"): the signer's role, team or firm.
"""
import re

COMMON_ZIPF = 3.5  # a capitalised word opening a line or sentence that English uses this often is a word
_OPENING = re.compile(r"(?:\A|[\n.!?:|])[^\w\n]*\Z")
# greetings and closings of other languages than English, none of them also a common given name
SALUTATIONS = frozenset("""
    hola buenas buenos saludos gracias atentamente cordialmente estimado estimada querido querida
    bonjour bonsoir salut merci cordialement amitiés bises
    hallo liebe lieber grüße gruß danke servus moin
    ciao salve grazie cordiali saluti gentile gentilissimo gentilissima
    olá oi obrigado obrigada atenciosamente abraços prezado prezada beijos
    hoi beste groeten groetjes bedankt
    hej hei hallå tack takk mvh hilsen vennlig hälsningar mvg
    cześć dziękuję pozdrawiam szanowny szanowna
    merhaba teşekkürler saygılarımla selam
    annwyl diolch cofion
    salam salaam assalamu shukran marhaba
    namaste namaskar dhanyavaad shukriya
    jambo habari asante
    shalom
    privet spasibo
    ahoj děkuji
    szia köszönöm
    bună mulțumesc
""".split())
ROLE_LINE_WORDS = 5  # a signer's name line has at most this many words


def is_capitalised_common_word(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is one word, opening the text, a line or a sentence (where every word
    has a capital), that English uses often (wordfreq's Zipf frequency at least COMMON_ZIPF): a note's
    label or a common noun ("Attendees:", "Loss: 3 payments", "Fluids restarted."), not a name where
    the evidence for one is weak (the caller decides)."""
    from wordfreq import zipf_frequency  # deferred: its word list loads on first use

    word = text[start:end]
    if not word or len(word.split()) != 1 or not _OPENING.search(text, 0, start):
        return False
    return zipf_frequency(word.strip(".,:;'’").lower(), "en") >= COMMON_ZIPF


def is_salutation(text: str, start: int, end: int) -> bool:
    """Whether every word of text[start:end] is another language's greeting or closing."""
    words = re.findall(r"[^\W\d_]+", text[start:end].lower())
    return bool(words) and all(word in SALUTATIONS for word in words)


def is_role_under_a_name(text: str, start: int, end: int, names: list[tuple[int, int]]) -> bool:
    """Whether text[start:end] is a whole line right under a short line that holds one of the found
    `names` and no sentence (at most ROLE_LINE_WORDS words, no ".,!?"): a signature's role, team
    or firm line ("Dr Folasade Umeh\\nRespiratory Physician")."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    if line_start == 0 or text[line_start:line_end].strip() != text[start:end].strip():
        return False
    above_start = text.rfind("\n", 0, line_start - 1) + 1
    above = text[above_start:line_start - 1]
    if not above.strip() or len(above.split()) > ROLE_LINE_WORDS or re.search(r"[.,!?]", above):
        return False
    return any(above_start <= s and e <= line_start - 1 for s, e in names)
