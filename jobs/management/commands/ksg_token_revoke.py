"""`python manage.py ksg_token_revoke PREFIX`: revoke an API token by the first characters of its key."""
from django.core.management.base import BaseCommand, CommandError

from jobs.models import ApiToken
from jobs.tokens import PREFIX_LENGTH, api_token_revoke


class Command(BaseCommand):
    help = (f"Revoke the API token whose key starts with PREFIX (its first {PREFIX_LENGTH} characters, as the "
            "API tokens page and ksg_token_add show; a whole key works too). --list shows the tokens.")

    def add_arguments(self, parser):
        parser.add_argument("prefix", nargs="?", help="the token's prefix, or its whole key")
        parser.add_argument("--list", action="store_true", dest="list_tokens",
                            help="list every token (prefix, user, name, state)")

    def handle(self, *args, prefix, list_tokens, **options):
        if list_tokens:
            for token in ApiToken.objects.select_related("user").order_by("user__username", "created_at"):
                state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
                used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
                self.stdout.write(f"{token.prefix}  {token.user.get_username():<20} {token.name:<30} {state}, used {used}")
            return
        if not prefix:
            raise CommandError("give the token's prefix (see --list)")
        try:
            token = ApiToken.objects.select_related("user").get(prefix=prefix.strip()[:PREFIX_LENGTH])
        except ApiToken.DoesNotExist:
            raise CommandError(f"no API token with prefix {prefix[:PREFIX_LENGTH]!r} (see --list)") from None
        if token.revoked_at is not None:
            self.stdout.write(f"API token {token.prefix}… of {token.user.get_username()!r} was already revoked")
            return
        api_token_revoke(token=token)
        self.stdout.write(f"revoked API token {token.prefix}… {token.name!r} of {token.user.get_username()!r}")
