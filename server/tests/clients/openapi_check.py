"""Checks /openapi.json of a running kubeinfer-server (with the prediction log on) against itself and
against real responses:
  - the document is valid OpenAPI 3.1 (openapi-spec-validator);
  - every example in it validates against its schema;
  - every documented operation is called for real, and every answer's JSON validates against the schema
    documented for its status (a status the document does not list fails); where the call is the one the
    example shows, the answer equals the example.
Usage: openapi_check.py URL. Exits non-zero on the first failed check."""
import json
import re
import sys
import time
import urllib.error
import urllib.request

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def call(url, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def valid(doc, schema, value):
    """Errors of `value` against `schema`, whose $refs point into the document's components."""
    rooted = dict(schema, components=doc["components"])
    return [e.message for e in Draft202012Validator(rooted).iter_errors(value)]


def examples(doc):
    """(where, schema, example) for every example of a request or response body."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            bodies = [("request", op.get("requestBody", {}))]
            bodies += [(status, r) for status, r in op["responses"].items()]
            for status, body in bodies:
                for media, content in body.get("content", {}).items():
                    if "example" in content:
                        yield f"{method.upper()} {path} {status} {media}", content["schema"], content["example"]


def documented(doc, template, method, status):
    response = doc["paths"][template][method.lower()]["responses"].get(str(status))
    check(response is not None, f"{method} {template} documents status {status}")
    return response.get("content", {})


def exercise(url, doc, template, method, path, status, body=None, exact=False):
    """Calls `path`, expects `status`, and validates the answer against the document."""
    got, content_type, raw = call(url, method, path, body)
    check(got == status, f"{method} {path} answers {status} (got {got}: {raw[:200]!r})")
    content = documented(doc, template, method, status)
    media = content_type.split(";")[0].strip()
    check(any(m.split(";")[0] == media for m in content), f"{method} {path}: {media} is documented: {list(content)}")
    if media != "application/json":
        return raw
    value = json.loads(raw)
    entry = next(c for m, c in content.items() if m.split(";")[0] == media)
    errors = valid(doc, entry["schema"], value)
    check(not errors, f"{method} {path} {status} validates against the document {errors[:3]}")
    if exact:
        check(value == entry["example"], f"{method} {path} {status} is the documented example")
    return value


def main(url):
    status, _, raw = call(url, "GET", "/openapi.json")
    doc = json.loads(raw)
    check(status == 200 and doc["openapi"].startswith("3.1"), "GET /openapi.json is OpenAPI 3.1")
    validate_spec(doc)
    check(True, "the document is valid OpenAPI 3.1")
    n = 0
    for where, schema, example in examples(doc):
        errors = valid(doc, schema, example)
        check(not errors, f"the example of {where} validates {errors[:3]}")
        n += 1
    check(n >= 20, f"{n} examples checked")

    done = set()

    def run(template, method, path, status, body=None, exact=False):
        done.add((template, method.lower()))
        return exercise(url, doc, template, method, path, status, body, exact)

    v = "/v2/models/{model}/versions/{version}"
    m = "/v2/models/{model}"
    run("/v2/health/live", "GET", "/v2/health/live", 200, exact=True)
    run("/v2/health/ready", "GET", "/v2/health/ready", 200, exact=True)
    run("/v2", "GET", "/v2", 200, exact=True)
    run(m, "GET", "/v2/models/affine", 200, exact=True)
    run(m, "GET", "/v2/models/nope", 404, exact=True)
    run(v, "GET", "/v2/models/affine/versions/1", 200)
    run(m + "/ready", "GET", "/v2/models/affine/ready", 200, exact=True)
    run(v + "/ready", "GET", "/v2/models/affine/versions/2/ready", 200)
    run(m + "/config", "GET", "/v2/models/digits/config", 200)
    run(v + "/config", "GET", "/v2/models/affine/versions/1/config", 200)
    run(m + "/stats", "GET", "/v2/models/affine/stats", 200)
    run(v + "/stats", "GET", "/v2/models/affine/versions/2/stats", 200)
    run("/v2/models/stats", "GET", "/v2/models/stats", 200)
    request = doc["paths"][m + "/infer"]["post"]["requestBody"]["content"]["application/json"]["example"]
    run(m + "/infer", "POST", "/v2/models/affine/infer", 200, request, exact=True)
    run(v + "/infer", "POST", "/v2/models/affine/versions/1/infer", 200, request)
    bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    run(m + "/infer", "POST", "/v2/models/affine/infer", 400, bad, exact=True)
    run(m + "/infer", "POST", "/v2/models/nope/infer", 404, request, exact=True)

    page = run("/", "GET", "/", 200).decode()
    asset = re.search(r'"(/assets/[^"]+\.js)"', page).group(1)
    run("/assets/{file}", "GET", asset, 200)
    run("/assets/{file}", "GET", "/assets/missing.js", 404, exact=True)
    run("/metrics", "GET", "/metrics", 200)
    run("/openapi.json", "GET", "/openapi.json", 200)

    listing = None
    for _ in range(100):  # the writer flushes every 200 ms
        listing = run("/api/predictions", "GET", "/api/predictions?include=feedback", 200)
        if len(listing["predictions"]) >= 3:
            break
        time.sleep(0.1)
    check(len(listing["predictions"]) == 3, "the three inferences above to a known model are logged")
    run("/api/predictions", "GET", "/api/predictions?limit=0", 400, exact=True)
    prediction = listing["predictions"][0]["id"]
    run("/api/predictions/{id}", "GET", f"/api/predictions/{prediction}", 200)
    run("/api/predictions/{id}", "GET", "/api/predictions/x", 400, exact=True)
    feedback = doc["paths"]["/api/predictions/{id}/feedback"]["post"]["requestBody"]["content"]["application/json"]["example"]
    run("/api/predictions/{id}/feedback", "POST", f"/api/predictions/{prediction}/feedback", 201, feedback)
    run("/api/predictions/{id}/feedback", "POST", f"/api/predictions/{prediction}/feedback", 400, {}, exact=True)
    run("/api/models", "GET", "/api/models", 200)
    run("/api/models/{model}/stats", "GET", "/api/models/affine/stats?window=24h", 200)
    run("/api/models/{model}/stats", "GET", "/api/models/affine/stats?window=2h", 400, exact=True)

    operations = {(p, method) for p, item in doc["paths"].items() for method in item}
    check(operations == done, f"every documented operation was called: missing {operations - done}")
    print("all openapi checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
