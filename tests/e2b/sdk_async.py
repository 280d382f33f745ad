#!/usr/bin/env python3
"""Acceptance test: E2B's own Python SDK (async `AsyncSandbox`, PyPI `e2b` 2.63) against `sandwatch serve`.

Run by hand (see README.md in this directory):
    E2B_API_URL=http://127.0.0.1:P1 E2B_SANDBOX_URL=http://127.0.0.1:P2 E2B_API_KEY=e2b_... \
    SANDWATCH_TEMPLATE=default python3 tests/e2b/sdk_async.py

One line per check (PASS/FAIL), then {"passed": N, "failed": M, "sandboxes": [...]}; exit 0 only if none failed.
The async flavour differs from the sync one on the wire where it matters: background commands consume their
stream in a task (callbacks while the caller does other things), watch_dir would be a server stream, and the
event loop runs several streams at once (one HTTP/1.1 connection each over http://).
"""

import asyncio
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
    aexpect_raises,
    eq,
    need,
    short,
)

H = Harness("sdk-async")

try:
    import e2b
    from e2b import (
        AsyncSandbox,
        AuthenticationException,
        CommandExitException,
        FileNotFoundException,
        FileType,
        NotFoundException,
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
META = {"sandwatch-suite": "sdk-async", "run": RUN}
DIR = f"{W}/{RUN}"

state = {}


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


async def list_all(query=None, limit=None, **opts):
    p = AsyncSandbox.list(query=query, limit=limit, **opts)
    out, pages = [], 0
    while p.has_next:
        out.extend(await p.next_items())
        pages += 1
        need(pages <= 50, "AsyncSandbox.list paginator returned more than 50 pages (x-next-token never ends?)")
    return out, pages


async def wait_for(coro, seconds, what):
    try:
        return await asyncio.wait_for(coro, seconds)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{what} did not finish within {seconds} s") from None


async def until(pred, seconds, what):
    deadline = time.time() + seconds
    while not pred():
        if time.time() > deadline:
            raise CheckFailed(f"{what} not seen within {seconds} s")
        await asyncio.sleep(0.05)


async def main():
    # ----------------------------------------------------------------------------------------- create
    async def t_create():
        t0 = time.time()
        sb = await AsyncSandbox.create(
            template=T, timeout=MAIN_TIMEOUT, metadata=META, envs={"SANDWATCH_E2B_PROBE": PROBE}
        )
        H.record_sandbox(sb.sandbox_id)
        state["sb"] = sb
        need(isinstance(sb.sandbox_id, str) and sb.sandbox_id, f"sandbox_id is {sb.sandbox_id!r}")
        need(sb._envd_version >= Version("0.5.2"), f"envdVersion {sb._envd_version} < 0.5.2 (SDK disables close_stdin)")
        return f"id={sb.sandbox_id} envd={sb._envd_version} in {time.time() - t0:.2f} s"

    if not await H.acheck("create(template, timeout, metadata, envs)", t_create):
        H.skip_as_failed(["everything else"], "AsyncSandbox.create failed")
        return
    sb = state["sb"]

    async def t_get_info():
        info = await sb.get_info()
        eq(info.sandbox_id, sb.sandbox_id, "get_info().sandbox_id")
        need(T in (info.template_id, info.name), f"template {T!r} is neither templateID {info.template_id!r} nor alias {info.name!r}")
        eq(info.metadata, META, "get_info().metadata")
        eq(info.state, SandboxState.RUNNING, "get_info().state")
        need(info.cpu_count >= 1 and info.memory_mb >= 1, f"cpuCount={info.cpu_count} memoryMB={info.memory_mb}")
        life = (info.end_at - info.started_at).total_seconds()
        need(MAIN_TIMEOUT - 15 <= life <= MAIN_TIMEOUT + 15, f"endAt - startedAt = {life:.1f} s, expected ~{MAIN_TIMEOUT} s")
        return f"template={info.template_id} lifetime={life:.0f}s"

    await H.acheck("get_info: template, metadata, state, endAt = startedAt + timeout", t_get_info)

    # --------------------------------------------------------------------------------------- commands
    async def t_env_visible():
        r = await sb.commands.run("echo $SANDWATCH_E2B_PROBE", timeout=30)
        eq(r.exit_code, 0, "exit code")
        eq(r.stdout, PROBE + "\n", "stdout (create envs must reach commands)")

    await H.acheck("commands.run sees the envs given to create", t_env_visible)

    async def t_run_basic():
        r = await sb.commands.run("echo out; echo err >&2", timeout=30)
        eq(r.exit_code, 0, "exit_code")
        eq(r.stdout, "out\n", "stdout")
        eq(r.stderr, "err\n", "stderr")
        r = await sb.commands.run("pwd", timeout=30)
        eq(r.stdout.strip(), W, "default cwd")
        r = await sb.commands.run('echo "$A"', envs={"A": "per-command"}, timeout=30)
        eq(r.stdout, "per-command\n", "per-command envs")

    await H.acheck("commands.run: exit code, stdout, stderr, default cwd, envs", t_run_basic)

    async def t_on_stdout():
        chunks, err_chunks = [], []

        async def on_err(s):  # async callbacks are awaited by the SDK
            err_chunks.append((time.time(), s))

        t0 = time.time()
        r = await sb.commands.run(
            "for i in 1 2 3; do echo line$i; sleep 0.4; done; echo done >&2",
            on_stdout=lambda s: chunks.append((time.time(), s)),
            on_stderr=on_err,
            timeout=30,
        )
        t_end = time.time()
        eq("".join(c for _, c in chunks), "line1\nline2\nline3\n", "stdout joined from on_stdout callbacks, in order")
        eq(r.stdout, "line1\nline2\nline3\n", "result stdout")
        eq("".join(c for _, c in err_chunks), "done\n", "stderr from the async on_stderr callback")
        need(len(chunks) >= 2, f"expected >= 2 stdout callbacks (streamed), got {len(chunks)}: {short(chunks)}")
        lead = t_end - chunks[0][0]
        need(lead >= 0.6, f"first stdout callback came only {lead:.2f} s before the command finished: output is not streamed")
        return f"{len(chunks)} callbacks, first {lead:.2f} s before the end ({t_end - t0:.2f} s total)"

    await H.acheck("commands.run on_stdout/on_stderr: callbacks stream in order", t_on_stdout)

    async def t_nonzero_exit():
        e = await aexpect_raises(
            lambda: sb.commands.run("echo partial; echo boom >&2; exit 7", timeout=30),
            CommandExitException,
            "commands.run('exit 7')",
        )
        need(isinstance(e, SandboxException), "CommandExitException must be a SandboxException")
        eq(e.exit_code, 7, "exit_code")
        eq(e.stderr, "boom\n", "stderr")
        eq(e.stdout, "partial\n", "stdout")
        return f"error={e.error!r}"

    await H.acheck("commands.run non-zero exit raises CommandExitException", t_nonzero_exit)

    async def t_concurrent():
        t0 = time.time()
        rs = await wait_for(
            asyncio.gather(*(sb.commands.run(f"sleep 1; echo n{i}", timeout=30) for i in range(4))),
            20,
            "4 concurrent commands",
        )
        eq([r.stdout for r in rs], [f"n{i}\n" for i in range(4)], "stdout of each concurrent command")
        took = time.time() - t0
        need(took < 3.5, f"4 x `sleep 1` run concurrently took {took:.1f} s: streams are serialised")
        return f"{took:.2f} s"

    await H.acheck("4 concurrent commands.run (parallel streams)", t_concurrent)

    async def t_stdin_closed_by_default():
        r = await wait_for(sb.commands.run("cat; echo eof", timeout=20), 25, "foreground `cat` without stdin")
        eq(r.stdout, "eof\n", "stdout")

    await H.acheck("commands.run without stdin: stdin is /dev/null (StartRequest.stdin=false)", t_stdin_closed_by_default)

    async def t_background_stdin_kill():
        got = []
        h = await sb.commands.run("cat", background=True, stdin=True, on_stdout=got.append, timeout=60)
        need(isinstance(h.pid, int) and h.pid > 0, f"handle.pid is {h.pid!r}")
        pids = [p.pid for p in await sb.commands.list()]
        need(h.pid in pids, f"commands.list() {pids} lacks pid {h.pid}")
        await h.send_stdin("ping\n")
        await sb.commands.send_stdin(h.pid, b"pong\n")
        await until(lambda: "ping\npong\n" in "".join(got), 15, "cat's echo of stdin in the on_stdout callback")
        eq(h.exit_code, None, "exit_code of a running command")
        t_kill = time.time()
        eq(await h.kill(), True, "handle.kill()")
        e = await wait_for(aexpect_raises(h.wait, CommandExitException, "wait() after kill"), 15, "end event after kill")
        need(e.exit_code != 0, f"killed command reported exit_code {e.exit_code}")
        observed = time.time() - t_kill
        deadline = time.time() + 5
        while h.pid in [p.pid for p in await sb.commands.list()] and time.time() < deadline:
            await asyncio.sleep(0.2)
        need(h.pid not in [p.pid for p in await sb.commands.list()], "killed pid still in commands.list()")
        eq(await sb.commands.kill(h.pid), False, "commands.kill(dead pid)")
        return f"pid={h.pid} exit_code={e.exit_code} observed {observed:.2f} s after kill"

    await H.acheck("background cat: on_stdout task, send_stdin, kill observed, gone from list", t_background_stdin_kill)

    async def t_connect_close_stdin():
        h = await sb.commands.run("cat", background=True, stdin=True, timeout=60)
        seen = []
        c = await sb.commands.connect(h.pid, timeout=60, on_stdout=seen.append)
        eq(c.pid, h.pid, "connect() handle pid")
        await sb.commands.send_stdin(h.pid, "via-connect\n")
        await until(lambda: "via-connect\n" in "".join(seen), 15, "output on the connected handle")
        await sb.commands.close_stdin(h.pid)
        r = await wait_for(c.wait(), 15, "connected handle end after close_stdin")
        eq(r.exit_code, 0, "exit code after EOF")
        r0 = await wait_for(h.wait(), 15, "original handle end")
        need("via-connect\n" in r0.stdout, f"original handle stdout {r0.stdout!r}")

    await H.acheck("commands.connect(pid) + close_stdin: both handles see output and EOF", t_connect_close_stdin)

    # ------------------------------------------------------------------------------------------ files
    async def t_files():
        path = f"{DIR}/sub/hello.txt"
        text = "hello from sdk-async\n"
        info = await sb.files.write(path, text)
        eq(info.path, path, "WriteInfo.path")
        eq(await sb.files.read(path), text, "files.read text")
        eq((await sb.commands.run(f"cat {path}", timeout=30)).stdout, text, "`cat` of a written file")
        blob = os.urandom(1 << 20) + b"\x00\xff\r\n"
        await sb.files.write(f"{DIR}/blob.bin", blob)
        got = await sb.files.read(f"{DIR}/blob.bin", format="bytes")
        need(bytes(got) == blob, f"1 MiB blob differs after round trip (format=bytes, {len(got)} bytes)")
        parts = []
        async with await sb.files.read(f"{DIR}/blob.bin", format="stream") as stream:
            async for chunk in stream:
                parts.append(chunk)
        need(b"".join(parts) == blob, "1 MiB blob differs after round trip (format=stream)")
        r = await sb.commands.run(
            f"python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],\"rb\").read()).hexdigest())' {DIR}/blob.bin",
            timeout=60,
        )
        eq(r.stdout.strip(), hashlib.sha256(blob).hexdigest(), "sha256 inside the sandbox")
        names = {e.name: e for e in await sb.files.list(DIR)}
        need({"sub", "blob.bin"} <= set(names), f"files.list({DIR}) = {sorted(names)}")
        eq(names["blob.bin"].type, FileType.FILE, "type of blob.bin")
        eq(names["blob.bin"].size, len(blob), "size of blob.bin")
        eq(names["sub"].type, FileType.DIR, "type of sub")
        eq(await sb.files.exists(path), True, "exists(existing)")
        eq(await sb.files.exists(f"{DIR}/nope"), False, "exists(missing)")
        await sb.files.remove(path)
        eq(await sb.files.exists(path), False, "exists after remove")
        await aexpect_raises(lambda: sb.files.read(path), FileNotFoundException, "read(removed)")
        eq(await sb.files.make_dir(f"{DIR}/made"), True, "make_dir(new)")
        eq(await sb.files.make_dir(f"{DIR}/made"), False, "make_dir(existing)")
        moved = await sb.files.rename(f"{DIR}/blob.bin", f"{DIR}/made/blob2.bin")
        eq(moved.path, f"{DIR}/made/blob2.bin", "rename() path")
        eq((await sb.files.get_info(f"{DIR}/made/blob2.bin")).size, len(blob), "get_info size after rename")
        return f"{len(blob)} bytes"

    await H.acheck("files: text, ~1 MiB bytes + stream, list, exists, remove, make_dir, rename, get_info", t_files)

    # ---------------------------------------------------------------------------------- control plane
    async def t_metrics():
        deadline = time.time() + 15
        metrics = await sb.get_metrics()
        while not metrics and time.time() < deadline:
            await asyncio.sleep(1)
            metrics = await sb.get_metrics()
        need(len(metrics) >= 1, "get_metrics() returned no entry within 15 s")
        m = metrics[-1]
        need(m.cpu_count >= 1, f"cpu_count={m.cpu_count}")
        need(0 <= m.cpu_used_pct <= 100 * max(1, m.cpu_count), f"cpu_used_pct={m.cpu_used_pct}")
        need(m.mem_total > 0 and 0 <= m.mem_used <= m.mem_total, f"mem_used={m.mem_used} mem_total={m.mem_total}")
        return f"{len(metrics)} entries"

    await H.acheck("get_metrics: >= 1 entry with cpu and memory fields", t_metrics)

    async def t_set_timeout():
        await sb.set_timeout(600)
        left = ((await sb.get_info()).end_at - utcnow()).total_seconds()
        need(560 <= left <= 640, f"after set_timeout(600) endAt is {left:.0f} s away")
        await AsyncSandbox.set_timeout(sb.sandbox_id, MAIN_TIMEOUT)
        left = ((await sb.get_info()).end_at - utcnow()).total_seconds()
        need(MAIN_TIMEOUT - 40 <= left <= MAIN_TIMEOUT + 40, f"after set_timeout({MAIN_TIMEOUT}) endAt is {left:.0f} s away")

    await H.acheck("set_timeout extends and shortens endAt", t_set_timeout)

    async def t_second():
        b = await AsyncSandbox.create(template=T, timeout=120, metadata={**META, "role": "second"})
        H.record_sandbox(b.sandbox_id)
        state["b"] = b
        need(b.sandbox_id != sb.sandbox_id, "two creates returned the same id")

    await H.acheck("create a second sandbox", t_second)

    async def t_list():
        items, _ = await list_all(SandboxQuery(metadata=META, state=[SandboxState.RUNNING]))
        mine = [s for s in items if s.sandbox_id == sb.sandbox_id]
        need(len(mine) == 1, f"AsyncSandbox.list(metadata, running) lacks the sandbox: {[s.sandbox_id for s in items]}")
        eq(mine[0].metadata, META, "listed metadata")
        other, _ = await list_all(SandboxQuery(metadata={"run": RUN + "-other"}))
        need(all(s.sandbox_id != sb.sandbox_id for s in other), "non-matching metadata filter lists the sandbox")
        paused, _ = await list_all(SandboxQuery(metadata=META, state=[SandboxState.PAUSED]))
        need(all(s.sandbox_id != sb.sandbox_id for s in paused), "state=paused lists a running sandbox")
        need("b" in state, "second sandbox missing")
        all_pages, pages = await list_all(SandboxQuery(metadata={"run": RUN}), limit=1)
        need(pages >= 2, f"limit=1 over 2 sandboxes took {pages} page(s)")
        eq(sorted(s.sandbox_id for s in all_pages), sorted([sb.sandbox_id, state["b"].sandbox_id]), "ids over all pages")
        return f"{pages} pages"

    await H.acheck("AsyncSandbox.list: metadata + state filters, pagination", t_list)

    async def t_pause_resume():
        await sb.files.write(f"{DIR}/before-pause.txt", "kept")
        bg = await sb.commands.run("sleep 600", background=True, timeout=0)
        await bg.disconnect()
        eq(await sb.pause(), True, "pause()")
        eq((await sb.get_info()).state, SandboxState.PAUSED, "state after pause")
        eq(await sb.pause(), False, "pause() of a paused sandbox")
        resumed = await AsyncSandbox.connect(sb.sandbox_id, timeout=MAIN_TIMEOUT)
        eq(resumed.sandbox_id, sb.sandbox_id, "connect() id")
        eq((await sb.get_info()).state, SandboxState.RUNNING, "state after connect()")
        r = await resumed.commands.run(f"echo resumed; cat {DIR}/before-pause.txt", timeout=30)
        eq(r.stdout, "resumed\nkept", "command on the resumed sandbox")
        pids = [p.pid for p in await sb.commands.list()]
        need(bg.pid in pids, f"background process {bg.pid} did not survive pause/resume: {pids}")
        await sb.commands.kill(bg.pid)

    await H.acheck("pause, then AsyncSandbox.connect resumes; commands work; processes survive", t_pause_resume)

    async def t_kill_second():
        b = state["b"]
        eq(await b.kill(), True, "kill()")
        eq(await b.is_running(), False, "is_running() after kill")
        items, _ = await list_all(SandboxQuery(metadata={"run": RUN}))
        need(all(s.sandbox_id != b.sandbox_id for s in items), "killed sandbox still listed")
        await aexpect_raises(lambda: AsyncSandbox.get_info(b.sandbox_id), SandboxNotFoundException, "get_info(killed)")
        eq(await AsyncSandbox.kill(b.sandbox_id), False, "kill() again")
        await aexpect_raises(lambda: b.commands.run("echo x", timeout=20), SandboxNotRunningException, "commands.run on a killed sandbox")

    await H.acheck("kill: is_running False, gone from list, 404 on get_info, commands raise", t_kill_second)

    # ------------------------------------------------------------------------------------ error paths
    async def t_bad_key():
        await aexpect_raises(lambda: AsyncSandbox.create(template=T, timeout=30, api_key=H.bad_api_key), AuthenticationException, "create with a bad key")
        await aexpect_raises(lambda: AsyncSandbox.list(api_key=H.bad_api_key).next_items(), AuthenticationException, "list with a bad key")
        await aexpect_raises(lambda: AsyncSandbox.kill(sb.sandbox_id, api_key=H.bad_api_key), AuthenticationException, "kill with a bad key")
        eq(await sb.is_running(), True, "sandbox still running after the bad-key kill")

    await H.acheck("bad API key raises AuthenticationException (401)", t_bad_key)

    async def t_unknown():
        ghost = "sbxnotthere" + RUN.replace("-", "")
        e = await aexpect_raises(lambda: AsyncSandbox.connect(ghost), NotFoundException, "AsyncSandbox.connect(unknown id)")
        need(isinstance(e, SandboxNotFoundException), f"{type(e).__name__} is not SandboxNotFoundException")
        await aexpect_raises(lambda: AsyncSandbox.get_info(ghost), SandboxNotFoundException, "get_info(unknown id)")
        eq(await AsyncSandbox.kill(ghost), False, "kill(unknown id)")

    await H.acheck("unknown sandbox id: connect raises NotFoundException (404)", t_unknown)

    async def t_expiry():
        t0 = time.time()
        x = await AsyncSandbox.create(template=T, timeout=2, metadata={**META, "role": "expiry"})
        H.record_sandbox(x.sandbox_id)
        eq((await x.commands.run("echo alive", timeout=10)).stdout, "alive\n", "command right after create")
        await asyncio.sleep(max(0.0, 3.0 - (time.time() - t0)))
        deadline = time.time() + 5
        while await x.is_running() and time.time() < deadline:
            await asyncio.sleep(0.25)
        dead_after = time.time() - t0
        eq(await x.is_running(), False, f"is_running() {dead_after:.1f} s after create with timeout=2")
        e = await aexpect_raises(lambda: x.commands.run("echo late", timeout=20), SandboxNotRunningException, "commands.run after expiry")
        need(isinstance(e, e2b.TimeoutException), "SandboxNotRunningException must be a TimeoutException")
        items, _ = await list_all(SandboxQuery(metadata={**META, "role": "expiry"}))
        need(all(not (s.sandbox_id == x.sandbox_id and s.state == SandboxState.RUNNING) for s in items), "expired sandbox listed as running")
        await aexpect_raises(x.get_info, SandboxNotFoundException, "get_info after expiry")
        return f"dead {dead_after:.1f} s after create; command raised {type(e).__name__}"

    await H.acheck("timeout=2: dead after ~3 s (SandboxNotRunningException, not listed running, 404)", t_expiry)

    async def t_kill_main():
        eq(await sb.kill(), True, "kill()")
        eq(await sb.is_running(), False, "is_running() after kill")

    await H.acheck("kill the main sandbox", t_kill_main)

    if "b" in state:
        try:
            await state["b"].kill()
        except Exception:  # noqa: BLE001
            pass


try:
    asyncio.run(main())
except Exception as e:  # noqa: BLE001 - report, never hang or hide
    H.fail("suite", f"{type(e).__name__}: {e}")
H.finish()
