"""Lint and render helm/rentabot offline with PyPI's helm-python-sdk (the Helm library;
no helm binary is packaged for our machines: TOOLING.md § Helm).

    python render.py CHART OUT_DIR [VALUES.yaml ...]

Runs `helm lint --strict` (Kubernetes 1.30) with the values, then renders them as
release "demo" in namespace "lab" (values.schema.json is enforced by both) and writes:

- OUT_DIR/manifests.yaml: every manifest of a kind Kubernetes itself defines, for
  `kubernetes-validate --strict`;
- OUT_DIR/crds.yaml: the manifests of custom resources (ServiceMonitor,
  PrometheusRule of monitoring.coreos.com/v1), whose schemas kubernetes-validate does
  not bundle: tests/api/chart.rs checks their shape instead;
- OUT_DIR/NOTES.txt: the notes `helm install` would print.

Exits non-zero, saying why, on a lint finding or a render error.
"""

import os
import sys

import yaml
from helm_python.chart import Chart, lint, values_from_yaml

CUSTOM_GROUPS = ("monitoring.coreos.com/",)


def main(chart, out_dir, *value_files):
    values = {}
    for path in value_files:
        with open(path, encoding="utf-8") as f:
            values = merge(values, values_from_yaml(f.read()))
    report = lint(chart, values, strict=True, kube_version="v1.30.0", namespace="lab")
    findings = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    if findings:
        sys.exit(f"helm lint --strict {' '.join(value_files)}: {findings}")
    with Chart.load(chart) as c:
        rendered = c.render(values, name="demo", namespace="lab", is_install=True)
    builtin, custom, notes = [], [], ""
    for template, text in sorted(rendered.items()):
        if template.endswith("/NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            if doc["apiVersion"].startswith(CUSTOM_GROUPS):
                custom.append(doc)
            else:
                builtin.append(doc)
    os.makedirs(out_dir, exist_ok=True)
    for name, docs in (("manifests.yaml", builtin), ("crds.yaml", custom)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
    with open(os.path.join(out_dir, "NOTES.txt"), "w", encoding="utf-8") as f:
        f.write(notes)
    kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in builtin)
    skipped = ", ".join(d["kind"] for d in custom) or "none"
    print(f"   rendered {kinds}; custom resources (not validated by kubernetes-validate): {skipped}")


def merge(base, override):
    """Helm's -f semantics: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
