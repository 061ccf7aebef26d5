"""The fuzz modules and the integer bounds again on the embedded database (SQLite) when this
session runs on another one (DATABASE_URL, as CI sets it). The two databases differ where the
fuzz looks: an integer beyond 64 bits was a 500 on SQLite and a 200 on PostgreSQL. Without
DATABASE_URL the session is on SQLite already and these modules have run in it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
ON_BOTH_DATABASES = ["tests/ksg_web/test_api_schema_fuzz.py", "tests/ksg_web/test_fuzz.py", "tests/jobs/test_ids.py"]


@pytest.mark.slow
@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3",
                    reason="this session is on SQLite: the fuzz modules ran on it in-process")
def test_the_fuzz_modules_pass_on_sqlite_too(tmp_path):
    # The embedded configuration (no DATABASE_URL, no REDIS_URL), with its own data directory
    # so its SQLite test database is not another run's.
    env = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")}
    env["KSG_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ON_BOTH_DATABASES],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
