#!/usr/bin/env python3
"""Acceptance test: E2B's own Python SDK (sync `Sandbox`, PyPI `e2b` 2.63) against `sandwatch serve`.

Run by hand (see README.md in this directory):
    E2B_API_URL=http://127.0.0.1:P1 E2B_SANDBOX_URL=http://127.0.0.1:P2 E2B_API_KEY=e2b_... \
    SANDWATCH_TEMPLATE=default python3 tests/e2b/sdk_sync.py

One line per check (PASS/FAIL), then {"passed": N, "failed": M, "sandboxes": [...]}; exit 0 only if none failed.
"""

import datetime
import hashlib
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import (  # noqa: E402
    CheckFailed,
    Harness,
    eq,
    expect_raises,
    need,
    short,
    with_deadline,
)

H = Harness("sdk-sync")

try:
    import e2b
    from e2b import (
        AuthenticationException,
        CommandExitException,
        FileNotFoundException,
        FileType,
        NotFoundException,
        Sandbox,
        SandboxException,
        SandboxNotFoundException,
        SandboxNotRunningException,
        SandboxQuery,
        SandboxState,
    )
except Exception as e:  # noqa: BLE001
    H.fail("import e2b", f"{type(e).__name__}: {e}")
    H.finish()

from packaging.version import Version  # noqa: E402 (an e2b dependency)

T = H.template
W = H.workdir
RUN = H.run_id
MAIN_TIMEOUT = 180
PROBE = "probe-" + RUN
META = {"sandwatch-suite": "sdk-sync", "run": RUN}
DIR = f"{W}/{RUN}"

state = {}


def list_all(query=None, limit=None, **opts):
    """Every SandboxInfo the paginator yields (bounded, so a server that always returns a next token fails)."""
    p = Sandbox.list(query=query, limit=limit, **opts)
    out, pages = [], 0
    while p.has_next:
        out.extend(p.next_items())
        pages += 1
        need(pages <= 50, "Sandbox.list paginator returned more than 50 pages (x-next-token never ends?)")
    return out, pages


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


# --------------------------------------------------------------------------------------------- create


def t_create():
    t0 = time.time()
    sb = Sandbox.create(template=T, timeout=MAIN_TIMEOUT, metadata=META, envs={"SANDWATCH_E2B_PROBE": PROBE})
    H.record_sandbox(sb.sandbox_id)
    state["sb"] = sb
    need(isinstance(sb.sandbox_id, str) and sb.sandbox_id, f"sandbox_id is {sb.sandbox_id!r}")
    # every SDK feature used below is gated on envd >= 0.5.2 (close_stdin); 0.4.0 drops the implicit user
    need(sb._envd_version >= Version("0.5.2"), f"envdVersion {sb._envd_version} < 0.5.2 (SDK disables close_stdin)")
    return f"id={sb.sandbox_id} envd={sb._envd_version} in {time.time() - t0:.2f} s"


if not H.check("create(template, timeout, metadata, envs)", t_create):
    H.skip_as_failed(["everything else"], "Sandbox.create failed")
    H.finish()

sb = state["sb"]


def t_get_info():
    info = sb.get_info()
    eq(info.sandbox_id, sb.sandbox_id, "get_info().sandbox_id")
    need(T in (info.template_id, info.name), f"template {T!r} is neither templateID {info.template_id!r} nor alias {info.name!r}")
    eq(info.metadata, META, "get_info().metadata")
    eq(info.state, SandboxState.RUNNING, "get_info().state")
    need(info.cpu_count >= 1 and info.memory_mb >= 1, f"cpuCount={info.cpu_count} memoryMB={info.memory_mb}")
    eq(Version(info.envd_version), sb._envd_version, "get_info().envd_version vs create response")
    life = (info.end_at - info.started_at).total_seconds()
    need(MAIN_TIMEOUT - 15 <= life <= MAIN_TIMEOUT + 15, f"endAt - startedAt = {life:.1f} s, expected ~{MAIN_TIMEOUT} s (timeout is in seconds)")
    state["end_at_0"] = info.end_at
    return f"template={info.template_id} alias={info.name} lifetime={life:.0f}s"


H.check("get_info: template, metadata, state, endAt = startedAt + timeout", t_get_info)

# ------------------------------------------------------------------------------------------- commands


