"""Template filters of the compliance pages."""
import json
from decimal import Decimal, InvalidOperation

from django import template

from ..models import EPSILON_DECIMAL_PLACES

register = template.Library()
QUANTUM = Decimal(1).scaleb(-EPSILON_DECIMAL_PLACES)


@register.filter
def as_json(value) -> str:
    """A JSON value as compact, readable text (the template escapes it)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def epsilon(value) -> str:
    """An epsilon with the ledger's 6 decimal places ("0" reads "0.000000")."""
    if value is None or value == "":
        return ""
    try:
        return str(Decimal(str(value)).quantize(QUANTUM))
    except InvalidOperation:
        return str(value)
