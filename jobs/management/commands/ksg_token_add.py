"""`python manage.py ksg_token_add USERNAME --name NAME`: an API token; the key is printed once."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from jobs.tokens import ApiTokenError, api_token_create


class Command(BaseCommand):
    help = ("Create an API token for USERNAME and print its key once (use it as `Authorization: Bearer KEY`). "
            "Only the key's sha256 is stored: a lost key cannot be shown again; revoke it and create another.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="what the token is for, e.g. 'analysis notebook'")

    def handle(self, *args, username, name, **options):
        users = get_user_model().objects
        try:
            user = users.get(**{users.model.USERNAME_FIELD: username})
        except users.model.DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None
        try:
            token, key = api_token_create(user=user, name=name)
        except ApiTokenError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"created API token {token.prefix}… {token.name!r} for {user.get_username()!r}")
        self.stdout.write(f"key (shown only now): {key}")