def t_env_visible():
    r = sb.commands.run("echo $SANDWATCH_E2B_PROBE", timeout=30)
    eq(r.exit_code, 0, "exit code")
    eq(r.stdout, PROBE + "\n", "stdout (create envs must reach commands)")


H.check("commands.run sees the envs given to create", t_env_visible)


def t_run_basic():
    r = sb.commands.run("echo out; echo err >&2", timeout=30)
    eq(r.exit_code, 0, "exit_code")
    eq(r.stdout, "out\n", "stdout")
    eq(r.stderr, "err\n", "stderr")
    need(r.error is None, f"error should be None on success, got {r.error!r}")


H.check("commands.run: exit code, stdout, stderr", t_run_basic)


def t_run_cwd_env():
    r = sb.commands.run("pwd", timeout=30)
    eq(r.stdout.strip(), W, "default cwd")
    r = sb.commands.run('echo "$A-$B"', envs={"A": "one", "B": "two words"}, timeout=30)
    eq(r.stdout, "one-two words\n", "per-command envs")
    r = sb.commands.run("pwd", cwd="/", timeout=30)
    eq(r.stdout.strip(), "/", "explicit cwd")


H.check("commands.run: default cwd is the workspace, per-command envs and cwd", t_run_cwd_env)


def t_on_stdout():
    chunks = []
    err_chunks = []
    t0 = time.time()
    r = sb.commands.run(
        "for i in 1 2 3; do echo line$i; sleep 0.4; done; echo done >&2",
        on_stdout=lambda s: chunks.append((time.time(), s)),
        on_stderr=lambda s: err_chunks.append((time.time(), s)),
        timeout=30,
    )
    t_end = time.time()
    eq("".join(c for _, c in chunks), "line1\nline2\nline3\n", "stdout joined from on_stdout callbacks, in order")
    eq(r.stdout, "line1\nline2\nline3\n", "result stdout")
    eq("".join(c for _, c in err_chunks), "done\n", "stderr joined from on_stderr callbacks")
    need(len(chunks) >= 2, f"expected the 3 lines in >= 2 callbacks (streamed), got {len(chunks)}: {short(chunks)}")
    lead = t_end - chunks[0][0]
    need(lead >= 0.6, f"first stdout callback came only {lead:.2f} s before the command finished: output is not streamed")
    return f"{len(chunks)} callbacks, first {lead:.2f} s before the end ({t_end - t0:.2f} s total)"


H.check("commands.run on_stdout/on_stderr: callbacks stream in order", t_on_stdout)


def t_nonzero_exit():
    e = expect_raises(
        lambda: sb.commands.run("echo partial; echo boom >&2; exit 7", timeout=30),
        CommandExitException,
        "commands.run('exit 7')",
    )
    need(isinstance(e, SandboxException), "CommandExitException must be a SandboxException")
    eq(e.exit_code, 7, "CommandExitException.exit_code")
    eq(e.stderr, "boom\n", "CommandExitException.stderr")
    eq(e.stdout, "partial\n", "CommandExitException.stdout")
    need(e.error, f"CommandExitException.error should carry envd's error string, got {e.error!r}")
    return f"error={e.error!r}"


H.check("commands.run non-zero exit raises CommandExitException", t_nonzero_exit)


def t_stdin_closed_by_default():
    # StartRequest.stdin=false: the process gets /dev/null; a pipe would make `cat` wait until the timeout
    r = with_deadline(lambda: sb.commands.run("cat; echo eof", timeout=20), 25, "foreground `cat` without stdin")
    eq(r.exit_code, 0, "exit code")
    eq(r.stdout, "eof\n", "stdout")


H.check("commands.run without stdin: stdin is /dev/null (StartRequest.stdin=false)", t_stdin_closed_by_default)


def read_until(handle, needle):
    buf = ""
    for out, _err, _pty in handle:
        if out:
            buf += out
        if needle in buf:
            return buf
    return buf


