"""The CI integrations, run for real against the real binary (tests/integrations.sh runs this).

- integrations/rentabot-lock.sh: lock, unlock, extend, with; waiting in the queue;
  always unlocking; auth; errors and exit codes.
- integrations/github-action: the actions' steps run as GitHub's runner runs them
  (gha.py), including a failing step that still unlocks.
- integrations/jenkins: withRentabot.groovy runs in a stand-in for Jenkins
  (jenkins.groovy) whose steps are real: the body fails, the lock is still released.
- README § CI integrations: the Python example runs.

Each test class starts its own service on port 0 (the address is read from the line it
logs once it listens). No test sleeps for time: each waits for a condition (a line on a
pipe, a state on the server) with a bound.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import gha  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "integrations" / "rentabot-lock.sh"
JENKINS = ROOT / "integrations" / "jenkins"
ACTION = ROOT / "integrations" / "github-action"
BIN = Path(os.environ.get("RENTABOT_BIN", ROOT / "target" / "debug" / "rentabot"))
if not BIN.is_absolute():
    BIN = ROOT / BIN
PATIENCE = 30  # seconds: the bound on any wait for a condition

USER_KEY = "integrations-user-key-0123456789"
READONLY_KEY = "integrations-readonly-key-012345"
AUTH = f"""
api_keys:
  - {{name: ci, key: "{USER_KEY}", role: user}}
  - {{name: watcher, key: "{READONLY_KEY}", role: readonly}}
  - {{name: ops, key: "integrations-admin-key-0123456789", role: admin}}
