"""A stand-in for the GitHub Actions runner, enough to run our composite actions for real.

It runs a job's steps as the runner does: each step is a `run:` script or a `uses:` of a
local composite action (a directory with action.yml); a step runs when its `if:` says
so (default `success()`; `always()`, `failure()`, `success()`, `cancelled()` are
understood), a failing step fails the job and later steps are skipped unless their
`if:` says otherwise. Inside an action the same rules apply to its own steps.

Like the runner it
- runs `shell: bash` scripts as `bash --noprofile --norc -eo pipefail FILE`;
- substitutes `${{ inputs.X }}`, `${{ github.action_path }}`, `${{ steps.ID.outputs.X }}`,
  `${{ env.X }}` in `env:`, `with:`, `run:`, `working-directory:` and output values;
  any other expression is an error here (so an action cannot rely on something this
  harness does not check);
- checks inputs: unknown ones are an error (the runner warns), required ones without a
  value too; defaults apply;
- gives each step fresh GITHUB_OUTPUT and GITHUB_ENV files, reads them back
  (`NAME=value` and `NAME<<DELIM` forms): outputs become `steps.ID.outputs`, env
  lines join the job's environment for the steps after;
- sets GITHUB_ACTIONS=true, GITHUB_ACTION_PATH, GITHUB_RUN_ID, GITHUB_REPOSITORY,
  GITHUB_SERVER_URL, GITHUB_WORKSPACE and CI.

- cancels (`cancel_at`) as the runner does: SIGINT to the step's process only; steps
  after it run only under `always()` or `cancelled()`.

Not modelled: node/docker actions, matrix, contexts other than the above, the runner's
SIGTERM and SIGKILL of the process tree 7.5 s and later after the SIGINT.

Needs PyYAML (Debian: python3-yaml), the parser GitHub's own YAML rules are closest to
among what is installable here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# --- expressions ---------------------------------------------------------------------

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class ExpressionError(ValueError):
    pass


def substitute(text, ctx: dict) -> str:
    if not isinstance(text, str):
        return "" if text is None else str(text).lower() if isinstance(text, bool) else str(text)

    def one(m: re.Match) -> str:
        expr = m.group(1)
        parts = expr.split(".")
        if parts[0] == "inputs" and len(parts) == 2:
            if parts[1] not in ctx["inputs"]:
                raise ExpressionError(f"inputs.{parts[1]} is not an input of the action")
            return ctx["inputs"][parts[1]]
        if parts == ["github", "action_path"]:
            return ctx["action_path"]
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return ctx["steps"].get(parts[1], {}).get(parts[3], "")
        if parts[0] == "env" and len(parts) == 2:
            return ctx["env"].get(parts[1], "")
        raise ExpressionError(f"expression not supported by the harness: {expr}")

    return EXPR.sub(one, text)


def should_run(condition, job_failed: bool, cancelled: bool = False) -> bool:
    cond = (condition or "success()").strip()
    m = EXPR.fullmatch(cond)
    if m:
        cond = m.group(1)
    if cond == "always()":
        return True
    if cond == "success()":
        return not job_failed and not cancelled
    if cond == "failure()":
        return job_failed and not cancelled
    if cond == "cancelled()":
        return cancelled
    raise ExpressionError(f"if: not supported by the harness: {condition}")


def read_commands_file(path: Path) -> dict:
    """GITHUB_OUTPUT / GITHUB_ENV: NAME=value lines, or NAME<<DELIM ... DELIM."""
    out = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            value = []
            while i < len(lines) and lines[i] != delim:
                value.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError(f"{path}: no closing {delim}")
            i += 1
            out[name] = "\n".join(value)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        else:
            raise ValueError(f"{path}: a line the runner would refuse: {line!r}")
    return out


# --- the runner ----------------------------------------------------------------------


@dataclass
class StepResult:
    name: str
    ran: bool
    status: int | None
    outputs: dict = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""


@dataclass
class Job:
    """One job: its environment, and what each step did."""

    env: dict
    workspace: Path
    timeout: float = 120
    # Cancel the run as the runner does (SIGINT to the step's process, which is all
    # the runner signals first) once a step prints a line with this text on this
    # stream: ("stdout" | "stderr", text).
    cancel_at: tuple | None = None
    results: list = field(default_factory=list)
    failed: bool = False
    cancelled: bool = False

    def run(self, steps: list) -> "Job":
        ctx = {"steps": {}}
        for index, step in enumerate(steps):
            name = step.get("name") or step.get("id") or f"step {index + 1}"
            if not should_run(step.get("if"), self.failed, self.cancelled):
                self.results.append(StepResult(name, False, None))
                continue
            if "uses" in step:
                result = self._uses(name, step, ctx)
            else:
                result = self._script(name, step, step.get("env", {}), {"inputs": {}, "action_path": "", "steps": ctx["steps"], "env": self.env}, self.workspace)
            if step.get("id"):
                ctx["steps"][step["id"]] = result.outputs
            self.results.append(result)
            if result.status != 0:
                self.failed = True
        return self

    def _uses(self, name: str, step: dict, job_ctx: dict) -> StepResult:
        action_dir = Path(step["uses"]).resolve()
        action = yaml.safe_load((action_dir / "action.yml").read_text())
        if action["runs"]["using"] != "composite":
            raise ValueError(f"{action_dir}: only composite actions are run here")
        declared = action.get("inputs") or {}
        given = {k: substitute(v, {"inputs": {}, "action_path": "", "steps": job_ctx["steps"], "env": self.env}) for k, v in (step.get("with") or {}).items()}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise ValueError(f"{action_dir}: unexpected input(s) {unknown}; valid: {sorted(declared)}")
        inputs = {}
        for key, spec in declared.items():
            spec = spec or {}
            if key in given:
                inputs[key] = given[key]
            elif spec.get("required") is True and spec.get("default") is None:
                raise ValueError(f"{action_dir}: required input {key} not given")
            else:
                inputs[key] = substitute(spec.get("default", ""), {"inputs": {}, "action_path": "", "steps": {}, "env": {}})
        ctx = {"inputs": inputs, "action_path": str(action_dir), "steps": {}, "env": self.env}
        failed = False
        result = StepResult(name, True, 0)
        for inner in action["runs"]["steps"]:
            if not should_run(inner.get("if"), failed, self.cancelled):
                continue
            if "run" not in inner:
                raise ValueError(f"{action_dir}: only run steps are supported")
            if inner.get("shell") != "bash":
                raise ValueError(f"{action_dir}: a composite run step needs shell: (we use bash)")
            workdir = self.workspace / substitute(inner.get("working-directory", "."), ctx)
            r = self._script(name, inner, inner.get("env") or {}, ctx, workdir, action_dir)
            result.stdout += r.stdout
            result.stderr += r.stderr
            if inner.get("id"):
                ctx["steps"][inner["id"]] = r.outputs
            if r.status != 0:
                failed = True
                result.status = r.status
        for key, spec in (action.get("outputs") or {}).items():
            result.outputs[key] = substitute(spec["value"], ctx)
        return result

    def _script(self, name, step, env_spec, ctx, workdir, action_dir=None) -> StepResult:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            output, envfile, script = tmp / "output", tmp / "env", tmp / "step.sh"
            output.touch()
            envfile.touch()
            script.write_text(substitute(step["run"], ctx))
            env = dict(self.env)
            env.update({k: substitute(v, ctx) for k, v in env_spec.items()})
            env.update(
                GITHUB_ACTIONS="true",
                CI="true",
                GITHUB_OUTPUT=str(output),
                GITHUB_ENV=str(envfile),
                GITHUB_WORKSPACE=str(self.workspace),
                GITHUB_RUN_ID="4242",
                GITHUB_REPOSITORY="example/lab-tests",
                GITHUB_SERVER_URL="https://github.com",
            )
            if action_dir is not None:
                env["GITHUB_ACTION_PATH"] = str(action_dir)
            proc = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            early = {"stdout": "", "stderr": ""}
            try:
                if self.cancel_at and not self.cancelled:
                    stream, text = self.cancel_at
                    for line in getattr(proc, stream):
                        early[stream] += line
                        if text in line:
                            self.cancelled = True
                            proc.send_signal(signal.SIGINT)
                            break
                stdout, stderr = proc.communicate(timeout=self.timeout)
            finally:
                proc.kill()
            outputs = read_commands_file(output)
            self.env.update(read_commands_file(envfile))
            return StepResult(name, True, proc.returncode, outputs, early["stdout"] + stdout, early["stderr"] + stderr)