def t_background_stdin_kill():
    h = sb.commands.run("cat", background=True, stdin=True, timeout=60)
    need(isinstance(h.pid, int) and h.pid > 0, f"handle.pid is {h.pid!r}")
    pids = [p.pid for p in sb.commands.list()]
    need(h.pid in pids, f"commands.list() {pids} lacks pid {h.pid}")
    proc = next(p for p in sb.commands.list() if p.pid == h.pid)
    eq(proc.cmd, "/bin/bash", "ProcessInfo.cmd (the SDK runs /bin/bash -l -c <cmd>)")
    eq(proc.args, ["-l", "-c", "cat"], "ProcessInfo.args")
    h.send_stdin("ping\n")
    sb.commands.send_stdin(h.pid, b"pong\n")
    buf = with_deadline(lambda: read_until(h, "ping\npong\n"), 15, "echo of stdin through `cat`")
    eq(buf, "ping\npong\n", "cat's stdout after send_stdin x2")
    t_kill = time.time()
    eq(h.kill(), True, "handle.kill()")
    e = with_deadline(
        lambda: expect_raises(h.wait, CommandExitException, "wait() after kill"), 15, "end event after kill"
    )
    need(e.exit_code != 0, f"killed command reported exit_code {e.exit_code}")
    observed = time.time() - t_kill
    need(observed < 10, f"kill took {observed:.1f} s to be observed")
    deadline = time.time() + 5
    while h.pid in [p.pid for p in sb.commands.list()] and time.time() < deadline:
        time.sleep(0.2)
    need(h.pid not in [p.pid for p in sb.commands.list()], "killed pid still in commands.list()")
    eq(sb.commands.kill(h.pid), False, "commands.kill(dead pid) (Connect not_found -> False)")
    return f"pid={h.pid} exit_code={e.exit_code} error={e.error!r} observed {observed:.2f} s after kill"


H.check("background cat: send_stdin (handle + commands), kill observed, gone from list", t_background_stdin_kill)


def t_connect_close_stdin():
    h = sb.commands.run("cat", background=True, stdin=True, timeout=60)
    c = sb.commands.connect(h.pid, timeout=60)
    eq(c.pid, h.pid, "connect() handle pid")
    sb.commands.send_stdin(h.pid, "via-connect\n")
    got = with_deadline(lambda: read_until(c, "via-connect\n"), 15, "output on the connected handle")
    need("via-connect\n" in got, f"connected handle saw {got!r}")
    sb.commands.close_stdin(h.pid)
    r = with_deadline(c.wait, 15, "connected handle end after close_stdin")
    eq(r.exit_code, 0, "exit code of cat after EOF")
    r0 = with_deadline(h.wait, 15, "original handle end after close_stdin")
    eq(r0.exit_code, 0, "original handle exit code")
    need("via-connect\n" in r0.stdout, f"original handle stdout {r0.stdout!r}")


H.check("commands.connect(pid) + close_stdin: both handles see output and EOF", t_connect_close_stdin)

# ---------------------------------------------------------------------------------------------- files


def t_files_text():
    path = f"{DIR}/sub/hello.txt"
    text = "hello from sdk-sync\nsecond line ü\n"
    info = sb.files.write(path, text)
    eq(info.path, path, "WriteInfo.path")
    eq(info.name, "hello.txt", "WriteInfo.name")
    eq(sb.files.read(path), text, "files.read text")
    r = sb.commands.run(f"cat {path}", timeout=30)
    eq(r.stdout, text, "`cat` of a file written through files.write")
    sb.commands.run(f"printf from-cmd > {DIR}/from-cmd.txt", timeout=30)
    eq(sb.files.read(f"{DIR}/from-cmd.txt"), "from-cmd", "files.read of a file a command wrote")


H.check("files.write/read text (parents created, same filesystem as commands)", t_files_text)


def t_files_blob():
    path = f"{DIR}/blob.bin"
    blob = os.urandom(1 << 20) + b"\x00\xff\r\n"
    sb.files.write(path, blob)
    got = sb.files.read(path, format="bytes")
    need(isinstance(got, (bytes, bytearray)), f"format=bytes returned {type(got)}")
    eq(len(got), len(blob), "length of bytes read back")
    need(bytes(got) == blob, "1 MiB blob differs after round trip (format=bytes)")
    streamed = b"".join(sb.files.read(path, format="stream"))
    need(streamed == blob, f"1 MiB blob differs after round trip (format=stream, {len(streamed)} bytes)")
    want = hashlib.sha256(blob).hexdigest()
    r = sb.commands.run(
        f"python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],\"rb\").read()).hexdigest())' {path}",
        timeout=60,
    )
    eq(r.stdout.strip(), want, "sha256 computed inside the sandbox")
    return f"{len(blob)} bytes"


