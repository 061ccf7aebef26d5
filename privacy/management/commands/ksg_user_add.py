"""`python manage.py ksg_user_add NAME --role ROLE [--password P | --password-file F] [--email E]`"""
import secrets
from pathlib import Path

from django.contrib.auth.password_validation import ValidationError, validate_password
from django.core.management.base import BaseCommand, CommandError

from privacy.access import ROLES
from privacy.services import user_create


class Command(BaseCommand):
    help = ("Create a user with a role: data_scientist (submits runs on datasets they own or were granted), "
            "compliance_officer (sees every budget and ledger, approves runs), admin (everything, Django admin). "
            "Without --password a random one is generated and printed once.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--password", help="the password (visible in the shell history; prefer --password-file)")
        parser.add_argument("--password-file", type=Path, help="read the password from the first line of this file")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, role, password, password_file, email, **options):
        if password and password_file:
            raise CommandError("give --password or --password-file, not both")
        generated = not (password or password_file)
        if password_file:
            try:
                password = password_file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as error:
                raise CommandError(f"cannot read a password from {password_file}: {error or 'the file is empty'}") from None
        if generated:
            password = secrets.token_urlsafe(12)
        try:
            validate_password(password)
            user = user_create(username=username, role=role, password=password, email=email)
        except ValidationError as error:
            raise CommandError("the password is too weak: " + " ".join(error.messages)) from None
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"created user {user.get_username()!r} with role {role}")
        if generated:
            self.stdout.write(f"password: {password}")