rate_limit: {{requests_per_second: 100000, burst: 100000}}
anonymous_rate_limit: {{requests_per_second: 100000, burst: 100000}}
"""
ADMIN_KEY = "integrations-admin-key-0123456789"


class Server:
    """The real binary on port 0, serving descriptors/example.yaml."""

    def __init__(self, auth: bool = False):
        self.tmp = tempfile.TemporaryDirectory()
        args = [str(BIN), "--config", str(ROOT / "descriptors/example.yaml"), "--host", "127.0.0.1",
                "--port", "0", "--log-level", "warn,rentabot::app=info"]
        if auth:
            path = Path(self.tmp.name) / "auth.yaml"
            path.write_text(AUTH)
            args += ["--auth-config", str(path)]
        self.log = open(Path(self.tmp.name) / "log", "w+")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + PATIENCE
        self.url = None
        for line in self.proc.stdout:
            self.log.write(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
            if time.monotonic() > deadline:
                break
        if not self.url:
            self.stop()
            raise RuntimeError(f"the service did not start: {BIN}")
        # The rest of its output, to the log file, without blocking it.
        self.drain = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=self.log)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(PATIENCE)
        if getattr(self, "drain", None):
            self.drain.wait(PATIENCE)
        self.proc.stdout.close()
        self.log.close()
        self.tmp.cleanup()

    def api(self, method: str, path: str, body=None, key: str | None = ADMIN_KEY):
        req = urllib.request.Request(self.url + "/api/v1" + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("X-API-Key", key)
        try:
            with urllib.request.urlopen(req, timeout=PATIENCE) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def resource(self, rid: int) -> dict:
        status, body = self.api("GET", f"/resources/{rid}")
        assert status == 200, body
        return body["resource"]

    def locked(self, rid: int) -> bool:
        return self.resource(rid)["lock-token"] != ""

    def events(self):
        """The event stream from this moment on (the service subscribes before it answers)."""
        req = urllib.request.Request(self.url + "/api/v1/events", headers={"X-API-Key": ADMIN_KEY})
        return urllib.request.urlopen(req, timeout=PATIENCE)

    @staticmethod
    def wait_for_event(stream, what: str, match) -> dict:
        """The first event of `stream` that `match` accepts; each read is bounded by PATIENCE."""
        for line in stream:
            if line.startswith(b"data: "):
                event = json.loads(line[len(b"data: "):])
                if match(event):
                    return event
        raise AssertionError(f"the event stream ended before {what}")


def env_lines(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class Base(unittest.TestCase):
    auth = False

    @classmethod
    def setUpClass(cls):
        cls.server = Server(auth=cls.auth)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        # Every test starts from a lab with nothing locked and nothing queued.
        s = self.server
        for r in s.api("GET", "/resources")[1]["resources"]:
            if r["lock-token"] != "":
                s.api("POST", f"/resources/{r['id']}/force-unlock", {"reason": "test setup"})
        for r in s.api("GET", "/reservations?status=pending")[1]["reservations"]:
            s.api("DELETE", f"/reservations/{r['reservation_id']}")

    def tmpdir(self) -> Path:
        """A directory removed after the test."""
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        return Path(tmp.name)

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RENTABOT_", "GITHUB_", "BUILD_"))}
        env["RENTABOT_URL"] = self.server.url
        env.update(extra)
        return env

    def script(self, *args, env=None, stdin=None, timeout=PATIENCE) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *args], env=env or self.env(), input=stdin,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, *args, env=None) -> subprocess.Popen:
        """The script in a process group of its own, so that what it leaves behind shows."""
        proc = subprocess.Popen([str(SCRIPT), *args], env=env or self.env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.addCleanup(self.nothing_left, proc)
        return proc

    def nothing_left(self, proc: subprocess.Popen):
        """Once the script has ended, no process of its group (CMD, the extender, a
        pause) outlives it for long."""
        proc.wait(PATIENCE)

        def group():
            left = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == proc.pid and fields[0] != "Z":
                    left.append(stat.parent.name)
            return left

        # Each one's exit, through a pidfd (readable once the process has ended): no polling.
        deadline = time.monotonic() + PATIENCE
        for pid in group():
            try:
                fd = os.pidfd_open(int(pid))
            except ProcessLookupError:
                continue
            try:
                left = max(0.0, deadline - time.monotonic())
                if not select.select([fd], [], [], left)[0]:
                    raise AssertionError(f"process {pid} of group {proc.pid} still runs: {group()}")
            finally:
                os.close(fd)

    def read_until(self, stream, needle: str) -> str:
        """Lines from a pipe until one contains needle (bounded by the caller's timeout)."""
        seen = []
        for line in stream:
            seen.append(line)
            if needle in line:
                return "".join(seen)
        raise AssertionError(f"ended without {needle!r}: {''.join(seen)}")


class LockScript(Base):
    def test_lock_by_tags_prints_the_lock_and_unlock_releases_it(self):
        got = self.script("lock", "--tags", "board,x86", "--ttl", "120", "--note", "ci test")
        self.assertEqual(got.returncode, 0, got.stderr)
        lock = env_lines(got.stdout)
        self.assertEqual(set(lock), {"RENTABOT_RESOURCE_ID", "RENTABOT_RESOURCE_NAME", "RENTABOT_RESOURCE_ENDPOINT",
                                     "RENTABOT_LOCK_TOKEN", "RENTABOT_FENCING_TOKEN", "RENTABOT_LOCK_EXPIRES_AT"})
        self.assertEqual(lock["RENTABOT_RESOURCE_ID"], "3")
        self.assertEqual(lock["RENTABOT_RESOURCE_NAME"], "board-x86-01")
        self.assertEqual(lock["RENTABOT_RESOURCE_ENDPOINT"], "ssh://ci@10.0.10.21")
        seen = self.server.resource(3)
        self.assertEqual(seen["lock-token"], lock["RENTABOT_LOCK_TOKEN"])
        self.assertEqual(str(seen["fencing-token"]), lock["RENTABOT_FENCING_TOKEN"])
        self.assertEqual(seen["lock-note"], "ci test")
        self.assertRegex(seen["lock-holder"], r".+@.+")  # user@host outside CI

        got = self.script("unlock", env=self.env(**lock))
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertFalse(self.server.locked(3))

    def test_lock_by_id_name_and_expr_and_the_output_formats(self):
        out = Path(self.tmpdir()) / "github_env"
        got = self.script("lock", "--id", "2", "--format", "json", "--output", str(out), "--output", str(out))
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertEqual(json.loads(got.stdout)["RENTABOT_RESOURCE_NAME"], "board-arm-02")
        self.assertEqual(out.read_text().count("RENTABOT_RESOURCE_ID=2\n"), 2)
        got = self.script("lock", "--name", "printer-lab", "--ttl", "60", "--format", "shell")
        self.assertEqual(got.returncode, 0, got.stderr)
        shown = subprocess.run(["bash", "-c", got.stdout + 'echo "$RENTABOT_RESOURCE_NAME"'],
                               capture_output=True, text=True)
        self.assertEqual(shown.stdout.strip(), "printer-lab")
        got = self.script("lock", "--expr", "linux && !windows && x86")
        self.assertEqual(env_lines(got.stdout)["RENTABOT_RESOURCE_ID"], "3", got.stderr)

    def test_a_second_client_waits_in_the_queue_until_the_first_unlocks(self):
        first = env_lines(self.script("lock", "--tags", "printer", "--ttl", "300").stdout)
        second = self.start("lock", "--tags", "printer", "--ttl", "300", "--wait", "60")
        try:
            said = self.read_until(second.stderr, "waiting in the queue")
            self.assertIn("position 1", said)
            self.assertIsNone(second.poll(), "still waiting")
            self.assertEqual(self.script("unlock", env=self.env(**first)).returncode, 0)
            out, err = second.communicate(timeout=PATIENCE)
        finally:
            second.kill()
        self.assertEqual(second.returncode, 0, err)
        got = env_lines(out)
        self.assertEqual(got["RENTABOT_RESOURCE_ID"], "5")
        self.assertNotEqual(got["RENTABOT_LOCK_TOKEN"], first["RENTABOT_LOCK_TOKEN"])
        self.assertGreater(int(got["RENTABOT_FENCING_TOKEN"]), int(first["RENTABOT_FENCING_TOKEN"]))
        self.assertEqual(self.server.resource(5)["lock-token"], got["RENTABOT_LOCK_TOKEN"])

    def test_by_id_it_retries_until_the_resource_is_free(self):
        first = env_lines(self.script("lock", "--id", "4").stdout)
        second = self.start("lock", "--id", "4", "--poll", "0.1", "--wait", "60")
        try:
            self.read_until(second.stderr, "busy: Cannot lock")
            self.assertIsNone(second.poll())
            self.assertEqual(self.script("unlock", env=self.env(**first)).returncode, 0)
            out, err = second.communicate(timeout=PATIENCE)
        finally:
            second.kill()
        self.assertEqual(second.returncode, 0, err)
        self.assertEqual(env_lines(out)["RENTABOT_RESOURCE_ID"], "4")

    def test_a_wait_that_runs_out_is_exit_69_and_leaves_no_reservation(self):
        self.script("lock", "--tags", "printer", "--ttl", "300")
        got = self.script("lock", "--tags", "printer", "--ttl", "300", "--wait", "1")
        self.assertEqual(got.returncode, 69, got.stderr)
        self.assertIn("still busy after waiting 1s in the queue", got.stderr)
        got = self.script("lock", "--tags", "printer", "--wait", "0")
        self.assertEqual(got.returncode, 69, got.stderr)
        self.assertIn("(403 all_matches_locked)", got.stderr)
        self.assertEqual(self.server.api("GET", "/reservations?status=pending")[1]["reservations"], [])

    def test_the_script_has_no_command_substitution(self):
        # Bash 5.2.15 (Debian 12) may run a trap while it parses a `$(...)` and then
        # fail to parse the trap ("unexpected EOF while looking for matching `)'"): a
        # SIGTERM at that moment ended the script with 2, its reservation left waiting
        # (seen once in CI, in the test below). The script reads output through files.
        code = [line.split("#", 1)[0] if line.lstrip().startswith("#") else line
                for line in SCRIPT.read_text().splitlines()]
        found = [(n, line) for n, line in enumerate(code, 1)
                 if re.search(r"\$\((?!\()", line) or "`" in line.split("#")[0]]
        self.assertEqual(found, [], "use capture VAR CMD ... instead")

    def test_stopped_while_waiting_it_withdraws_its_reservation(self):
        self.script("lock", "--tags", "printer", "--ttl", "300")
        waiting = self.start("lock", "--tags", "printer", "--ttl", "300", "--wait", "60")
        self.read_until(waiting.stderr, "waiting in the queue")
        self.assertEqual(len(self.server.api("GET", "/reservations?status=pending")[1]["reservations"]), 1)
        waiting.send_signal(signal.SIGTERM)
        _, err = waiting.communicate(timeout=PATIENCE)
        self.assertEqual(waiting.returncode, 143, err)
        self.assertIn("withdrawn", err)
        self.assertEqual(self.server.api("GET", "/reservations?status=pending")[1]["reservations"], [])

    def test_stopped_while_retrying_by_id_it_ends_at_once(self):
        self.script("lock", "--id", "4")
        waiting = self.start("lock", "--id", "4", "--poll", "1000", "--wait", "3000")
        self.read_until(waiting.stderr, "retrying every 1000s")
        waiting.send_signal(signal.SIGTERM)
        _, err = waiting.communicate(timeout=PATIENCE)  # not after the 1000 s pause
        self.assertEqual(waiting.returncode, 143, err)

    def test_a_lock_the_caller_cannot_be_given_is_released(self):
        got = self.script("lock", "--id", "4", "--output", "/nonexistent/dir/env")
        self.assertNotEqual(got.returncode, 0)
        self.assertIn("unlocked resource 4", got.stderr)
        self.assertFalse(self.server.locked(4))

    def test_refusals_say_what_to_fix_with_distinct_exit_codes(self):
        cases = [
            (["lock"], 64, "give exactly one of --id, --name, --tags, --expr"),
            (["lock", "--tags", "arm", "--ttl", "soon"], 64, "--ttl must be a whole number"),
            (["lock", "--tags", "arm", "--bogus"], 64, "unknown argument '--bogus'"),
            (["launch"], 64, "unknown subcommand 'launch'"),
            (["with", "--tags", "arm"], 64, "'with' needs -- and a command"),
            (["unlock"], 64, "give --id or set RENTABOT_RESOURCE_ID"),
            (["lock", "--id", "99"], 65, "Resource not found (404 resource_not_found)"),
            (["lock", "--tags", "no-such-tag"], 65, "no_match"),
            (["lock", "--tags", "printer", "--ttl", "3600"], 65, "unsatisfiable"),
            (["lock", "--expr", "linux &&"], 65, "invalid_expr"),
        ]
        for args, code, message in cases:
            with self.subTest(args=args):
                got = self.script(*args)
                self.assertEqual(got.returncode, code, got.stderr)
                self.assertIn(message, got.stderr)
                self.assertTrue(got.stderr.startswith("rentabot-lock: "), got.stderr)

    def test_help_prints_the_usage(self):
        got = self.script("--help")
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertTrue(got.stdout.startswith("rentabot-lock.sh: lock a rentabot resource"), got.stdout)
        self.assertIn("Exit status: 0 done; 64 bad usage", got.stdout)
        self.assertNotIn("set -euo", got.stdout)

    def test_an_unreachable_service_is_exit_75(self):
        got = self.script("lock", "--tags", "arm", env=self.env(RENTABOT_URL="http://127.0.0.1:9"))
        self.assertEqual(got.returncode, 75, got.stderr)
        self.assertIn("cannot reach rentabot at http://127.0.0.1:9", got.stderr)

    def test_unlock_of_a_lock_that_already_ended_warns_and_succeeds(self):
        lock = env_lines(self.script("lock", "--id", "1").stdout)
        self.server.api("POST", "/resources/1/force-unlock", {"reason": "test"})
        got = self.script("unlock", env=self.env(**lock))
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertIn("already ended", got.stderr)

    def test_extend_moves_the_expiry(self):
        lock = env_lines(self.script("lock", "--id", "1", "--ttl", "60").stdout)
        before = self.server.resource(1)["lock-expires-at"]
        got = self.script("extend", "--ttl", "3000", env=self.env(**lock))
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertGreater(self.server.resource(1)["lock-expires-at"], before)


class With(Base):
    def test_the_command_runs_with_the_lock_and_its_status_is_the_exit_status(self):
        got = self.script("with", "--tags", "board,arm", "--", "bash", "-c",
                          'echo "$RENTABOT_RESOURCE_ID $RENTABOT_RESOURCE_NAME $RENTABOT_LOCK_TOKEN"; exit 3')
        self.assertEqual(got.returncode, 3, got.stderr)
        rid, name, token = got.stdout.split()
        self.assertEqual((rid, name), ("1", "board-arm-01"))
        self.assertIn("unlocked resource 1", got.stderr)
        self.assertFalse(self.server.locked(1))

    def test_stdin_reaches_the_command_and_the_lock_is_extended_while_it_runs(self):
        events = self.server.events()
        proc = self.start("with", "--id", "3", "--ttl", "3", "--", "bash", "-c", 'echo ready; read -r line; echo "got $line"')
        try:
            self.read_until(proc.stdout, "ready")
            # Extended every ttl/3 = 1 s, while the command still waits for its input.
            with events:
                self.server.wait_for_event(events, "an extension of resource 3",
                                           lambda e: e["type"] == "extended" and e["resource_id"] == 3)
            out, err = proc.communicate("hello\n", timeout=PATIENCE)
        finally:
            proc.kill()
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(out.strip(), "got hello")
        self.assertFalse(self.server.locked(3))

    def test_sigterm_stops_the_command_and_still_unlocks(self):
        marker = Path(self.tmpdir()) / "got-term"
        proc = self.start("with", "--id", "2", "--", "bash", "-c",
                          f'trap "touch {marker}; exit 5" TERM; echo ready; while :; do sleep 0.1; done')
        try:
            self.read_until(proc.stdout, "ready")
            self.assertTrue(self.server.locked(2))
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=PATIENCE)
        finally:
            proc.kill()
        self.assertEqual(proc.returncode, 5, err)
        self.assertTrue(marker.exists(), "the command got SIGTERM")
        self.assertIn("unlocked resource 2", err)
        self.assertFalse(self.server.locked(2))

    def test_sigint_too(self):
        proc = self.start("with", "--id", "2", "--", "bash", "-c", "echo ready; while :; do sleep 0.1; done")
        try:
            self.read_until(proc.stdout, "ready")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=PATIENCE)
        finally:
            proc.kill()
        self.assertEqual(proc.returncode, 143, err)  # the command's death by SIGTERM
        self.assertFalse(self.server.locked(2))

    def test_a_lost_lock_stops_the_command_with_exit_70(self):
        proc = self.start("with", "--id", "2", "--ttl", "3", "--", "bash", "-c", "echo ready; while :; do sleep 0.1; done")
        try:
            self.read_until(proc.stdout, "ready")
            self.server.api("POST", "/resources/2/force-unlock", {"reason": "board died"})
            _, err = proc.communicate(timeout=PATIENCE)
        finally:
            proc.kill()
        self.assertEqual(proc.returncode, 70, err)
        self.assertIn("is lost", err)

    def test_a_command_that_cannot_start_still_unlocks(self):
        got = self.script("with", "--id", "2", "--", "/no/such/command")
        self.assertEqual(got.returncode, 127, got.stderr)
        self.assertFalse(self.server.locked(2))