H.check("files.write/read bytes + stream: ~1 MiB binary round trip", t_files_blob)


def t_files_list_exists_remove():
    names = {e.name: e for e in sb.files.list(DIR)}
    for n in ("sub", "blob.bin", "from-cmd.txt"):
        need(n in names, f"files.list({DIR}) lacks {n}: {sorted(names)}")
    eq(names["sub"].type, FileType.DIR, "type of sub")
    eq(names["blob.bin"].type, FileType.FILE, "type of blob.bin")
    eq(names["blob.bin"].size, (1 << 20) + 4, "size of blob.bin")
    eq(names["blob.bin"].path, f"{DIR}/blob.bin", "path of blob.bin")
    eq(sb.files.exists(f"{DIR}/from-cmd.txt"), True, "exists(existing)")
    eq(sb.files.exists(f"{DIR}/nope.txt"), False, "exists(missing)")
    sb.files.remove(f"{DIR}/from-cmd.txt")
    eq(sb.files.exists(f"{DIR}/from-cmd.txt"), False, "exists after remove")
    expect_raises(lambda: sb.files.read(f"{DIR}/from-cmd.txt"), FileNotFoundException, "read(removed)")
    expect_raises(lambda: sb.files.remove(f"{DIR}/from-cmd.txt"), NotFoundException, "remove(removed)")


H.check("files.list/exists/remove (+ missing file raises FileNotFoundException)", t_files_list_exists_remove)


def t_files_dir_rename_info():
    eq(sb.files.make_dir(f"{DIR}/made/deep"), True, "make_dir(new)")
    eq(sb.files.make_dir(f"{DIR}/made/deep"), False, "make_dir(existing)")
    sb.files.write(f"{DIR}/made/a.txt", "12345")
    moved = sb.files.rename(f"{DIR}/made/a.txt", f"{DIR}/made/b.txt")
    eq(moved.path, f"{DIR}/made/b.txt", "rename() EntryInfo.path")
    eq(sb.files.exists(f"{DIR}/made/a.txt"), False, "old path after rename")
    info = sb.files.get_info(f"{DIR}/made/b.txt")
    eq(info.type, FileType.FILE, "get_info type")
    eq(info.size, 5, "get_info size")
    eq(info.name, "b.txt", "get_info name")
    eq(sb.files.get_info(f"{DIR}/made/deep").type, FileType.DIR, "get_info of a directory")


H.check("files.make_dir/rename/get_info", t_files_dir_rename_info)

# ------------------------------------------------------------------------------------ control plane


def t_metrics():
    deadline = time.time() + 15
    metrics = sb.get_metrics()
    while not metrics and time.time() < deadline:
        time.sleep(1)
        metrics = sb.get_metrics()
    need(len(metrics) >= 1, "get_metrics() returned no entry within 15 s")
    m = metrics[-1]
    need(m.cpu_count >= 1, f"cpu_count={m.cpu_count}")
    need(0 <= m.cpu_used_pct <= 100 * max(1, m.cpu_count), f"cpu_used_pct={m.cpu_used_pct}")
    need(m.mem_total > 0 and 0 <= m.mem_used <= m.mem_total, f"mem_used={m.mem_used} mem_total={m.mem_total}")
    need(isinstance(m.timestamp, datetime.datetime), f"timestamp={m.timestamp!r}")
    age = abs((utcnow() - m.timestamp).total_seconds())
    need(age < 300, f"latest metric is {age:.0f} s away from now")
    return f"{len(metrics)} entries, cpu={m.cpu_used_pct}% of {m.cpu_count}, mem={m.mem_used}/{m.mem_total}"


H.check("get_metrics: >= 1 entry with cpu and memory fields", t_metrics)


def t_set_timeout():
    sb.set_timeout(600)
    info = sb.get_info()
    left = (info.end_at - utcnow()).total_seconds()
    need(560 <= left <= 640, f"after set_timeout(600) endAt is {left:.0f} s away")
    need(info.end_at > state.get("end_at_0", info.end_at - datetime.timedelta(seconds=1)), "endAt did not move")
    sb.set_timeout(MAIN_TIMEOUT)
    left = (sb.get_info().end_at - utcnow()).total_seconds()
    need(MAIN_TIMEOUT - 40 <= left <= MAIN_TIMEOUT + 40, f"after set_timeout({MAIN_TIMEOUT}) endAt is {left:.0f} s away (must also shorten)")
    return f"endAt now {left:.0f} s away"


