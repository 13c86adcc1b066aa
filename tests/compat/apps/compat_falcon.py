"""A Falcon app for the differential suite: JSON in and out, Falcon's errors."""

from __future__ import annotations

import hashlib

import falcon


class Items:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [1, 2, 3], "q": req.get_param("q")}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.bounded_stream.read()
        resp.media = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        resp.status = falcon.HTTP_201


app = falcon.App()
app.add_route("/items", Items())


def app_factory(global_config: dict[str, str], **local: str) -> falcon.App:
    return app