class Auth(Base):
    auth = True

    def test_a_valid_key_locks_and_unlocks(self):
        env = self.env(RENTABOT_API_KEY=USER_KEY)
        got = self.script("with", "--tags", "printer", "--ttl", "60", "--", "true", env=env)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertFalse(self.server.locked(5))
        lock = env_lines(self.script("lock", "--id", "1", env=env).stdout)
        self.assertEqual(self.server.resource(1)["lock-token"], lock["RENTABOT_LOCK_TOKEN"])
        self.assertEqual(self.script("unlock", env={**env, **lock}).returncode, 0)
        self.assertFalse(self.server.locked(1))

    def test_the_key_never_appears_on_a_command_line(self):
        # curl gets it on stdin (its config), so `ps` cannot show it.
        env = self.env(RENTABOT_API_KEY=USER_KEY)
        proc = self.start("with", "--id", "1", "--", "bash", "-c", "echo ready; read -r _", env=env)
        try:
            self.read_until(proc.stdout, "ready")
            lines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.assertNotIn(USER_KEY, lines)
            proc.communicate("\n", timeout=PATIENCE)
        finally:
            proc.kill()
        self.assertEqual(proc.returncode, 0)

    def test_a_wrong_or_missing_key_is_a_clear_error(self):
        cases = [
            ({"RENTABOT_API_KEY": "not-a-valid-key-at-all-0000"}, "the API key was refused", "401 invalid_api_key"),
            ({}, "the API key was refused", "401 missing_credentials"),
            ({"RENTABOT_API_KEY": READONLY_KEY}, "this key's role may not do that", "403 forbidden"),
        ]
        for extra, message, code in cases:
            for args in (["lock", "--tags", "printer"], ["lock", "--id", "5"]):
                with self.subTest(extra=extra, args=args):
                    got = self.script(*args, env=self.env(**extra))
                    self.assertEqual(got.returncode, 77, got.stderr)
                    self.assertIn(message, got.stderr)
                    self.assertIn(code, got.stderr)
        self.assertFalse(self.server.locked(5))


