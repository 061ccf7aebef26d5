"""`python manage.py ksg_composition --dataset NAME --policy tight --actor USER --comment WHY`: set how a
dataset's DP jobs compose (privacy.services.budget_composition_change: compliance officers, audited)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from privacy.models import PrivacyBudget, PrivateDataset
from privacy.selectors import budget_figures, dataset_balance
from privacy.services import AccessRefused, BudgetConfigError, budget_composition_change


class Command(BaseCommand):
    help = ("Set a dataset's composition policy: sequential (the sum of its DP jobs' epsilons is charged) or "
            "tight (every job's mechanism composed by the budget's accountant). Compliance officers and "
            "administrators only; the change goes into the audit trail. Prints both figures afterwards.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="name of a registered dataset")
        parser.add_argument("--policy", required=True, choices=PrivacyBudget.Composition.values)
        parser.add_argument("--actor", required=True, help="username of the compliance officer making the change")
        parser.add_argument("--comment", required=True, help="why (goes into the audit trail)")

    def handle(self, *args, dataset, policy, actor, comment, **options):
        target = PrivateDataset.objects.filter(name=dataset).select_related("budget").first()
        if target is None:
            raise CommandError(f"no dataset named {dataset!r}; register one with ksg_dataset_add")
        user = get_user_model().objects.filter(username=actor).first()
        if user is None:
            raise CommandError(f"no user named {actor!r}")
        try:
            budget_composition_change(dataset=target, composition=policy, actor=user, comment=comment)
        except (AccessRefused, BudgetConfigError) as error:
            raise CommandError(str(error)) from error
        target.refresh_from_db()
        self.stdout.write(f"{target.name}: {budget_figures(balance=dataset_balance(dataset=target))['text']}")
