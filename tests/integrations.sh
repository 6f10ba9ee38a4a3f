#!/usr/bin/env bash
# The CI integrations (README § CI integrations) against the real service:
# integrations/rentabot-lock.sh, the GitHub Action (its steps run as the runner runs
# them, tests/integrations/gha.py), the Jenkins library (withRentabot.groovy run in a
# stand-in for Jenkins whose steps are real, tests/integrations/jenkins.groovy), and the
# README's examples. Each test class starts the binary on port 0.
#
# Needs bash, curl, jq, python3 with PyYAML, shellcheck and groovy (Debian:
# apt-get install shellcheck groovy python3-yaml; .ci/run installs them). Reuses the
# binary `cargo test` built (target/debug/rentabot), or RENTABOT_BIN.
#
#   tests/integrations.sh                       # as CI runs it
#   tests/integrations.sh -k Jenkins            # some tests (unittest's -k)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${RENTABOT_BIN:-target/debug/rentabot}
if [ ! -x "$BIN" ]; then
    echo "integrations: no binary at $BIN (run cargo test or cargo build first)" >&2
    exit 1
fi
missing=()
for tool in bash curl jq python3 shellcheck groovy; do
    command -v "$tool" > /dev/null || missing+=("$tool")
done
python3 -c 'import yaml' 2> /dev/null || missing+=(python3-yaml)
if [ ${#missing[@]} -gt 0 ]; then
    echo "integrations: missing ${missing[*]} (Debian: apt-get install shellcheck groovy python3-yaml curl jq)" >&2
    exit 1
fi
# Debian's groovy looks for Java in /usr/lib/jvm/default-java unless told.
if [ -z "${JAVA_HOME-}" ] && [ ! -x /usr/lib/jvm/default-java/bin/java ]; then
    JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
    export JAVA_HOME
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "== shellcheck: the script, this file, and the actions' run: scripts"
python3 - "$scratch" integrations/github-action/*/action.yml integrations/github-action/action.yml <<'PY'
import sys, yaml, pathlib
out = pathlib.Path(sys.argv[1])
for n, path in enumerate(sys.argv[2:]):
    for m, step in enumerate(yaml.safe_load(open(path))["runs"]["steps"]):
        assert "${{" not in step["run"], f"{path}: an expression inside run: (pass it through env:)"
        (out / f"action-{n}-{m}.sh").write_text(f"#!/usr/bin/env bash\n# {path}\n" + step["run"])
PY
shellcheck integrations/rentabot-lock.sh tests/integrations.sh "$scratch"/action-*.sh
cmp integrations/rentabot-lock.sh integrations/jenkins/resources/org/rentabot/rentabot-lock.sh

echo "== groovyc: withRentabot.groovy compiles (Groovy $(groovy --version 2> /dev/null | grep -o 'Version: [0-9.]*' || true), as Jenkins runs 2.4)"
groovyc -d "$scratch/classes" integrations/jenkins/vars/withRentabot.groovy

echo "== python3 -m unittest tests/integrations (binary: $BIN)"
RENTABOT_BIN=$BIN PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tests/integrations -p 'test_*.py' "$@"
