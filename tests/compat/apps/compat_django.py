"""A Django site for the differential suite: the admin's login page, CSRF,
WhiteNoise static files (Range, 304, pre-compressed gzip) and uploads.

Settings are minimal: no database is touched (signed-cookie sessions; the
login page and a CSRF refusal need none), no migrations.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import django
from compat_raw import STATIC_ROOT
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="fastwsgi-compat-test-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
    ],
    MIDDLEWARE=[
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    STATIC_URL="/static/",
    STATIC_ROOT=STATIC_ROOT,
    USE_TZ=True,
    DATA_UPLOAD_MAX_MEMORY_SIZE=32 * 1024 * 1024,
    LOGGING_CONFIG=None,
)
django.setup()

from django.contrib import admin  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import FileResponse, HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


@csrf_exempt
def upload(request: HttpRequest) -> HttpResponse:
    body = request.body
    return HttpResponse(f"{len(body)} {hashlib.sha256(body).hexdigest()}\n",
                        content_type="text/plain")


def download(request: HttpRequest) -> FileResponse:
    return FileResponse(open(os.path.join(STATIC_ROOT, "blob.bin"), "rb"))  # noqa: SIM115


urlpatterns = [
    path("admin/", admin.site.urls),
    path("upload", upload),
    path("download", download),
]

app = get_wsgi_application()


def app_factory(global_config: dict[str, str], **local: str) -> Any:
    return app
