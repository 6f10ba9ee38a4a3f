"""Turn the chart's rendered manifests into what `podman kube play` (podman 4.3, Debian
12) runs, changing no more than it needs:

    python kube_play.py MANIFESTS.yaml HOST_PORT [--claims-exist] > play.yaml

- the StatefulSet becomes its pod, <name>-0, with the pod template as it is (security
  contexts, probes, environment, mounts);
- its volumeClaimTemplate becomes the PersistentVolumeClaim the StatefulSet controller
  would make, data-<name>-0 (podman: a named volume, owned by the pod's user as a
  provisioner with fsGroup would leave it), and the pod's volume `data` claims it;
  with --claims-exist the claims are left out (podman 4.3 refuses to play a claim
  whose volume exists) and the pod mounts the volumes as they are, as a new pod of the
  StatefulSet would;
- the probes are left out: podman 4.3 turns them into health checks that run curl
  inside the container (the image has none) from systemd timers (there is no systemd
  here); tests/helm.sh asks /health and /readiness from outside instead;
- the port `http` gets a hostPort on 127.0.0.1 (HOST_PORT), for the test to reach;
- a Secret becomes a ConfigMap with the same data, and the pod's secret volume a
  configMap volume: podman 4.3 plays neither Secrets nor secret volumes;
- ConfigMaps stay; what podman cannot play and the pod does not need (Service,
  ServiceAccount, Ingress) is left out;
- the checksum/* annotations are left out: podman 4.3 refuses annotation values over
  63 characters (a label's limit; Kubernetes has none for annotations), and a sha256 is
  64.
"""

import base64
import sys

import yaml


def main(manifests_path, host_port, *flags):
    claims_exist = "--claims-exist" in flags
    with open(manifests_path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    out = []
    sets = [d for d in docs if d["kind"] == "StatefulSet"]
    if len(sets) != 1:
        sys.exit(f"expected one StatefulSet, found {len(sets)}")
    sts = sets[0]
    pod_name = f"{sts['metadata']['name']}-0"
    template = sts["spec"]["template"]
    spec = template["spec"]
    uid = spec.get("securityContext", {}).get("runAsUser", 0)
    gid = spec.get("securityContext", {}).get("fsGroup", uid)
    for claim in sts["spec"].get("volumeClaimTemplates", []):
        claim_name = f"{claim['metadata']['name']}-{pod_name}"
        if not claims_exist:
            out.append({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": claim_name,
                    "annotations": {"volume.podman.io/uid": str(uid), "volume.podman.io/gid": str(gid)},
                },
                "spec": claim["spec"],
            })
        spec.setdefault("volumes", []).append(
            {"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}}
        )
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            secret = volume.pop("secret")
            volume["configMap"] = {"name": secret["secretName"]}
    for container in spec["containers"]:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            container.pop(probe, None)
        for port in container.get("ports", []):
            if port.get("name") == "http":
                port["hostIP"] = "127.0.0.1"
                port["hostPort"] = int(host_port)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            out.append(doc)
        elif doc["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in doc.get("data", {}).items()}
            out.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": doc["metadata"]["name"]}, "data": data})
    out.append({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "labels": template["metadata"].get("labels", {}),
            "annotations": {
                k: v
                for k, v in template["metadata"].get("annotations", {}).items()
                if not k.startswith("checksum/")
            },
        },
        "spec": spec,
    })
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
