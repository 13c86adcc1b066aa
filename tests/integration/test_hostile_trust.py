"""Spoofed proxy headers: what a client that is not the proxy can and cannot change.

A proxy in front of fastwsgi tells it the original scheme (``X-Forwarded-Proto``
and friends) and, optionally, the mount point (``Script-Name``). fastwsgi must
believe those headers only from peers in ``forwarded_allow_ips``; from anyone
else they are plain ``HTTP_*`` values that change nothing. Header names with
``_`` must not be able to impersonate their ``-`` spelling (``header_map``).

All peers here are 127.0.0.1, so "untrusted" means a server started with a
``--forwarded-allow-ips`` that does not contain it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_support import (
    IO_DEADLINE,
    Server,
    exchange,
    new_token,
    run_server,
)
from httpraw import parse_responses


def get(server: Server, path: str, *headers: str) -> tuple[int, dict]:
    head = "".join(f"{h}\r\n" for h in headers)
    got = exchange(
        server,
        f"GET {path} HTTP/1.1\r\nHost: example.test\r\n{head}Connection: close\r\n\r\n".encode(
            "latin-1"
        ),
        deadline=IO_DEADLINE,
    )
    resps, _ = parse_responses(got.data)
    assert got.closed and len(resps) == 1, got.data[:300]
    r = resps[0]
    return r.status, (json.loads(r.body) if r.status == 200 else {})


@pytest.fixture(scope="module")
def trusted(tmp_path_factory: pytest.TempPathFactory):
    """Default forwarded_allow_ips (127.0.0.1,::1): the test client is the proxy."""
    with run_server(tmp_path_factory.mktemp("trusted"), "sync") as srv:
        yield srv


@pytest.fixture(scope="module")
def untrusted(tmp_path_factory: pytest.TempPathFactory):
    """Only 10.0.0.1 is trusted: the test client is an ordinary client."""
    with run_server(
        tmp_path_factory.mktemp("untrusted"), "sync", "--forwarded-allow-ips", "10.0.0.1"
    ) as srv:
        yield srv


def test_secure_scheme_header_from_trusted_peer(trusted: Server) -> None:
    status, env = get(trusted, "/s", "X-Forwarded-Proto: https")
    assert status == 200 and env["scheme"] == "https"


def test_secure_scheme_header_from_untrusted_peer_changes_nothing(untrusted: Server) -> None:
    for header in ("X-Forwarded-Proto: https", "X-Forwarded-Ssl: on", "X-Forwarded-Protocol: ssl"):
        status, env = get(untrusted, "/s", header)
        assert status == 200 and env["scheme"] == "http", header


def test_conflicting_secure_scheme_headers_are_rejected(trusted: Server) -> None:
    token = new_token()
    status, _ = get(trusted, f"/t/{token}/s", "X-Forwarded-Proto: http", "X-Forwarded-Ssl: on")
    assert status == 400
    assert trusted.recorded_paths(token) == []


@pytest.mark.parametrize(("networks", "scheme"), [("127.0.0.0/8", "https"), ("10.0.0.0/8", "http")])
def test_forwarded_allow_ips_cidr_network(tmp_path: Path, networks: str, scheme: str) -> None:
    # A peer inside a listed network is trusted; one outside it is not.
    with run_server(tmp_path, "sync", "--forwarded-allow-ips", f"192.0.2.1,{networks}") as srv:
        status, env = get(srv, "/s", "X-Forwarded-Proto: https")
    assert status == 200 and env["scheme"] == scheme


def test_underscore_header_cannot_impersonate_dash_header(untrusted: Server) -> None:
    """``X-Auth_User`` would land in HTTP_X_AUTH_USER next to a proxy's ``X-Auth-User``."""
    status, env = get(untrusted, "/u", "X-Auth_User: admin", "X_Forwarded_Proto: https")
    assert status == 200
    assert "HTTP_X_AUTH_USER" not in env["http"]
    assert "HTTP_X_FORWARDED_PROTO" not in env["http"]
    assert env["scheme"] == "http"


def test_underscore_header_from_trusted_peer_does_not_set_scheme(trusted: Server) -> None:
    status, env = get(trusted, "/u", "X_Forwarded_Proto: https")
    assert status == 200 and env["scheme"] == "http"
    assert "HTTP_X_FORWARDED_PROTO" not in env["http"]


