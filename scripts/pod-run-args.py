#!/usr/bin/env python3
"""Prints, one per line, the container-engine options and arguments that start a server container as
the kubelet would start the operator's Deployment in SNAPSHOT (a rendered ModelDeployment, such as
operator/tests/snapshots/cpu.yaml): the container's args, its ConfigMap as environment, its user, a
read-only root filesystem with each emptyDir as a tmpfs, every capability dropped and no privilege
escalation. The options come first, then a line "--image--", then the container's args.

Usage: scripts/pod-run-args.py SNAPSHOT
"""
import sys

import yaml


def fail(message):
    sys.exit(f"pod-run-args: {message}")


def main(path):
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        fail(f"{path} holds {len(deployments)} Deployments, not one")
    pod = deployments[0]["spec"]["template"]["spec"]
    server = next((c for c in pod["containers"] if c["name"] == "server"), None)
    if server is None:
        fail(f"{path}: the Deployment has no container named server")
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind.get("ConfigMap", [])}
    options = []
    for source in server.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        if name not in config_maps:
            fail(f"{path}: envFrom {source} is not a ConfigMap of the snapshot")
        options += [f"--env={key}={value}" for key, value in sorted(config_maps[name].items())]
    for env in server.get("env", []):
        if "value" not in env:
            fail(f"{path}: env {env['name']} comes from the cluster ({env}); this script cannot give it")
        options.append(f"--env={env['name']}={env['value']}")
    context = {**pod.get("securityContext", {}), **server.get("securityContext", {})}
    if "runAsUser" in context:
        options.append(f"--user={context['runAsUser']}:{context.get('runAsGroup', context['runAsUser'])}")
    if context.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    for cap in context.get("capabilities", {}).get("drop", []):
        options.append(f"--cap-drop={cap}")
    if context.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for mount in server.get("volumeMounts", []):
        if mount["name"] not in empty_dirs:
            fail(f"{path}: volume {mount['name']!r} is not an emptyDir; this script mounts only those")
        options.append(f"--tmpfs={mount['mountPath']}:rw,mode=1777")
    print("\n".join(options + ["--image--"] + [str(a) for a in server.get("args", [])]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail(__doc__.strip().splitlines()[-1])
    main(sys.argv[1])
