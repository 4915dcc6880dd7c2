"""Sends a body over the server's limit the way an ordinary client does (Python's http.client writes the
whole body before it reads the answer) and prints the status and body it gets, one line per case."""
import http.client
import sys

host, port = sys.argv[1].rsplit(":", 1)
size = int(sys.argv[2])


def chunks():
    piece = b" " * 65536
    for _ in range(size // len(piece)):
        yield piece


for case, body, extra in [
    ("content-length", b" " * size, {}),
    ("chunked", chunks(), {"encode_chunked": True}),
]:
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/v2/models/affine/infer", body=body,
                     headers={"Content-Type": "application/json"}, **extra)
        response = conn.getresponse()
        print(case, response.status, response.read().decode())
    except OSError as e:
        print(case, "failed:", repr(e))
    finally:
        conn.close()