def test_header_map_refuse_rejects_underscore_names(tmp_path: Path) -> None:
    token = new_token()
    with run_server(tmp_path, "sync", "--header-map", "refuse") as srv:
        status, _ = get(srv, f"/t/{token}/u", "X-Auth_User: admin")
        assert status == 400
        assert srv.recorded_paths(token) == []
        status, env = get(srv, f"/t/{token}/ok", "X-Auth-User: proxy")
        assert status == 200 and env["http"]["HTTP_X_AUTH_USER"] == "proxy"


@pytest.mark.parametrize("header", ["Script-Name: /pre", "SCRIPT_NAME: /pre"])
def test_script_name_header_only_from_trusted_peer(
    trusted: Server, untrusted: Server, header: str
) -> None:
    # SCRIPT_NAME with an underscore is what nginx sends for
    # "proxy_set_header SCRIPT_NAME /pre;" (Gunicorn's forwarder_headers).
    status, env = get(untrusted, "/pre/x", header)
    assert status == 200
    assert (env["script_name"], env["path"]) == ("", "/pre/x")
    # Untrusted: the underscore spelling is dropped (header_map); the hyphen
    # one is an ordinary header the app may read, never the mount point.
    assert ("HTTP_SCRIPT_NAME" in env["http"]) == ("-" in header)
    status, env = get(trusted, "/pre/x", header)
    assert status == 200
    assert (env["script_name"], env["path"]) == ("/pre", "/x")


def test_script_name_from_environment(tmp_path: Path) -> None:
    with run_server(tmp_path, "sync", env_extra={"SCRIPT_NAME": "/shop"}) as srv:
        status, env = get(srv, "/shop/cart")
        assert status == 200 and (env["script_name"], env["path"]) == ("/shop", "/cart")
        status, env = get(srv, "/shop")
        assert status == 200 and (env["script_name"], env["path"]) == ("/shop", "")
        # A path outside the prefix, or one that only starts with the same letters.
        status, env = get(srv, "/shopping")
        assert status == 200 and (env["script_name"], env["path"]) == ("", "/shopping")


# --- PROXY protocol: a client must not be able to pick its own REMOTE_ADDR -------------

PROXY_V1 = "PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n"


def test_proxy_line_is_a_bad_request_when_proxy_protocol_is_off(trusted: Server) -> None:
    token = new_token()
    got = exchange(
        trusted,
        f"{PROXY_V1}GET /t/{token}/p HTTP/1.1\r\nHost: example.test\r\n\r\n".encode(),
        deadline=IO_DEADLINE,
    )
    resps, _ = parse_responses(got.data)
    assert got.closed and [r.status for r in resps] == [400]
    assert trusted.recorded_paths(token) == []


def test_proxy_line_from_a_peer_not_in_proxy_allow_from_is_forbidden(tmp_path: Path) -> None:
    token = new_token()
    with run_server(
        tmp_path, "sync", "--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.1"
    ) as srv:
        got = exchange(
            srv,
            f"{PROXY_V1}GET /t/{token}/p HTTP/1.1\r\nHost: example.test\r\n\r\n".encode(),
            deadline=IO_DEADLINE,
        )
        resps, _ = parse_responses(got.data)
        assert got.closed and [r.status for r in resps] == [403]
        assert srv.recorded_paths(token) == []


def test_proxy_line_from_an_allowed_peer_sets_remote_addr(tmp_path: Path) -> None:
    with run_server(tmp_path, "sync", "--proxy-protocol", "v1") as srv:
        got = exchange(
            srv,
            f"{PROXY_V1}GET /p HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".encode(),
            deadline=IO_DEADLINE,
        )
        resps, _ = parse_responses(got.data)
        assert got.closed and [r.status for r in resps] == [200]
        assert json.loads(resps[0].body)["remote_addr"] == "203.0.113.7"
        # A second PROXY line is not a header the client can add later.
        got = exchange(
            srv,
            f"{PROXY_V1}{PROXY_V1}GET /p HTTP/1.1\r\nHost: example.test\r\n\r\n".encode(),
            deadline=IO_DEADLINE,
        )
        resps, _ = parse_responses(got.data)
        assert got.closed and [r.status for r in resps] == [400]