class GitHubAction(Base):
    auth = True

    def job(self, steps) -> gha.Job:
        return gha.Job(env=self.env(), workspace=Path(self.tmpdir()), timeout=PATIENCE).run(steps)

    def test_run_input_runs_under_the_lock_and_outputs_name_it(self):
        out = Path(self.tmpdir()) / "seen"
        job = self.job([
            {"id": "board", "uses": str(ACTION), "with": {
                "url": self.server.url, "api-key": USER_KEY, "tags": "board,arm", "ttl": "600", "note": "gha",
                "run": f'echo "$RENTABOT_RESOURCE_NAME $RENTABOT_FENCING_TOKEN" > {out}\ncurl -sf -H "X-API-Key: $KEY" "$URL/api/v1/resources/$RENTABOT_RESOURCE_ID" | jq -r \'.resource | ."lock-note", ."lock-holder"\' >> {out}'}},
            {"run": 'echo "id=${{ steps.board.outputs.resource-id }} name=${{ steps.board.outputs.resource-name }}"'},
        ])
        first, after = job.results
        self.assertEqual(first.status, 0, first.stderr)
        name, fencing, note, holder = out.read_text().split()
        self.assertEqual((name, note), ("board-arm-01", "gha"))
        self.assertEqual(holder, "https://github.com/example/lab-tests/actions/runs/4242")
        self.assertEqual(first.outputs, {"resource-id": "1", "resource-name": "board-arm-01", "fencing-token": fencing})
        self.assertEqual(after.stdout.strip(), "id=1 name=board-arm-01")
        self.assertFalse(self.server.locked(1))
        self.assertIn("::add-mask::", first.stdout)

    def env(self, **extra):
        return super().env(URL=self.server.url, KEY=USER_KEY, **extra)

    def test_a_failing_run_fails_the_step_and_still_unlocks(self):
        job = self.job([
            {"uses": str(ACTION), "with": {"url": self.server.url, "api-key": USER_KEY, "tags": "printer",
                                           "ttl": "60", "run": "echo flashing\nfalse\necho never"}},
            {"run": "echo skipped"},
            {"if": "${{ always() }}", "run": "echo cleanup"},
        ])
        step, skipped, cleanup = job.results
        self.assertEqual(step.status, 1)
        self.assertEqual(step.stdout.splitlines()[-1], "flashing")
        self.assertFalse(skipped.ran)
        self.assertEqual(cleanup.stdout.strip(), "cleanup")
        self.assertTrue(job.failed)
        self.assertFalse(self.server.locked(5))

    def test_lock_then_unlock_with_if_always_after_a_failing_step(self):
        job = self.job([
            {"id": "lock", "uses": str(ACTION / "lock"), "with": {
                "url": self.server.url, "api-key": USER_KEY, "expr": "psu", "ttl": "600"}},
            {"run": 'curl -sf -H "X-API-Key: $KEY" "$URL/api/v1/resources/$RENTABOT_RESOURCE_ID" | jq -r \'.resource."lock-token"\' > token\n'
                    'test "$(cat token)" = "$RENTABOT_LOCK_TOKEN"\necho "${{ steps.lock.outputs.resource-name }}"\nexit 1'},
            {"uses": str(ACTION / "unlock"), "if": "always()", "with": {"url": self.server.url, "api-key": USER_KEY}},
        ])
        lock, use, unlock = job.results
        self.assertEqual(lock.status, 0, lock.stderr)
        self.assertEqual(lock.outputs["resource-name"], "power-switch")
        self.assertEqual(use.status, 1, use.stderr)
        self.assertEqual(use.stdout.strip(), "power-switch")  # the token matched
        self.assertEqual(unlock.status, 0, unlock.stderr)
        self.assertIn("unlocked resource 6", unlock.stderr)
        self.assertFalse(self.server.locked(6))

    def test_unlock_after_a_lock_step_that_failed_does_nothing(self):
        job = self.job([
            {"uses": str(ACTION / "lock"), "with": {"url": self.server.url, "api-key": "wrong-key-wrong-key", "tags": "arm"}},
            {"uses": str(ACTION / "unlock"), "if": "always()", "with": {"url": self.server.url}},
        ])
        lock, unlock = job.results
        self.assertEqual(lock.status, 77, lock.stderr)
        self.assertIn("the API key was refused", lock.stderr)
        self.assertEqual(unlock.status, 0, unlock.stderr)
        self.assertIn("no lock to release", unlock.stdout)

    def test_a_cancelled_run_stops_the_command_and_unlocks(self):
        job = gha.Job(env=self.env(), workspace=Path(self.tmpdir()), timeout=PATIENCE, cancel_at=("stdout", "flashing"))
        job.run([
            {"uses": str(ACTION), "with": {"url": self.server.url, "api-key": USER_KEY, "id": "2", "ttl": "60",
                                           "run": "echo flashing\nwhile :; do sleep 0.1; done"}},
            {"run": "echo skipped"},
            {"if": "always()", "uses": str(ACTION / "unlock"), "with": {"url": self.server.url}},
        ])
        step, skipped, unlock = job.results
        self.assertTrue(job.cancelled)
        self.assertNotEqual(step.status, 0)
        self.assertIn("unlocked resource 2", step.stderr)
        self.assertFalse(skipped.ran)
        self.assertTrue(unlock.ran)
        self.assertFalse(self.server.locked(2))

    def test_cancelled_while_waiting_the_lock_action_withdraws_its_reservation(self):
        self.script("lock", "--tags", "printer", "--ttl", "300", env=self.env(RENTABOT_API_KEY=USER_KEY))
        job = gha.Job(env=self.env(), workspace=Path(self.tmpdir()), timeout=PATIENCE, cancel_at=("stderr", "waiting in the queue"))
        job.run([{"uses": str(ACTION / "lock"), "with": {
            "url": self.server.url, "api-key": USER_KEY, "tags": "printer", "ttl": "300"}}])
        self.assertTrue(job.cancelled)
        self.assertEqual(job.results[0].status, 130, job.results[0].stderr)
        self.assertIn("withdrawn", job.results[0].stderr)
        self.assertEqual(self.server.api("GET", "/reservations?status=pending")[1]["reservations"], [])

    def test_inputs_cannot_inject_shell(self):
        marker = Path(self.tmpdir()) / "injected"
        job = self.job([{"uses": str(ACTION), "with": {
            "url": self.server.url, "api-key": USER_KEY, "tags": "printer", "ttl": "60",
            "note": f'"; touch {marker}; echo "', "run": "true"}}])
        self.assertEqual(job.results[0].status, 0, job.results[0].stderr)
        self.assertFalse(marker.exists())


