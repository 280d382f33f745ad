"""Shared plumbing for the E2B SDK acceptance scripts (sdk_sync.py, sdk_async.py).

Plain Python, no pytest: every check prints one line (PASS/FAIL), and the script ends with one JSON line
{"passed": N, "failed": M, "sandboxes": [ids...]} that the Rust harness parses. Exit status 0 only when
nothing failed.

Configuration (environment):
  E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY   required; read by the e2b SDK itself
  SANDWATCH_TEMPLATE                           template to create sandboxes from (default "default")
  SANDWATCH_WORKDIR                            the sandbox's writable workspace (default "/workspace")
  SANDWATCH_E2B_TEST_TIMEOUT                   whole-script watchdog in seconds (default 600)
"""

import json
import os
import secrets
import sys
import threading
import time
import traceback

REQUIRED_ENV = ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY")


class CheckFailed(AssertionError):
    pass


def need(cond, msg):
    """An assert that survives `python -O`."""
    if not cond:
        raise CheckFailed(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def expect_raises(fn, exc_types, what):
    """Call fn(); it must raise one of exc_types. Returns the exception."""
    try:
        result = fn()
    except exc_types as e:
        return e
    except Exception as e:  # wrong class: say which one, that is the interesting part
        raise CheckFailed(
            f"{what}: expected {_names(exc_types)}, got {type(e).__module__}.{type(e).__name__}: {e}"
        ) from e
    raise CheckFailed(f"{what}: expected {_names(exc_types)}, but it returned {short(result)}")


async def aexpect_raises(coro_fn, exc_types, what):
    try:
        result = await coro_fn()
    except exc_types as e:
        return e
    except Exception as e:
        raise CheckFailed(
            f"{what}: expected {_names(exc_types)}, got {type(e).__module__}.{type(e).__name__}: {e}"
        ) from e
    raise CheckFailed(f"{what}: expected {_names(exc_types)}, but it returned {short(result)}")


def _names(exc_types):
    if not isinstance(exc_types, tuple):
        exc_types = (exc_types,)
    return " or ".join(t.__name__ for t in exc_types)


def with_deadline(fn, seconds, what):
    """Run a blocking SDK call in a daemon thread and give up after `seconds` (a daemon that never ends a
    stream must fail the check, not hang the suite)."""
    box = {}

    def runner():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box["error"] = e

    t = threading.Thread(target=runner, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise CheckFailed(f"{what} did not finish within {seconds} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class Harness:
    def __init__(self, suite):
        self.suite = suite
        self.passed = 0
        self.failed = 0
        self.sandboxes = []
        self._lock = threading.Lock()
        self._done = False
        self.run_id = f"{suite}-{secrets.token_hex(4)}"

        missing = [k for k in REQUIRED_ENV if not os.environ.get(k)]
        if missing:
            print(f"FAIL configuration: missing environment variables {', '.join(missing)}", flush=True)
            self.failed += 1
            self.finish()
        if os.environ.get("E2B_DEBUG", "").lower() == "true":
            print("FAIL configuration: E2B_DEBUG=true makes the SDK skip the control plane", flush=True)
            self.failed += 1
            self.finish()

        self.template = os.environ.get("SANDWATCH_TEMPLATE") or "default"
        self.workdir = (os.environ.get("SANDWATCH_WORKDIR") or "/workspace").rstrip("/") or "/"
        self.api_key = os.environ["E2B_API_KEY"]
        bad = "e2b_" + secrets.token_hex(20)
        while bad == self.api_key:
            bad = "e2b_" + secrets.token_hex(20)
        self.bad_api_key = bad

        timeout = float(os.environ.get("SANDWATCH_E2B_TEST_TIMEOUT") or "600")
        self._watchdog = threading.Timer(timeout, self._on_watchdog, args=(timeout,))
        self._watchdog.daemon = True
        self._watchdog.start()
        print(
            f"# {suite}: api={os.environ['E2B_API_URL']} sandbox={os.environ['E2B_SANDBOX_URL']} "
            f"template={self.template} workdir={self.workdir} run={self.run_id}",
            flush=True,
        )

    # -- bookkeeping -------------------------------------------------------------------------------------

    def record_sandbox(self, sandbox_id):
        with self._lock:
            if sandbox_id and sandbox_id not in self.sandboxes:
                self.sandboxes.append(sandbox_id)

    def ok(self, name, detail=None):
        with self._lock:
            self.passed += 1
        print(f"PASS {name}" + (f" -- {detail}" if detail else ""), flush=True)

    def fail(self, name, detail):
        with self._lock:
            self.failed += 1
        print(f"FAIL {name} -- {detail}", flush=True)

    def _fail_exc(self, name, e):
        if isinstance(e, CheckFailed):
            self.fail(name, str(e))
        else:
            tb = traceback.extract_tb(e.__traceback__)
            where = ""
            for frame in reversed(tb):
                if os.path.basename(frame.filename).startswith(("sdk_", "_harness")):
                    where = f" (at {os.path.basename(frame.filename)}:{frame.lineno})"
                    break
            self.fail(name, f"{type(e).__module__}.{type(e).__name__}: {e}{where}")

    def check(self, name, fn):
        """Run one check. fn returns an optional detail string; any exception fails the check.
        Returns True when the check passed."""
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - a failing check must not stop the suite
            self._fail_exc(name, e)
            return False
        self.ok(name, detail)
        return True

    async def acheck(self, name, coro_fn):
        try:
            detail = await coro_fn()
        except Exception as e:  # noqa: BLE001
            self._fail_exc(name, e)
            return False
        self.ok(name, detail)
        return True

    def skip_as_failed(self, names, reason):
        for n in names:
            self.fail(n, f"not run: {reason}")

    # -- end ---------------------------------------------------------------------------------------------

    def summary(self):
        return json.dumps({"passed": self.passed, "failed": self.failed, "sandboxes": list(self.sandboxes)})

    def finish(self):
        with self._lock:
            if self._done:
                return
            self._done = True
        if getattr(self, "_watchdog", None) is not None:
            self._watchdog.cancel()
        print(self.summary(), flush=True)
        sys.stdout.flush()
        # os._exit: SDK daemon threads or a stuck stream must not keep the process alive.
        os._exit(0 if self.failed == 0 and self.passed > 0 else 1)

    def _on_watchdog(self, timeout):
        with self._lock:
            if self._done:
                return
            self.failed += 1
        print(f"FAIL watchdog -- the suite did not finish within {timeout:.0f} s", flush=True)
        self.finish()


def now_ts():
    return time.time()
