#!/usr/bin/env python3
"""Checks behind scripts/check-chart.sh that need a YAML parser (run with .cache/venv's python).

  split IN BUILTIN_OUT CRD_OUT
      Splits a multi-document YAML stream: kinds Kubernetes itself serves go to BUILTIN_OUT (for
      kubernetes-validate), custom-resource kinds (ServiceMonitor, PrometheusRule, ModelDeployment, ...)
      to CRD_OUT. Prints the count of each.
  structure RENDERED
      Light structural checks of the custom resources kubernetes-validate cannot check (ServiceMonitor,
      PrometheusRule), of the Grafana dashboard ConfigMap, and cross-references (the ServiceMonitor selects
      the metrics Service, and its port exists).
  examples CRD FILE...
      Validates every ModelDeployment in FILEs against the CRD's openAPIV3Schema (jsonschema), stricter than
      the API server: unknown fields are errors (the server would prune them silently). Other kinds in FILEs
      go to stdout for kubernetes-validate.
  objects CRD FILE...
      Validates every object of the CRD's kind in FILEs (the operator's built objects, namespaced) against
      the CRD's openAPIV3Schema, unknown fields being errors; fails if FILEs hold none.
  metrics KNOWN_FILE[,KNOWN_FILE...] RENDERED DASHBOARD_JSON
      Every metric name used in the rendered PrometheusRule(s) and in the dashboard must be known. A known
      file is either a list of names (one a line, # comments) or Prometheus text exposition (a /metrics
      scrape): `# TYPE name ...` lines and sample names both count. A histogram's name also admits its
      _bucket, _sum and _count series.
"""

import json
import re
import sys

import jsonschema
import yaml

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print(f"FAIL {msg}", file=sys.stderr)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def dump_docs(docs, path):
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)


def is_custom(doc):
    """Kinds kubernetes-validate has no schema for: API groups that only CRDs serve."""
    api = doc.get("apiVersion", "")
    group = api.split("/")[0] if "/" in api else ""
    return group.endswith("monitoring.coreos.com") or group in ("kubeinfer.io", "keda.sh")


def cmd_split(src, builtin_out, crd_out):
    docs = load_docs(src)
    builtin = [d for d in docs if not is_custom(d)]
    custom = [d for d in docs if is_custom(d)]
    dump_docs(builtin, builtin_out)
    dump_docs(custom, crd_out)
    print(f"{len(builtin)} built-in, {len(custom)} custom")