H.check("set_timeout extends and shortens endAt", t_set_timeout)

# a second sandbox: pagination, then kill
def t_create_second():
    b = Sandbox.create(template=T, timeout=120, metadata={**META, "role": "second"})
    H.record_sandbox(b.sandbox_id)
    state["b"] = b
    need(b.sandbox_id != sb.sandbox_id, "two creates returned the same id")
    return f"id={b.sandbox_id}"


H.check("create a second sandbox", t_create_second)


def t_list_filters():
    items, _ = list_all(SandboxQuery(metadata=META, state=[SandboxState.RUNNING]))
    mine = [s for s in items if s.sandbox_id == sb.sandbox_id]
    need(len(mine) == 1, f"Sandbox.list(metadata=run, state=running) lacks the sandbox: {[s.sandbox_id for s in items]}")
    eq(mine[0].state, SandboxState.RUNNING, "listed state")
    eq(mine[0].metadata, META, "listed metadata")
    for s in items:
        for k, v in META.items():
            eq(s.metadata.get(k), v, f"metadata filter leaked sandbox {s.sandbox_id}")
    other, _ = list_all(SandboxQuery(metadata={"run": RUN + "-other"}))
    need(all(s.sandbox_id != sb.sandbox_id for s in other), "non-matching metadata filter still lists the sandbox")
    paused, _ = list_all(SandboxQuery(metadata=META, state=[SandboxState.PAUSED]))
    need(all(s.sandbox_id != sb.sandbox_id for s in paused), "state=paused lists a running sandbox")
    everything, _ = list_all()
    need(any(s.sandbox_id == sb.sandbox_id for s in everything), "unfiltered Sandbox.list() lacks the sandbox")
    return f"{len(items)} matching, {len(everything)} in total"


H.check("Sandbox.list filters by metadata and state", t_list_filters)


def t_list_pagination():
    need("b" in state, "second sandbox missing")
    items, pages = list_all(SandboxQuery(metadata={"run": RUN}), limit=1)
    ids = [s.sandbox_id for s in items]
    need(pages >= 2, f"limit=1 over 2 sandboxes took {pages} page(s): x-next-token not sent?")
    eq(sorted(set(ids)), sorted({sb.sandbox_id, state["b"].sandbox_id}), "ids over all pages")
    eq(len(ids), len(set(ids)), "no sandbox repeated across pages")
    return f"{pages} pages"


H.check("Sandbox.list pagination (limit=1, x-next-token)", t_list_pagination)


def t_pause_resume():
    sb.files.write(f"{DIR}/before-pause.txt", "kept")
    bg = sb.commands.run("sleep 600", background=True, timeout=0)
    state["bg_pid"] = bg.pid
    bg.disconnect()
    eq(sb.pause(), True, "pause()")
    eq(sb.get_info().state, SandboxState.PAUSED, "state after pause")
    eq(sb.pause(), False, "pause() of a paused sandbox (409 -> False)")
    paused, _ = list_all(SandboxQuery(metadata=META, state=[SandboxState.PAUSED]))
    need(any(s.sandbox_id == sb.sandbox_id for s in paused), "Sandbox.list(state=paused) lacks the paused sandbox")
    resumed = Sandbox.connect(sb.sandbox_id, timeout=MAIN_TIMEOUT)
    eq(resumed.sandbox_id, sb.sandbox_id, "connect() id")
    eq(sb.get_info().state, SandboxState.RUNNING, "state after connect()")
    r = resumed.commands.run("echo resumed; cat " + f"{DIR}/before-pause.txt", timeout=30)
    eq(r.stdout, "resumed\nkept", "command on the resumed sandbox")
    r = sb.commands.run("echo old-handle", timeout=30)
    eq(r.stdout, "old-handle\n", "command through the pre-pause Sandbox object")
    pids = [p.pid for p in sb.commands.list()]
    need(bg.pid in pids, f"background process {bg.pid} did not survive pause/resume: {pids}")
    sb.commands.kill(bg.pid)


H.check("pause, then Sandbox.connect resumes; commands work; processes survive", t_pause_resume)


