"""Type stubs for the compiled sans-IO HTTP/1.x request parser."""

from collections.abc import Iterable

class RequestParser:
    method: str | None
    version: tuple[int, int] | None
    keep_alive: bool
    expect_continue: bool
    content_length: int
    chunked: bool
    url_scheme: str
    proxy_info: tuple[str, int, str, int] | None
    dead: bool
    def __init__(
        self,
        *,
        limit_request_line: int = 4094,
        limit_request_fields: int = 100,
        limit_request_field_size: int = 8190,
        limit_request_headers_total: int = 65536,
        limit_request_body: int = 0,
        header_map: str = "drop",
        permit_obsolete_folding: bool = False,
        permit_unconventional_http_method: bool = False,
        casefold_http_method: bool = False,
        strip_header_spaces: bool = False,
        permit_missing_host: bool = False,
        secure_scheme_headers: Iterable[tuple[str, str]] | dict[str, str] = ...,
        proxy_protocol: str = "off",
        forwarder_headers: Iterable[str] = ("SCRIPT_NAME", "PATH_INFO"),
    ) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> None: ...
    def feed_eof(self) -> None: ...
    def next_head(self) -> dict[str, str] | None: ...
    def read_body(self, n: int = -1) -> bytes | None: ...
    def finish(self) -> None: ...
    def set_trusted(self, trusted: bool) -> None: ...
    def set_proxy_allowed(self, allowed: bool) -> None: ...
    def rejected_request(self) -> tuple[str, str, str] | None: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @property
    def trailers(self) -> list[tuple[str, str]]: ...
    @property
    def buffered(self) -> int: ...
    @property
    def body_complete(self) -> bool: ...

def build_info() -> dict[str, str]: ...
