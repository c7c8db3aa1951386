"""uvicorn's HTTP protocol with two changes every Laoke server gets (`http=LaokeHttpProtocol`).

1. A request line with raw UTF-8 in its target (`curl 'http://…/customers?q=张三'` sends the bytes as
   typed; browsers and HTTP libraries percent-encode them) is percent-encoded before the parser sees it,
   as nginx accepts it, instead of being refused. The bytes the application receives decode to the same
   text either way. Only a request line that starts what arrives at once is looked at: where a request
   begins inside a read (pipelining, which browsers and HTTP libraries do not do) takes parsing to know,
   and such a request gets the 400 below.
2. A request the parser still refuses gets the one error shape of the API, `{"error": "bad_request",
   "detail": …}` as JSON, instead of uvicorn's plain-text "Invalid HTTP request received."
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


def percent_encode_request_line(data: bytes) -> bytes:
    """`data` with every byte ≥ 0x80 of its first line as %XX; the rest (headers, body) untouched."""
    end = data.find(b"\r\n")
    line = data if end < 0 else data[:end]
    quoted = b"".join(b"%%%02X" % byte if byte >= 0x80 else bytes((byte,)) for byte in line)
    return quoted if end < 0 else quoted + data[end:]


class LaokeHttpProtocol(HttpToolsProtocol):
    # True while no request has begun since the last one ended: the next bytes start a request line.
    _at_request_start = True

    def data_received(self, data: bytes) -> None:
        if self._at_request_start and not data.isascii():
            end = data.find(b"\r\n")
            if end > 0 and not data[:end].isascii():
                data = percent_encode_request_line(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._at_request_start = False
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._at_request_start = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(
            {
                "error": "bad_request",
                "detail": "The request is not valid HTTP/1.1 (a space or control character in the URL "
                "must be percent-encoded, e.g. %20).",
            }
        )
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
