"""Run untrusted generated code (MBPP asserts) in a sandboxed subprocess, never in-process.

The child is ``python -I`` (isolated: no user site, no PYTHON* env vars) with a fresh temporary
directory as cwd. Before the untrusted code runs, the child
- sets resource limits: RLIMIT_AS (memory), RLIMIT_CPU (CPU seconds), RLIMIT_FSIZE (file size),
  RLIMIT_NPROC where allowed,
- installs an audit hook (sys.addaudithook) that denies: open() for writing outside the temp dir,
  file removal / renaming / directory and permission changes outside it, starting processes
  (subprocess, os.system, exec, fork, spawn), sockets and ctypes.
The parent kills the whole process group on wall-clock timeout. This is a best-effort sandbox for
benchmark code, not a security boundary against an adversary (use a container for that).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

# Child-side prologue: {tmp} {mem} {cpu} {fsize} are substituted.
_PROLOGUE = r'''
import os, sys, resource
_TMP = os.path.realpath({tmp!r})
def _lim(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass
_lim(resource.RLIMIT_AS, {mem})
_lim(resource.RLIMIT_CPU, {cpu})
_lim(resource.RLIMIT_FSIZE, {fsize})
_lim(resource.RLIMIT_CORE, 0)

def _inside(path):
    if isinstance(path, int):
        return True  # an already-open descriptor
    try:
        p = os.fsdecode(path)
    except TypeError:
        return False
    p = os.path.realpath(os.path.join(_TMP, p))
    return p == _TMP or p.startswith(_TMP + os.sep)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {{"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
                "os.symlink", "os.truncate", "os.utime", "os.chdir", "shutil.rmtree", "shutil.move",
                "shutil.copyfile", "shutil.copytree", "os.replace"}}
_DENY_PREFIX = ("subprocess.", "os.system", "os.exec", "os.fork", "os.forkpty", "os.spawn",
                "os.posix_spawn", "os.kill", "os.killpg", "socket.", "ctypes.", "pty.", "os.startfile")

def _hook(event, args):
    if event == "open":
        path, mode, flags = (list(args) + [None, None, None])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writing and not _inside(path):
            raise PermissionError("sandbox: writing outside the temp dir is blocked: %r" % (path,))
    elif event in _PATH_EVENTS:
        for a in args[:2]:
            if isinstance(a, (str, bytes, os.PathLike)) and not _inside(a):
                raise PermissionError("sandbox: %s outside the temp dir is blocked: %r" % (event, a))
    elif event.startswith(_DENY_PREFIX):
        raise PermissionError("sandbox: %s is blocked" % event)

sys.addaudithook(_hook)
del _hook
'''

# Runs the program file; exit code 0 = passed, 1 = an exception (assert failed), 3 = syntax error.
_RUNNER = r'''
import sys, traceback
with open({prog!r}, encoding="utf-8") as _f:
    _src = _f.read()
try:
    _code = compile(_src, "program.py", "exec")
except SyntaxError:
    traceback.print_exc(limit=1)
    sys.exit(3)
try:
    exec(_code, {{"__name__": "__main__"}})
except SystemExit as e:
    sys.exit(0 if e.code in (None, 0) else 1)
except BaseException:
    traceback.print_exc(limit=2)
    sys.exit(1)
'''


@dataclass
class SandboxResult:
    passed: bool
    status: str       # "passed" | "failed" | "syntax_error" | "timeout" | "killed"
    returncode: int | None
    stderr: str
    wall_s: float


def run_sandboxed(code: str, *, timeout_s: float = 10.0, memory_mb: int = 1024, max_file_mb: int = 16,
                  python: str | None = None) -> SandboxResult:
    """Run ``code`` (a whole program: solution + asserts) in a sandboxed child process."""
    import time

    if timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s} must be positive")
    with tempfile.TemporaryDirectory(prefix="fsgen_sandbox_") as tmp:
        prog = os.path.join(tmp, "program.py")
        with open(prog, "w", encoding="utf-8") as f:
            f.write(code)
        script = _PROLOGUE.format(tmp=tmp, mem=memory_mb << 20, cpu=max(1, int(timeout_s) + 1),
                                  fsize=max_file_mb << 20) + _RUNNER.format(prog=prog)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp, "TMPDIR": tmp}
        t0 = time.perf_counter()
        proc = subprocess.Popen([python or sys.executable, "-I", "-B", "-c", script], cwd=tmp, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, err = proc.communicate()
            return SandboxResult(False, "timeout", None, _tail(err), time.perf_counter() - t0)
        finally:
            _kill_group(proc)  # stray grandchildren, if any slipped through
        wall = time.perf_counter() - t0
    rc = proc.returncode
    status = {0: "passed", 1: "failed", 3: "syntax_error"}.get(rc, "killed")
    return SandboxResult(rc == 0, status, rc, _tail(err), wall)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(b: bytes, n: int = 2000) -> str:
    return (b or b"")[-n:].decode("utf-8", "replace")


def mbpp_program(solution: str, test_list: list[str], setup: str = "") -> str:
    return "\n".join([setup or "", solution, "", *test_list, ""])


def check_mbpp(solution: str, test_list: list[str], setup: str = "", timeout_s: float = 10.0) -> dict:
    res = run_sandboxed(mbpp_program(solution, test_list, setup), timeout_s=timeout_s)
    return {"correct": res.passed, "status": res.status, "stderr": res.stderr[-500:]}


if __name__ == "__main__":  # manual check: python -m fsgen_engine.eval.sandbox 'print(1)'
    print(json.dumps(run_sandboxed(sys.argv[1]).__dict__))