# --- structure ------------------------------------------------------------------------------------------

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
SEVERITIES = {"critical", "warning", "info"}


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def balanced(expr):
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in strip_strings(expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def check_prometheus_rule(doc):
    name = doc.get("metadata", {}).get("name", "?")
    where = f"PrometheusRule {name}"
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(f"{where}: apiVersion must be monitoring.coreos.com/v1")
    groups = (doc.get("spec") or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        fail(f"{where}: spec.groups must be a non-empty list")
        return
    seen_groups, seen_alerts = set(), set()
    for g in groups:
        gname = g.get("name")
        if not gname or gname in seen_groups:
            fail(f"{where}: group name missing or duplicated: {gname!r}")
        seen_groups.add(gname)
        unknown = set(g) - {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"}
        if unknown:
            fail(f"{where}: group {gname}: unknown keys {sorted(unknown)}")
        for r in g.get("rules") or []:
            rwhere = f"{where}: {r.get('alert') or r.get('record') or '?'}"
            unknown = set(r) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if unknown:
                fail(f"{rwhere}: unknown keys {sorted(unknown)}")
            if ("alert" in r) == ("record" in r):
                fail(f"{rwhere}: exactly one of alert and record")
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                fail(f"{rwhere}: expr must be a non-empty string")
                continue
            if not balanced(expr):
                fail(f"{rwhere}: unbalanced brackets in expr")
            if "{{" in expr:
                fail(f"{rwhere}: unrendered template in expr")
            if "alert" in r:
                if r["alert"] in seen_alerts:
                    fail(f"{rwhere}: duplicate alert name")
                seen_alerts.add(r["alert"])
                if not DURATION.match(str(r.get("for", ""))):
                    fail(f"{rwhere}: `for` must be a duration, got {r.get('for')!r}")
                sev = (r.get("labels") or {}).get("severity")
                if sev not in SEVERITIES:
                    fail(f"{rwhere}: labels.severity must be one of {sorted(SEVERITIES)}, got {sev!r}")
                ann = r.get("annotations") or {}
                for key in ("summary", "description"):
                    if not str(ann.get(key, "")).strip():
                        fail(f"{rwhere}: annotations.{key} is missing")
    print(f"ok   {where}: {len(seen_alerts)} alerts in {len(seen_groups)} groups")


def check_service_monitor(doc, services):
    name = doc.get("metadata", {}).get("name", "?")
    where = f"ServiceMonitor {name}"
    spec = doc.get("spec") or {}
    match = (spec.get("selector") or {}).get("matchLabels") or {}
    if not match:
        fail(f"{where}: spec.selector.matchLabels is empty")
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        fail(f"{where}: spec.endpoints is empty")
    ns = doc.get("metadata", {}).get("namespace")
    selected = [s for s in services
                if s.get("metadata", {}).get("namespace") == ns
                and all((s["metadata"].get("labels") or {}).get(k) == v for k, v in match.items())]
    if len(selected) != 1:
        fail(f"{where}: selects {len(selected)} Services in the render, expected 1")
    ports = {p.get("name") for s in selected for p in (s.get("spec") or {}).get("ports", [])}
    for ep in endpoints:
        if ep.get("port") not in ports:
            fail(f"{where}: endpoint port {ep.get('port')!r} is not a port of the selected Service")
        for key in ("interval", "scrapeTimeout"):
            if key in ep and not DURATION.match(str(ep[key])):
                fail(f"{where}: endpoint {key} {ep[key]!r} is not a duration")
    print(f"ok   {where}")


def check_dashboard_json(text, where):
    try:
        dash = json.loads(text)
    except ValueError as e:
        fail(f"{where}: not JSON: {e}")
        return None
    ids = [p.get("id") for p in all_panels(dash)]
    if len(ids) != len(set(ids)):
        fail(f"{where}: duplicate panel ids")
    names = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
    for needed in ("datasource", "model"):
        if needed not in names:
            fail(f"{where}: template variable {needed!r} is missing")
    for p in all_panels(dash):
        if p.get("type") == "row":
            continue
        ds = (p.get("datasource") or {}).get("uid")
        if ds != "${datasource}":
            fail(f"{where}: panel {p.get('title')!r} does not use the ${{datasource}} variable")
        for t in p.get("targets", []):
            if not balanced(t.get("expr", "")):
                fail(f"{where}: panel {p.get('title')!r}: unbalanced brackets in {t.get('expr')!r}")
    return dash


def cmd_structure(rendered):
    docs = load_docs(rendered)
    services = [d for d in docs if d.get("kind") == "Service"]
    for d in docs:
        kind = d.get("kind")
        if kind == "PrometheusRule":
            check_prometheus_rule(d)
        elif kind == "ServiceMonitor":
            check_service_monitor(d, services)
        elif kind == "ConfigMap" and any(k.endswith(".json") for k in (d.get("data") or {})):
            for key, text in d["data"].items():
                if key.endswith(".json") and check_dashboard_json(text, f"ConfigMap {d['metadata']['name']}/{key}"):
                    print(f"ok   dashboard ConfigMap {d['metadata']['name']}/{key}")
        elif is_custom(d):
            fail(f"{kind} {d.get('metadata', {}).get('name')}: no structural check for this custom kind")
    for d in docs:
        # CRDs come verbatim from crdgen through Helm's untemplated crds/ directory.
        if d.get("kind") == "CustomResourceDefinition":
            continue
        labels = (d.get("metadata") or {}).get("labels") or {}
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            if key not in labels:
                fail(f"{d.get('kind')} {d.get('metadata', {}).get('name')}: label {key} is missing")


# --- examples against the CRD schema --------------------------------------------------------------------

def to_jsonschema(node):
    """OpenAPI v3 (Kubernetes structural schema) to JSON Schema draft 4, closed where the CRD is."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = to_jsonschema(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_jsonschema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "default", "example",
                                                        "externalDocs", "x-kubernetes-validations"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        t = out["type"]
        out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
    # The API server prunes unknown fields silently; here they are typos, so objects with a declared
    # shape are closed unless the CRD keeps unknown fields.
    if (out.get("type") in ("object", ["object", "null"]) and "properties" in out
            and "additionalProperties" not in out and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def schema_errors(version, doc, where):
    """Fails on each way `doc` breaks the CRD version's schema; returns how many there were."""
    schema = to_jsonschema(version["schema"]["openAPIV3Schema"])
    # apiVersion, kind and metadata are the API server's, not the CRD schema's.
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    for key in ("apiVersion", "kind", "metadata"):
        schema.get("properties", {}).pop(key, None)
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    for e in errors:
        fail(f"{where}: {'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}")
    return len(errors)


def cmd_objects(crd_path, files):
    crd = next((d for d in load_docs(crd_path) if d.get("kind") == "CustomResourceDefinition"), None)
    if crd is None:
        fail(f"{crd_path}: no CustomResourceDefinition")
        return
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    versions = {f"{group}/{v['name']}": v for v in crd["spec"]["versions"]}
    n = 0
    for path in files:
        for doc in load_docs(path):
            if doc.get("kind") != kind:
                continue
            n += 1
            where = f"{path}: {kind} {(doc.get('metadata') or {}).get('name')}"
            if doc.get("apiVersion") not in versions:
                fail(f"{where}: apiVersion {doc.get('apiVersion')!r} is not served by the CRD")
            elif schema_errors(versions[doc["apiVersion"]], doc, where) == 0:
                print(f"ok   {where}", file=sys.stderr)
    if n == 0:
        fail(f"no {kind} in {' '.join(files)}")


def cmd_examples(crd_path, files):
    crds = [d for d in load_docs(crd_path) if d.get("kind") == "CustomResourceDefinition"]
    if not crds:
        fail(f"{crd_path}: no CustomResourceDefinition")
        return
    crd = crds[0]
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    others = []
    for path in files:
        n = 0
        for doc in load_docs(path):
            meta = doc.get("metadata") or {}
            where = f"{path}: {doc.get('kind')} {meta.get('name')}"
            if "namespace" in meta:
                fail(f"{where}: examples are namespace-less (they go to the current namespace)")
            if doc.get("kind") != kind:
                others.append(doc)
                continue
            n += 1
            api = doc.get("apiVersion", "")
            g, _, ver = api.partition("/")
            if g != group or ver not in versions:
                fail(f"{where}: apiVersion {api!r} is not served by the CRD")
                continue
            if not DNS1123_SUBDOMAIN.match(meta.get("name", "")) or len(meta.get("name", "")) > 253:
                fail(f"{where}: metadata.name is not a DNS-1123 subdomain")
            errors = schema_errors(versions[ver], doc, where)
            spec = doc.get("spec") or {}
            # The CRD's x-kubernetes-validations (CEL) are not evaluated here; this one matters for examples.
            if "replicas" in spec and "autoscaling" in spec:
                fail(f"{where}: set either spec.replicas or spec.autoscaling, not both")
            model = spec.get("model") or {}
            if (str(model.get("uri", "")).startswith(("https://", "s3://", "gs://")) and "sha256" not in model
                    and not model.get("insecureSkipChecksum")):
                fail(f"{where}: a downloaded model needs spec.model.sha256 or insecureSkipChecksum: true")
            if not errors:
                print(f"ok   {where}", file=sys.stderr)
        if n == 0 and not any(d.get("kind") for d in load_docs(path)):
            fail(f"{path}: no documents")
    yaml.safe_dump_all(others, sys.stdout, sort_keys=False)


# --- metric names ---------------------------------------------------------------------------------------

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    "inf", "nan", "Inf", "NaN", "start", "end", "atan2",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr):
    e = strip_strings(expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)          # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)        # range selectors and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?", " ", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def read_known(paths):
    known = set()
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                m = re.match(r"#\s*(TYPE|HELP)\s+([A-Za-z_:][A-Za-z0-9_:]*)", line)
                if m:
                    known.add(m.group(2))
                    continue
                if line.startswith("#"):
                    continue
                m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)", line)
                if m:
                    known.add(m.group(1))
    return known


def is_known(name, known):
    if name in known:
        return True
    return any(name.endswith(s) and name[: -len(s)] in known for s in HISTOGRAM_SUFFIXES)


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def dashboard_exprs(dash):
    for p in all_panels(dash):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield f"dashboard panel {p.get('title')!r}", t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.match(r"\s*label_values\(\s*(.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q)
        if m:
            yield f"dashboard variable {v.get('name')!r}", m.group(1)
        elif re.match(r"\s*label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q):
            continue
        else:
            m = re.match(r"\s*query_result\((.*)\)\s*$", q)
            yield f"dashboard variable {v.get('name')!r}", m.group(1) if m else q


def cmd_metrics(known_files, rendered, dashboard_path):
    known = read_known(known_files.split(","))
    if not known:
        fail(f"no metric names in {known_files}")
        return
    uses = []
    for d in load_docs(rendered):
        if d.get("kind") != "PrometheusRule":
            continue
        for g in d["spec"]["groups"]:
            for r in g.get("rules", []):
                uses.append((f"PrometheusRule {r.get('alert') or r.get('record')}", r["expr"]))
    if not uses:
        fail(f"{rendered}: no PrometheusRule expressions (render it with prometheusRule.enabled=true)")
    with open(dashboard_path) as f:
        dash = json.load(f)
    uses.extend(dashboard_exprs(dash))
    checked = set()
    for where, expr in uses:
        names = metric_names(expr)
        if not names:
            fail(f"{where}: no metric name found in {expr!r}")
        for name in names:
            checked.add(name)
            if not is_known(name, known):
                fail(f"{where}: unknown metric {name!r}")
    print(f"ok   {len(uses)} expressions use {len(checked)} metric names, "
          f"checked against {len(known)} known names")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "split" and len(args) == 3:
        cmd_split(*args)
    elif cmd == "structure" and len(args) == 1:
        cmd_structure(*args)
    elif cmd == "examples" and len(args) >= 2:
        cmd_examples(args[0], args[1:])
    elif cmd == "objects" and len(args) >= 2:
        cmd_objects(args[0], args[1:])
    elif cmd == "metrics" and len(args) == 3:
        cmd_metrics(*args)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
