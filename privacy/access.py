"""Who may do what: the three roles and dataset grants. Views, the API and the websocket
consumers ask these functions; nothing else decides access.

- data_scientist: uses the datasets they own or were granted (directly or through a group):
  submits runs on them and sees those datasets' runs.
- compliance_officer: sees every dataset's budget, ledger, audit trail and runs, approves or
  rejects runs; reads raw records only through a grant with can_read_records.
- admin: everything, including Django admin (is_staff + is_superuser).
"""
from django.contrib.auth.models import Group
from django.db.models import Q, QuerySet

from .models import DatasetGrant, PrivateDataset

DATA_SCIENTIST, COMPLIANCE_OFFICER, ADMIN = "data_scientist", "compliance_officer", "admin"
ROLES = (DATA_SCIENTIST, COMPLIANCE_OFFICER, ADMIN)
# Model permissions of each role's group (Django admin and has_perm); None: every permission.
ROLE_PERMISSIONS = {
    DATA_SCIENTIST: ["view_privatedataset", "add_privatedataset", "view_privacybudget", "view_job", "add_job",
                     "view_artifact"],
    COMPLIANCE_OFFICER: ["view_privatedataset", "view_privacybudget", "view_ledgerentry", "view_auditentry",
                         "view_datasetgrant", "view_job", "view_jobevent", "view_artifact"],
    ADMIN: None,
}


def role_groups_ensure(group_model, permission_model) -> None:
    """Create the role groups with their permissions (idempotent). Takes the model classes so the
    migration can pass its historical ones; also run after every migrate and test flush
    (privacy.apps), so a flushed database keeps its roles."""
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=name)
        permissions = permission_model.objects.all()
        group.permissions.set(permissions if codenames is None else permissions.filter(codename__in=codenames))


def user_roles(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    roles = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    if user.is_superuser:
        roles.add(ADMIN)
    return roles


def is_admin(user) -> bool:
    return user.is_authenticated and (user.is_superuser or ADMIN in user_roles(user))


def is_compliance_officer(user) -> bool:
    """Compliance officers and administrators: they oversee every budget."""
    return user.is_authenticated and bool(user_roles(user) & {COMPLIANCE_OFFICER, ADMIN})


def _granted(user) -> Q:
    return Q(grants__user=user) | Q(grants__group__in=user.groups.all())


def datasets_usable_by(user) -> QuerySet[PrivateDataset]:
    """Datasets a user may submit runs on: owned or granted (administrators: all)."""
    if not user.is_authenticated:
        return PrivateDataset.objects.none()
    if is_admin(user):
        return PrivateDataset.objects.all()
    return PrivateDataset.objects.filter(Q(owner=user) | _granted(user)).distinct()


def datasets_visible_to(user) -> QuerySet[PrivateDataset]:
    """Datasets whose metadata, budget and runs a user may see: usable ones, and every one for
    compliance officers."""
    if is_compliance_officer(user):
        return PrivateDataset.objects.all()
    return datasets_usable_by(user)


def jobs_visible_policy(user, jobs: QuerySet) -> QuerySet:
    """The jobs (of the engine's queryset) a signed-in user may see: their own and those on
    datasets they may use; compliance officers and administrators see all. Registered with
    jobs.selectors at start-up."""
    if is_compliance_officer(user):
        return jobs
    return jobs.filter(Q(owner=user) | Q(dataset__in=datasets_usable_by(user)))


def dataset_manageable_by(user, dataset: PrivateDataset) -> bool:
    """Grants and the budget limit: the owner and administrators."""
    return user.is_authenticated and (dataset.owner_id == user.pk or is_admin(user))


def dataset_records_readable(user, dataset: PrivateDataset) -> bool:
    """Raw private records: the owner, administrators, and grants with can_read_records."""
    if not user.is_authenticated:
        return False
    if dataset.owner_id == user.pk or is_admin(user):
        return True
    return DatasetGrant.objects.filter(Q(user=user) | Q(group__in=user.groups.all()), dataset=dataset,
                                       can_read_records=True).exists()


def role_groups() -> dict[str, Group]:
    return {group.name: group for group in Group.objects.filter(name__in=ROLES)}