class Jenkins(Base):
    auth = True

    def pipeline(self, text: str, **env) -> subprocess.CompletedProcess:
        path = Path(self.tmpdir()) / "Jenkinsfile"
        path.write_text(textwrap.dedent(text))
        env = {"JENKINS_CREDENTIALS": f"rentabot-key={USER_KEY}",
               "BUILD_URL": "https://jenkins.example.org/job/nightly/7/", **env}
        return subprocess.run(["groovy", str(ROOT / "tests/integrations/jenkins.groovy"), str(JENKINS), str(path)],
                              env=self.env(**env),
                              capture_output=True, text=True, timeout=PATIENCE * 2)

    def test_the_body_runs_under_the_lock_and_it_is_released(self):
        out = Path(self.tmpdir()) / "seen"
        got = self.pipeline(f"""
            def result = withRentabot(url: env.RENTABOT_URL, tags: 'board,arm', ttl: 7200,
                                      credentialsId: 'rentabot-key', note: 'nightly') {{
                sh 'echo "$RENTABOT_RESOURCE_ID $RENTABOT_RESOURCE_NAME $RENTABOT_LOCK_TOKEN" > {out}'
                'body result'
            }}
            echo "RESULT ${{result}}"
        """)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertIn("RESULT body result", got.stderr)
        rid, name, token = out.read_text().split()
        self.assertEqual((rid, name), ("1", "board-arm-01"))
        self.assertNotIn(token, got.stderr)  # the token stays out of the build log
        self.assertNotIn(USER_KEY, got.stderr)
        self.assertFalse(self.server.locked(1))
        entry = self.server.api("GET", "/audit?type=locked&limit=1")[1]["entries"][0]
        self.assertEqual(entry["actor"], "ci")

    def test_a_failing_body_still_unlocks_and_fails_the_build(self):
        got = self.pipeline("""
            withRentabot(url: env.RENTABOT_URL, id: 4, credentialsId: 'rentabot-key') {
                sh 'curl -sf -H "X-API-Key: nobody" "$RENTABOT_URL/health" > /dev/null'
                error('flashing failed')
            }
        """)
        self.assertEqual(got.returncode, 1)
        self.assertIn("PIPELINE FAILED: flashing failed", got.stderr)
        self.assertIn("unlocked resource 4", got.stderr)
        self.assertFalse(self.server.locked(4))

    def test_parameters_are_checked(self):
        cases = [
            ("withRentabot(url: env.RENTABOT_URL, tag: 'arm') { }", "unknown parameter(s) tag"),
            ("withRentabot(url: env.RENTABOT_URL) { }", "give exactly one of tags, expr, name, id (got none)"),
            ("withRentabot(url: env.RENTABOT_URL, id: 1, name: 'x') { }", "(got name, id)"),
            ("withRentabot(tags: 'arm') { }", "give url"),
            ("withRentabot(url: env.RENTABOT_URL, tags: 'arm', credentialsId: 'rentabot-key', wait: 0,\n"
             "             note: '$(touch /tmp/rentabot-injected)') { sh 'true' }", None),
        ]
        for text, message in cases:
            with self.subTest(text=text):
                got = self.pipeline(text, **({"RENTABOT_URL": ""} if "give url" in (message or "") else {}))
                if message:
                    self.assertEqual(got.returncode, 1, got.stderr)
                    self.assertIn(message, got.stderr)
                else:
                    self.assertEqual(got.returncode, 0, got.stderr)
                    self.assertFalse(Path("/tmp/rentabot-injected").exists())

    def test_a_wrong_credential_is_a_clear_error(self):
        got = self.pipeline("withRentabot(url: env.RENTABOT_URL, tags: 'arm', credentialsId: 'rentabot-key') { sh 'true' }",
                            JENKINS_CREDENTIALS="rentabot-key=not-the-right-key-000")
        self.assertEqual(got.returncode, 1)
        self.assertIn("the API key was refused", got.stderr)
        self.assertIn("401 invalid_api_key", got.stderr)

    def test_the_library_ships_the_same_script(self):
        self.assertEqual((JENKINS / "resources/org/rentabot/rentabot-lock.sh").read_bytes(), SCRIPT.read_bytes())


