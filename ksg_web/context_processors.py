"""Template context every page gets: the user's roles, for navigation by role."""
from privacy.access import COMPLIANCE_OFFICER, DATA_SCIENTIST, is_admin, user_roles


def roles(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"roles": set(), "is_data_scientist": False, "is_compliance_officer": False, "is_admin": False}
    found = user_roles(user)
    admin = is_admin(user)
    return {"roles": found, "is_data_scientist": DATA_SCIENTIST in found or admin,
            "is_compliance_officer": COMPLIANCE_OFFICER in found or admin, "is_admin": admin}
