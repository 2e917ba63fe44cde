"""The MBPP sandbox: correct verdicts, and hostile programs contained by the operating system.

Every escape found against the earlier in-process sandbox (audit hook + rlimits) is kept here as a
regression test; each of them wrote, deleted or moved a file outside the sandbox, left a process
running, held the evaluator past its timeout, killed the evaluator or read its environment. The
isolation is real on the development and CI machines (Linux, unprivileged user namespaces); on a
machine without them these tests fail unless FSGEN_ALLOW_NO_SANDBOX=1 (then they are skipped).
"""
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from fsgen_engine.eval import sandbox
from fsgen_engine.eval.sandbox import SandboxUnavailableError, check_mbpp, run_sandboxed

# One xdist worker runs them all (scripts/test.sh: --dist loadgroup), so their timing tests do not
# compete with each other for the CPU; test_full_sandbox_does_not_starve_another checks they could.
pytestmark = pytest.mark.xdist_group("sandbox")

SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


@pytest.fixture(autouse=True)
def _needs_isolation(request):
    if request.node.name in ("test_refuses_without_isolation", "test_rejects_bad_timeout"):
        return
    reason = sandbox.isolation_error()
    if reason is not None:
        if os.environ.get("FSGEN_ALLOW_NO_SANDBOX") == "1":
            pytest.skip(f"sandbox isolation unavailable here: {reason}")
        pytest.fail(f"sandbox isolation unavailable: {reason} (set FSGEN_ALLOW_NO_SANDBOX=1 to skip)")


# A process launcher that bypassed the old sandbox's audit hook (the C function subprocess uses).
SPAWN = r'''
import _posixsubprocess, os, sys
def spawn(argv, setsid=False, quiet=False):
    args = [os.fsencode(a) for a in argv]
    r, w = os.pipe()
    n = os.open("/dev/null", os.O_RDONLY) if quiet else -1  # quiet: holds none of the parent's pipes
    # CPython 3.11 / 3.12 argument order (subprocess.Popen._execute_child)
    return _posixsubprocess.fork_exec(args, [args[0]], True, (w,), None, None, n, -1, -1, n, -1, n, r, w,
                                      False, setsid, -1, None, None, None, -1, None, False)
'''


def _alive_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(d))
            except OSError:
                pass
    return found