def t_kill_second():
    b = state["b"]
    eq(b.kill(), True, "kill()")
    eq(b.is_running(), False, "is_running() after kill (envd /health must answer 502)")
    items, _ = list_all(SandboxQuery(metadata={"run": RUN}))
    need(all(s.sandbox_id != b.sandbox_id for s in items), "killed sandbox still in Sandbox.list()")
    expect_raises(lambda: Sandbox.get_info(b.sandbox_id), SandboxNotFoundException, "get_info(killed)")
    eq(Sandbox.kill(b.sandbox_id), False, "kill() again (404 -> False)")
    e = expect_raises(lambda: b.commands.run("echo x", timeout=20), SandboxNotRunningException, "commands.run on a killed sandbox")
    return f"command on killed sandbox: {type(e).__name__}"


H.check("kill: is_running False, gone from list, 404 on get_info, commands raise", t_kill_second)

# ---------------------------------------------------------------------------------------- error paths


def t_bad_key():
    expect_raises(lambda: Sandbox.create(template=T, timeout=30, api_key=H.bad_api_key), AuthenticationException, "create with a bad key")
    expect_raises(lambda: Sandbox.list(api_key=H.bad_api_key).next_items(), AuthenticationException, "list with a bad key")
    expect_raises(lambda: Sandbox.get_info(sb.sandbox_id, api_key=H.bad_api_key), AuthenticationException, "get_info with a bad key")
    expect_raises(lambda: Sandbox.kill(sb.sandbox_id, api_key=H.bad_api_key), AuthenticationException, "kill with a bad key")
    eq(sb.is_running(), True, "sandbox still running after the bad-key kill")


H.check("bad API key raises AuthenticationException (401)", t_bad_key)


def t_unknown_sandbox():
    ghost = "sbxnotthere" + RUN.replace("-", "")
    e = expect_raises(lambda: Sandbox.connect(ghost), NotFoundException, "Sandbox.connect(unknown id)")
    need(isinstance(e, SandboxNotFoundException), f"{type(e).__name__} is not SandboxNotFoundException")
    expect_raises(lambda: Sandbox.get_info(ghost), SandboxNotFoundException, "get_info(unknown id)")
    expect_raises(lambda: Sandbox.set_timeout(ghost, 30), SandboxNotFoundException, "set_timeout(unknown id)")
    eq(Sandbox.kill(ghost), False, "kill(unknown id)")


H.check("unknown sandbox id: connect raises NotFoundException (404)", t_unknown_sandbox)


def t_expiry():
    t0 = time.time()
    x = Sandbox.create(template=T, timeout=2, metadata={**META, "role": "expiry"})
    H.record_sandbox(x.sandbox_id)
    r = x.commands.run("echo alive", timeout=10)
    eq(r.stdout, "alive\n", "command right after create")
    time.sleep(max(0.0, 3.0 - (time.time() - t0)))
    deadline = time.time() + 5
    while x.is_running() and time.time() < deadline:
        time.sleep(0.25)
    dead_after = time.time() - t0
    eq(x.is_running(), False, f"is_running() {dead_after:.1f} s after create with timeout=2")
    e = expect_raises(lambda: x.commands.run("echo late", timeout=20), SandboxNotRunningException, "commands.run after expiry")
    need(isinstance(e, e2b.TimeoutException), "SandboxNotRunningException must be a TimeoutException")
    expect_raises(lambda: x.files.read(f"{W}/x"), SandboxNotRunningException, "files.read after expiry")
    items, _ = list_all(SandboxQuery(metadata={**META, "role": "expiry"}))
    need(all(not (s.sandbox_id == x.sandbox_id and s.state == SandboxState.RUNNING) for s in items), "expired sandbox listed as running")
    expect_raises(lambda: x.get_info(), SandboxNotFoundException, "get_info after expiry")
    return f"dead {dead_after:.1f} s after create; command raised {type(e).__name__}"


H.check("timeout=2: dead after ~3 s (SandboxNotRunningException, not listed running, 404)", t_expiry)

# ------------------------------------------------------------------------------------------- cleanup


def t_kill_main():
    eq(sb.kill(), True, "kill()")
    eq(sb.is_running(), False, "is_running() after kill")


H.check("kill the main sandbox", t_kill_main)

for key in ("b",):
    if key in state:
        try:
            state[key].kill()
        except Exception:  # noqa: BLE001
            pass

H.finish()
