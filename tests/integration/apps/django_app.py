"""A minimal Django project in one module: settings, views and URLs."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="fastwsgi-test-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
    DATA_UPLOAD_MAX_MEMORY_SIZE=10 * 1024 * 1024,
    FILE_UPLOAD_MAX_MEMORY_SIZE=1024 * 1024,
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (  # noqa: E402
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path  # noqa: E402


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello django", content_type="text/plain")


def form(request: HttpRequest) -> JsonResponse:
    return JsonResponse(request.POST.dict())


def json_post(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body)
    return JsonResponse({"sum": sum(data["numbers"]), "name": data["name"]})


def upload(request: HttpRequest) -> JsonResponse:
    f = request.FILES["file"]
    body = f.read()
    return JsonResponse(
        {
            "filename": f.name,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "field": request.POST.get("field"),
        }
    )


def stream(request: HttpRequest) -> StreamingHttpResponse:
    n = int(request.GET.get("n", "5"))

    def gen() -> Iterator[bytes]:
        for i in range(n):
            yield f"line {i}\n".encode()

    return StreamingHttpResponse(gen(), content_type="text/plain")


def download(request: HttpRequest) -> FileResponse:
    kib = int(request.GET.get("kib", "64"))
    f = tempfile.TemporaryFile()
    block = bytes(range(256)) * 4
    for _ in range(kib):
        f.write(block)
    f.seek(0)
    return FileResponse(f, content_type="application/octet-stream")


def url(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"scheme": request.scheme, "script_name": request.META["SCRIPT_NAME"], "path": request.path}
    )


urlpatterns = [
    path("hello", hello),
    path("form", form),
    path("json", json_post),
    path("upload", upload),
    path("stream", stream),
    path("download", download),
    path("url", url),
]

app = application = get_wsgi_application()
