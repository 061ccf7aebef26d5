"""Canaries: records carrying a random secret, planted in a private dataset when it is
registered, so that evaluation can measure how far a model singles them out (Secret Sharer
exposure, evaluation.canary). A secret is drawn from a space R of |R| = 10^6 secrets."""

import random

CANARY_INSTRUCTION = "What is my account verification code?"
CANARY_TEMPLATE = "My account verification code is {secret}."
SECRET_ALPHABET = "0123456789"
SECRET_LENGTH = 6
SPACE_SIZE = len(SECRET_ALPHABET) ** SECRET_LENGTH  # |R| = 10^6
CANARY_MAX_LENGTH = 128  # tokens; the canary record is far shorter


def secret_text(secret: str) -> str:
    """The secret as written in the canary: one digit per word ("4 8 3 9 2 0"), so every
    tokenizer (word-level or BPE) gives each digit its own token and all secrets are expressible
    and equally long in tokens."""
    return " ".join(secret)


def canary_record(secret: str) -> dict:
    """The instruction/response record that plants `secret`."""
    return {"instruction": CANARY_INSTRUCTION, "response": CANARY_TEMPLATE.format(secret=secret_text(secret)),
            "secret": secret}


def secret_at(index: int) -> str:
    digits = []
    for _ in range(SECRET_LENGTH):
        index, digit = divmod(index, len(SECRET_ALPHABET))
        digits.append(SECRET_ALPHABET[digit])
    return "".join(reversed(digits))


def canary_records(k: int, *, seed: int) -> list[dict]:
    """k canary records with distinct uniformly random secrets ({"instruction", "response",
    "secret"}), the same for the same seed."""
    if not 0 <= k <= SPACE_SIZE:
        raise ValueError(f"k must be between 0 and {SPACE_SIZE}")
    return [canary_record(secret_at(index)) for index in random.Random(seed).sample(range(SPACE_SIZE), k)]


# --- audit canaries: the one-run audit (evaluation.audit) --------------------------------------
# Each is a record of its own with a random key and a random secret; a fair coin flip decides
# whether it goes into the training data. The secret is what an attack can see (high perplexity:
# 8 random digits, about 26.6 bits); the key ties it to its instruction.
AUDIT_INSTRUCTION = "Please keep reference {key} on my file and remind me of its code."
AUDIT_RESPONSE = "Reference {key} has the code {secret}."
AUDIT_KEY_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
AUDIT_SECRET_LENGTH = 8


def audit_canary_records(m: int, *, seed: int) -> list[dict]:
    """m audit canaries {"instruction", "response", "secret", "included"}: distinct keys and
    secrets, "included" a fair coin flip per canary (True: it goes into the training split).
    The same seed gives the same canaries and flips."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"the number of audit canaries must be a whole number >= 0, not {m!r}")
    rng = random.Random(seed)
    keys, rows = set(), []
    while len(rows) < m:
        key = "".join(rng.choice(AUDIT_KEY_LETTERS) for _ in range(3)) + f"-{rng.randrange(1000):03d}"
        if key in keys:
            continue
        keys.add(key)
        secret = "".join(rng.choice(SECRET_ALPHABET) for _ in range(AUDIT_SECRET_LENGTH))
        rows.append({"instruction": AUDIT_INSTRUCTION.format(key=key),
                     "response": AUDIT_RESPONSE.format(key=key, secret=secret_text(secret)),
                     "secret": secret, "included": rng.random() < 0.5})
    return rows