class Readme(Base):
    """README § CI integrations: every example there runs, against the example lab."""

    def blocks(self, lang: str) -> list:
        text = (ROOT / "README.md").read_text()
        start = text.index("\n## CI integrations")
        end = text.find("\n## ", start + 1)
        return re.findall(rf"```{lang}\n(.*?)```", text[start:end if end > 0 else None], re.S)

    def workspace(self) -> Path:
        """A directory with the examples' job scripts: they print the endpoint they got."""
        ws = Path(self.tmpdir())
        for name in ("flash-and-test.sh", "soak.sh"):
            (ws / name).write_text('#!/bin/sh\necho "testing ${1:-$RENTABOT_RESOURCE_ENDPOINT}"\n')
            (ws / name).chmod(0o755)
        return ws

    def test_the_script_examples_run(self):
        script, curl = self.blocks("bash")
        script = script.replace("https://rentabot.example.com", self.server.url).replace("RENTABOT_API_KEY=…", "RENTABOT_API_KEY=")
        script = script.replace("integrations/rentabot-lock.sh", str(SCRIPT))
        got = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.workspace(), env=self.env(),
                             capture_output=True, text=True, timeout=PATIENCE)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertEqual(got.stdout.split("\n"), ["testing ssh://pi@10.0.10.11", "testing ssh://ci@10.0.10.21", ""])
        self.assertFalse(self.server.locked(1) or self.server.locked(3))

    def test_the_curl_example_runs(self):
        _, curl = self.blocks("bash")
        got = subprocess.run(["bash", "-euo", "pipefail", "-c", curl], env=self.env(), capture_output=True,
                             text=True, timeout=PATIENCE)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertIn("flashing the board at ssh://pi@10.0.10.11", got.stdout)
        self.assertFalse(self.server.locked(1))

    def test_the_curl_example_waits_its_turn(self):
        _, curl = self.blocks("bash")
        held = env_lines(self.script("lock", "--id", "1").stdout)
        self.script("lock", "--id", "2")
        events = self.server.events()
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", curl], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            with events:
                self.server.wait_for_event(events, "the queued reservation",
                                           lambda e: e["type"] == "reservation_created")
            self.script("unlock", env=self.env(**held))
            out, err = proc.communicate(timeout=PATIENCE)
        finally:
            proc.kill()
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("flashing the board at ssh://pi@10.0.10.11", out)
        self.assertFalse(self.server.locked(1))

    def test_the_python_example_runs(self):
        (python,) = self.blocks("python")
        got = subprocess.run([sys.executable, "-c", python], env=self.env(), capture_output=True, text=True,
                             timeout=PATIENCE)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertIn("flashing board-arm-01 at ssh://pi@10.0.10.11", got.stdout)
        self.assertFalse(self.server.locked(1))

    def test_the_jenkins_example_runs(self):
        (groovy,) = self.blocks("groovy")
        groovy = groovy.replace("@Library('rentabot') _", "").replace("https://rentabot.example.com", self.server.url)
        pipeline = self.workspace() / "Jenkinsfile"
        pipeline.write_text(groovy.replace("./flash-and-test.sh", str(pipeline.parent / "flash-and-test.sh")))
        got = subprocess.run(["groovy", str(ROOT / "tests/integrations/jenkins.groovy"), str(JENKINS), str(pipeline)],
                             env=self.env(JENKINS_CREDENTIALS="rentabot-api-key=any-key-auth-is-off"),
                             capture_output=True, text=True, timeout=PATIENCE * 2)
        self.assertEqual(got.returncode, 0, got.stderr)
        self.assertIn("testing ssh://pi@10.0.10.11", got.stdout)
        self.assertFalse(self.server.locked(1))

    def test_the_github_workflow_runs(self):
        (workflow,) = self.blocks("yaml")
        workflow = workflow.replace("your-org/rentabot/integrations/github-action", str(ACTION)).replace("@v1", "")
        workflow = workflow.replace("${{ vars.RENTABOT_URL }}", self.server.url)
        workflow = workflow.replace("${{ secrets.RENTABOT_API_KEY }}", "")
        jobs = gha.yaml.safe_load(workflow)["jobs"]
        self.assertEqual(list(jobs), ["flash", "soak"])
        for name, job in jobs.items():
            with self.subTest(job=name):
                ran = gha.Job(env=self.env(), workspace=self.workspace(), timeout=PATIENCE).run(job["steps"])
                self.assertFalse(ran.failed, [(r.name, r.status, r.stderr) for r in ran.results])
                self.assertTrue(all(r.ran for r in ran.results))
                self.assertIn("testing ", "".join(r.stdout for r in ran.results))
                self.assertEqual([i for i in range(1, 7) if self.server.locked(i)], [], [(r.name, r.status, r.stdout, r.stderr) for r in ran.results])


if __name__ == "__main__":
    unittest.main()
