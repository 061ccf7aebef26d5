"""The web layer's defences: Argon2 password hashes, login throttling, the Content-Security-Policy
and the other headers, CSRF on forms, and `check --deploy` clean with the production settings."""
import pytest
from django.contrib.auth.hashers import identify_hasher
from django.test import Client

from tests.ksg_web.test_settings import run_python

PASSWORD = "a-long-password-1"
pytestmark = pytest.mark.real_password_hashing


def _login(client: Client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


@pytest.mark.django_db
def test_new_passwords_are_hashed_with_argon2id(make_user):
    user = make_user("ada")
    assert identify_hasher(user.password).algorithm == "argon2"
    assert user.password.startswith("argon2$argon2id$")
    assert user.check_password(PASSWORD) and not user.check_password(PASSWORD + "x")


@pytest.mark.django_db
def test_login_is_refused_after_five_wrong_passwords_even_with_the_right_one(make_user):
    make_user("ada")
    client = Client()
    for _ in range(4):
        assert _login(client, "ada", "wrong-password").status_code == 200  # the form again, with its error
    locked = _login(client, "ada", "wrong-password")
    assert locked.status_code == 429 and b"Too many failed log-ins" in locked.content
    refused = _login(client, "ada", PASSWORD)
    assert refused.status_code == 429 and "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_locked_out_username_does_not_lock_out_another_user(make_user):
    make_user("ada")
    make_user("bob")
    client = Client()
    for _ in range(5):
        _login(client, "ada", "wrong-password")
    assert _login(client, "bob", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_successful_login_resets_the_failure_count(make_user):
    make_user("ada")
    client = Client()
    for _ in range(4):
        _login(client, "ada", "wrong-password")
    assert _login(client, "ada", PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert _login(client, "ada", "wrong-password").status_code == 200
    assert _login(client, "ada", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_pages_carry_a_strict_script_policy_and_the_other_headers(make_user):
    client = Client()
    client.force_login(make_user("ada"))
    for url in ("/accounts/login/", "/jobs/", "/datasets/", "/jobs/runs/new/"):
        response = client.get(url)
        assert response.status_code == 200, url
        policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'" and "unsafe" not in policy["default-src"], url
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert b"<script>" not in response.content and b"onclick=" not in response.content, url


@pytest.mark.django_db
def test_a_form_post_without_its_csrf_token_is_refused(make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("ada"))
    response = client.post("/jobs/submit/selftest/", {"steps": "2", "interval_seconds": "0", "fail_at_step": "0"})
    assert response.status_code == 403
    from jobs.models import Job

    assert not Job.objects.exists()


def test_cookies_and_hsts_are_strict_with_https_and_check_deploy_is_clean(tmp_path):
    production = {"KSG_HTTPS": "true", "SECRET_KEY": "k" * 64 + "-production-secret-of-enough-length",
                  "ALLOWED_HOSTS": "ksg.example.org", "DEBUG": "false"}
    shown = run_python(["-c", "import django; django.setup(); from django.conf import settings as s; "
                              "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
                              "s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_HTTPONLY)"], production, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["True", "True", "31536000", "True", "True"]
    deploy = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production, tmp_path)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "no issues" in deploy.stdout

    embedded = run_python(["manage.py", "check", "--deploy"], {}, tmp_path)
    assert "security.W004" in embedded.stderr + embedded.stdout  # no HSTS over plain http: said, not hidden