def _evaluator(code: str, timeout_s: float = 5.0, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``run_sandboxed(code)`` in a separate evaluator process (so an escape cannot kill pytest)."""
    driver = ("import json, sys\nfrom fsgen_engine.eval.sandbox import run_sandboxed\n"
              f"r = run_sandboxed(sys.stdin.read(), timeout_s={timeout_s})\n"
              "print('EVALUATOR_ALIVE ' + json.dumps(r.__dict__))\n")
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", driver], input=code, capture_output=True, text=True, env=env,
                          timeout=120)


def _result(proc: subprocess.CompletedProcess) -> dict:
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("EVALUATOR_ALIVE ")]
    assert proc.returncode == 0 and line, f"evaluator died: rc={proc.returncode} {proc.stdout} {proc.stderr}"
    return json.loads(line[0].split(" ", 1)[1])


# ---- verdicts -----------------------------------------------------------------------------------

def test_passes_correct_code():
    assert check_mbpp(SOLUTION, TESTS)["correct"]


def test_fails_wrong_code():
    r = check_mbpp("def add(a, b):\n    return a - b\n", TESTS)
    assert not r["correct"] and r["status"] == "failed"
    assert "AssertionError" in r["stderr"]


def test_syntax_error():
    assert run_sandboxed("def f(:\n").status == "syntax_error"


def test_standard_library_works():
    code = ("import re, math, heapq, collections, itertools, json, datetime, random\n"
            "assert heapq.nlargest(2, [3, 1, 4]) == [4, 3] and re.findall(r'\\d', 'a1b2') == ['1', '2']\n")
    r = run_sandboxed(code)
    assert r.passed, r.stderr


def test_allows_writes_inside_temp_dir():
    code = "open('scratch.txt', 'w').write('hi')\nassert open('scratch.txt').read() == 'hi'\n"
    assert run_sandboxed(code).passed


def test_runs_out_of_process():
    r = run_sandboxed(f"import os\nassert os.getpid() != {os.getpid()}")
    assert r.passed


# ---- the escapes of the old sandbox ---------------------------------------------------------------

def test_dir_fd_write_remove_rename_stay_inside(tmp_path):
    target = tmp_path / f"escape_{uuid.uuid4().hex}.txt"
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    d = str(tmp_path)
    for code in (f"import os\nfd = os.open({d!r}, os.O_RDONLY)\n"
                 f"os.write(os.open({target.name!r}, os.O_WRONLY | os.O_CREAT, dir_fd=fd), b'x')",
                 f"import os\nfd = os.open({d!r}, os.O_RDONLY)\nos.remove('keep.txt', dir_fd=fd)",
                 f"import os\nfd = os.open({d!r}, os.O_RDONLY)\n"
                 f"os.rename('keep.txt', {target.name!r}, src_dir_fd=fd, dst_dir_fd=fd)"):
        r = run_sandboxed(code)
        assert not r.passed, code
        assert not target.exists(), code
        assert victim.read_text() == "keep", code


def test_fork_exec_shell_cannot_write_outside(tmp_path):
    target = tmp_path / f"escape_{uuid.uuid4().hex}.txt"
    code = SPAWN + f"import time\nspawn(['/bin/sh', '-c', 'echo x > {target}'])\ntime.sleep(1)\n"
    run_sandboxed(code)
    assert not target.exists()


def test_detached_process_does_not_outlive_the_run():
    marker = f"{random.randint(100, 999)}.{random.randint(10**5, 10**6 - 1)}"
    code = SPAWN + f"spawn(['/bin/sleep', '{marker}'], setsid=True, quiet=True)\nimport time\ntime.sleep(0.5)\n"
    run_sandboxed(code, timeout_s=5)
    assert _alive_with(marker) == []


def test_grandchild_holding_stderr_cannot_stretch_the_timeout():
    # The old sandbox waited for EOF on a stderr pipe the grandchild held: 40 s instead of 3 s.
    marker = f"40.{random.randint(10**5, 10**6 - 1)}"
    code = SPAWN + f"spawn(['/bin/sleep', '{marker}'], setsid=True)\n"
    t0 = time.monotonic()
    r = run_sandboxed(code, timeout_s=3)
    assert time.monotonic() - t0 < 20, "run_sandboxed waited for the grandchild"
    assert r.status in ("passed", "failed")
    assert _alive_with(marker) == []


@pytest.mark.parametrize("attack", [
    "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGTERM)",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    "import os, signal\nos.kill(-1, signal.SIGKILL)",
    "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
])
def test_cannot_kill_the_evaluator(attack):
    before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("fsgen_")}
    _result(_evaluator(attack))  # the evaluator survived and reported
    after = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("fsgen_sandbox")}
    assert after <= before, f"left behind: {after - before}"


def test_cannot_read_the_evaluators_environment():
    secret = uuid.uuid4().hex
    code = ("import os, glob\nleaks = []\n"
            "for p in ['/proc/%d/environ' % os.getppid()] + glob.glob('/proc/*/environ'):\n"
            "    try:\n        data = open(p, 'rb').read()\n    except OSError:\n        continue\n"
            "    if b'FSGEN_TEST_SECRET=' in data:\n        leaks.append(p)\n"
            "assert 'FSGEN_TEST_SECRET' not in os.environ\n"
            "if leaks:\n    raise SystemExit('LEAKED ' + repr(leaks) + ' ' + repr(data[-300:]))\n")
    r = _result(_evaluator(code, env_extra={"FSGEN_TEST_SECRET": secret}))
    assert secret not in r["stderr"] and "LEAKED" not in r["stderr"]
    assert r["passed"], r["stderr"]


def test_process_limit_is_set_and_binds():
    code = ("import os, resource, time\n"
            "assert resource.getrlimit(resource.RLIMIT_NPROC)[0] == 8, resource.getrlimit(resource.RLIMIT_NPROC)\n"
            "n = 0\n"
            "for _ in range(100):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n    n += 1\n"
            "assert n < 8, n\n")
    r = run_sandboxed(code, max_procs=8, timeout_s=8)
    assert r.passed, r.stderr


def test_full_sandbox_does_not_starve_another():
    # Every sandbox runs as nobody. With the process limit counted for that uid machine-wide, one
    # sandbox at its limit (or a fork bomb still being reaped) made the next one's set-up fail with
    # EAGAIN; the limit is now counted per sandbox (inside its user namespace).
    import threading
    marker = f"hold_{uuid.uuid4().hex}"
    code = (f"# {marker}\nimport os, time\n"
            "for _ in range(100):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(6)\n        os._exit(0)\n"
            "time.sleep(6)\n")
    holder = {}
    t = threading.Thread(target=lambda: holder.update(r=run_sandboxed(code, max_procs=8, timeout_s=10)))
    t.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_nobody_pids()) < 8:
            time.sleep(0.01)
        assert len(_nobody_pids()) >= 8, "the holding sandbox never reached its process limit"
        r = run_sandboxed("import os\nassert os.fork() is not None\n", max_procs=8, timeout_s=10)
        assert len(_nobody_pids()) >= 8, "the holding sandbox let go before the second one ran"
        assert r.passed, r.stderr
    finally:
        t.join()
    assert holder["r"].passed, holder["r"].stderr


def _nobody_pids() -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/status") as f:
                    if any(ln.startswith("Uid:") and ln.split()[1] == str(sandbox.SANDBOX_UID) for ln in f):
                        found.append(int(d))
            except OSError:
                pass
    return found


# ---- attacks the old sandbox already blocked ------------------------------------------------------

def test_kills_infinite_loop():
    # returning at all proves the child was killed (a missed kill would hang here)
    r = run_sandboxed("while True:\n    pass\n", timeout_s=1.5)
    assert r.status == "timeout" and not r.passed


def test_huge_allocation_fails():
    r = run_sandboxed("x = bytearray(20 * 2**30)\n")
    assert r.status == "failed" and "MemoryError" in r.stderr


def test_fork_bomb_is_contained():
    r = run_sandboxed("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                      timeout_s=2)
    assert not r.passed and r.status in ("timeout", "killed", "failed")


def test_no_network():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    try:
        r = run_sandboxed(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
        assert not r.passed and "OSError" in r.stderr or "Error" in r.stderr
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


def test_environment_is_not_passed(monkeypatch):
    monkeypatch.setenv("FSGEN_TEST_TOKEN", "hunter2")
    r = run_sandboxed("import os\nassert 'FSGEN_TEST_TOKEN' not in os.environ, os.environ\n")
    assert r.passed, r.stderr


def test_blocks_writes_outside_temp_dir(tmp_path):
    target = tmp_path / f"escape_{uuid.uuid4().hex}.txt"
    for code in (f"open({str(target)!r}, 'w').write('x')",
                 f"import os\nfd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)",
                 f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')",
                 f"import subprocess\nsubprocess.run(['touch', {str(target)!r}], check=True)",
                 f"import os\nassert os.system('touch {target}') == 0"):
        r = run_sandboxed(code)
        assert not r.passed, code
        assert not target.exists(), code


def test_blocks_removal_outside_temp_dir(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    r = run_sandboxed(f"import os\nos.remove({str(victim)!r})")
    assert not r.passed and victim.exists()
    r = run_sandboxed(f"import shutil\nshutil.rmtree({str(tmp_path)!r})")
    assert not r.passed and victim.exists()


# ---- what the isolation looks like from inside ------------------------------------------------------

def test_python_installation_is_read_only():
    prefix = os.path.realpath(sys.base_prefix)
    name = f"fsgen_escape_{uuid.uuid4().hex}"
    r = run_sandboxed(f"open({os.path.join(prefix, name)!r}, 'w')")
    assert not r.passed and ("Read-only" in r.stderr or "Permission" in r.stderr), r.stderr
    assert not os.path.exists(os.path.join(prefix, name))


def test_unprivileged_and_blind(tmp_path):
    secret_file = tmp_path / "private.txt"
    secret_file.write_text("private")
    code = ("import os\n"
            "assert os.getuid() != 0 and os.geteuid() != 0\n"
            f"assert not os.path.exists({str(secret_file)!r})\n"
            "assert not os.path.exists('/proc/1/environ') and not os.path.exists('/etc/passwd')\n"
            f"try:\n    os.kill({os.getpid()}, 0)\nexcept ProcessLookupError:\n    pass\n"
            "else:\n    raise AssertionError('sees the evaluator')\n"
            "try:\n    os.chroot('/tmp')\nexcept PermissionError:\n    pass\n"
            "else:\n    raise AssertionError('has privileges')\n")
    r = run_sandboxed(code)
    assert r.passed, r.stderr


def test_tmp_is_private_per_run():
    name = f"run_{uuid.uuid4().hex}"
    assert run_sandboxed(f"open({name!r}, 'w').write('x')").passed
    assert run_sandboxed(f"import os\nassert not os.path.exists({name!r})").passed


# ---- no isolation: refuse unless told otherwise -------------------------------------------------------

def test_refuses_without_isolation(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "isolation_error", lambda: "user namespaces disabled (test)")
    with pytest.raises(SandboxUnavailableError, match="--unsafe-exec") as e:
        run_sandboxed("open('x', 'w')")
    assert "user namespaces disabled (test)" in str(e.value) and "not run" in str(e.value)
    with pytest.raises(SandboxUnavailableError):
        check_mbpp(SOLUTION, TESTS)
    monkeypatch.setattr(sandbox, "_warned_unsafe", False)
    with pytest.warns(RuntimeWarning, match="WITHOUT isolation"):
        assert check_mbpp(SOLUTION, TESTS, unsafe_exec=True)["correct"]
    assert run_sandboxed("while True:\n    pass\n", timeout_s=1, unsafe_exec=True).status == "timeout"


def test_rejects_bad_timeout():
    with pytest.raises(ValueError, match="timeout_s"):
        run_sandboxed("pass", timeout_s=0)
