"""Run untrusted generated code (MBPP asserts) isolated by the operating system, never in-process.

Each run is a fresh process tree in its own user, pid, mount, network, ipc, uts and cgroup namespaces
(``unshare(2)``, set up by the trusted launcher :mod:`fsgen_engine.eval._sandbox_init`):

- an unprivileged uid (root drops to ``nobody``), no capabilities, no-new-privileges;
- a new root holding only the Python installation, /usr and /lib* (read-only, nosuid, nodev) and a
  private, size-limited tmpfs ``/tmp`` (cwd, the only writable place); no /proc, no /etc, no home,
  none of the evaluator's files, so nothing outside can be read, written, removed or renamed;
- no network (an empty network namespace), no view of other processes (its own pid namespace), no
  environment from the evaluator;
- rlimits: address space, CPU seconds, file size, processes (``RLIMIT_NPROC``, binding because the
  uid is not root, and counted per sandbox: it is set inside the sandbox's user namespace), open files;
- the wall-clock limit kills the launcher, whose death kills the namespace's init and with it, by the
  kernel, every process the program started. The program's stderr goes to an unlinked temporary file,
  never a pipe, so nothing it leaves behind can hold the evaluator waiting.

When the isolation cannot be set up (a kernel without unprivileged user namespaces, a seccomp policy
forbidding ``unshare``), :func:`run_sandboxed` raises :class:`SandboxUnavailableError` instead of
running the code, unless the caller passes ``unsafe_exec=True`` (CLI: ``--unsafe-exec``), which runs
it in a plain subprocess with rlimits only: no protection against hostile code.

The program runs under ``python -I -S``: the standard library only (MBPP needs nothing else).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache

from . import _sandbox_init

SANDBOX_UID = SANDBOX_GID = 65534  # nobody / nogroup: the uid root drops to
SETUP_LIMIT_S = 60.0  # the launcher's own setup (not counted in the program's timeout)
_SETUP_FAILED = _sandbox_init.SETUP_FAILED

# Runs /tmp/program.py; exit code 0 = passed, 1 = an exception (assert failed), 3 = syntax error.
_RUNNER = r'''
import sys, traceback
with open("program.py", encoding="utf-8") as _f:
    _src = _f.read()
try:
    _code = compile(_src, "program.py", "exec")
except SyntaxError:
    traceback.print_exc(limit=1)
    sys.exit(3)
try:
    exec(_code, {"__name__": "__main__"})
except SystemExit as e:
    sys.exit(0 if e.code in (None, 0) else 1)
except BaseException:
    traceback.print_exc(limit=2)
    sys.exit(1)
'''


class SandboxUnavailableError(RuntimeError):
    """The OS-level isolation could not be set up on this machine; generated code was not run."""


@dataclass
class SandboxResult:
    passed: bool
    status: str       # "passed" | "failed" | "syntax_error" | "timeout" | "killed"
    returncode: int | None
    stderr: str
    wall_s: float


def _python() -> str:
    return os.path.realpath(sys.executable)


def _binds(python: str) -> list[str]:
    """Paths visible (read-only) in the sandbox: the system libraries and the Python installation."""
    paths = ["/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32", "/etc/ld.so.cache"]
    for p in (sys.base_prefix, sys.base_exec_prefix, os.path.dirname(os.path.dirname(python))):
        p = os.path.realpath(p)
        if p != "/" and not any(p == q or p.startswith(q.rstrip("/") + "/") for q in paths):
            paths.append(p)
    return paths


def run_sandboxed(code: str, *, timeout_s: float = 10.0, memory_mb: int = 1024, max_file_mb: int = 16,
                  max_procs: int = 16, tmp_mb: int = 64, unsafe_exec: bool = False) -> SandboxResult:
    """Run ``code`` (a whole program: solution + asserts) isolated; see the module docstring.

    ``timeout_s``: wall-clock limit for the whole process tree from the end of the sandbox's setup (CPU
    limit: the same, rounded up).
    ``memory_mb``: address space per process; ``max_procs``: processes and threads; ``tmp_mb``: size of
    the writable /tmp. Raises :class:`SandboxUnavailableError` when the isolation cannot be set up and
    ``unsafe_exec`` is False."""
    if not timeout_s > 0:
        raise ValueError(f"run_sandboxed: timeout_s={timeout_s} must be positive")
    if unsafe_exec:
        return _run_unsafe(code, timeout_s, memory_mb, max_file_mb)
    reason = isolation_error()
    if reason is not None:
        raise SandboxUnavailableError(unavailable_message(reason))
    res = _run_isolated_retrying(code, timeout_s, memory_mb, max_file_mb, max_procs, tmp_mb)
    if isinstance(res, str):
        raise SandboxUnavailableError(unavailable_message(res))
    return res


def _run_isolated_retrying(*args, attempts: int = 6) -> SandboxResult | str:
    """``_run_isolated``, retried when the set-up failed with EAGAIN (the machine's process table or a
    container's pid limit full for a moment, say while a fork bomb's processes are reaped). Sandboxes do
    not starve each other: each one's process limit counts only its own user namespace. Any other
    failure is final."""
    for i in range(attempts):
        res = _run_isolated(*args)
        if not (isinstance(res, str) and res.startswith("BlockingIOError")):
            return res
        time.sleep(0.05 * 2 ** i)
    return res


def unavailable_message(reason: str) -> str:
    return (f"the sandbox for generated code cannot be set up on this machine ({reason}), so the code was not "
            "run. It needs unprivileged user namespaces (unshare(2) with new user, pid, mount and network "
            "namespaces; check `unshare --user --map-current-user --pid --fork --mount --net true`). To run model-"
            "written code without isolation anyway, pass --unsafe-exec (Python: unsafe_exec=True); only do "
            "that in a disposable machine or container")


@lru_cache(maxsize=None)
def isolation_error() -> str | None:
    """None when the isolation works on this machine, else why not (probed once per process)."""
    res = _run_isolated_retrying("pass", 30.0, 256, 1, 4, 1)
    if isinstance(res, str):
        return res
    if not res.passed:
        return f"a trivial program did not run in the sandbox: status {res.status}, {res.stderr.strip()[-300:]}"
    return None


def _run_isolated(code, timeout_s, memory_mb, max_file_mb, max_procs, tmp_mb) -> SandboxResult | str:
    """A SandboxResult, or the reason the isolation failed (a str)."""
    python = _python()
    cfg = {"python": python, "program": code, "runner": _RUNNER, "binds": _binds(python),
           "devices": ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"],
           "uid": SANDBOX_UID, "gid": SANDBOX_GID, "tmp_mb": int(tmp_mb), "parent_pid": os.getpid(),
           "limits": {"as": int(memory_mb) << 20, "cpu": max(1, int(timeout_s + 0.999)),
                      "fsize": int(max_file_mb) << 20, "nproc": int(max_procs), "nofile": 256}}
    with tempfile.TemporaryFile() as cfg_f, tempfile.TemporaryFile() as err_f, tempfile.TemporaryFile() as st_f:
        cfg["status_fd"] = st_f.fileno()
        cfg_f.write(json.dumps(cfg).encode())
        cfg_f.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen([python, "-I", "-S", "-B", _sandbox_init.__file__], stdin=cfg_f,
                                stdout=subprocess.DEVNULL, stderr=err_f, pass_fds=(st_f.fileno(),),
                                start_new_session=True, env={"PATH": "/usr/bin:/bin"})
        # The program's clock starts once the sandbox is set up (a loaded machine must not eat its time).
        setup_deadline = time.monotonic() + SETUP_LIMIT_S
        status = ""
        while not status and proc.poll() is None and time.monotonic() < setup_deadline:
            time.sleep(0.002)
            line = _read(st_f, head=1000)
            status = line.strip() if line.endswith("\n") else ""
        timed_out = False
        if status.startswith("ok ") or not status:
            try:
                proc.wait(timeout=timeout_s if status else max(0.0, setup_deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        _kill(proc)
        status = _read(st_f, head=1000).strip()
        if status.startswith("ok "):
            _wait_gone(int(status.split()[1]))  # the namespace's init, and so every process it held
        wall = time.perf_counter() - t0
        err = _read(err_f)
    if status.startswith("error ") or (not status and not timed_out):
        return status.removeprefix("error ") or f"the launcher exited with {proc.returncode} before its setup"
    if timed_out:
        return SandboxResult(False, "timeout", None, err, wall)
    rc = proc.returncode
    status = {0: "passed", 1: "failed", 3: "syntax_error"}.get(rc, "killed")
    return SandboxResult(rc == 0, status, rc, err, wall)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _wait_gone(pid: int, limit_s: float = 5.0) -> None:
    """Wait until ``pid`` (the sandbox's init; its parent, the launcher, is dead) is dead or a zombie."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        if state in (b"Z", b"X"):
            return
        time.sleep(0.005)


def _read(f, tail: int = 2000, *, head: int | None = None) -> str:
    f.flush()
    size = os.fstat(f.fileno()).st_size
    if head is not None:
        f.seek(0)
        return f.read(head).decode("utf-8", "replace")
    f.seek(max(0, size - tail))
    return f.read().decode("utf-8", "replace")


# Unsafe mode: a plain subprocess with rlimits, for machines where the isolation cannot be set up and the
# user accepted the risk. Nothing here stops hostile code.
_UNSAFE_PROLOGUE = r'''
import resource
for _k, _v in ((resource.RLIMIT_AS, {mem}), (resource.RLIMIT_CPU, {cpu}), (resource.RLIMIT_FSIZE, {fsize}),
               (resource.RLIMIT_CORE, 0)):
    try:
        resource.setrlimit(_k, (_v, _v))
    except (ValueError, OSError):
        pass
del resource, _k, _v
'''
_warned_unsafe = False


def _run_unsafe(code, timeout_s, memory_mb, max_file_mb) -> SandboxResult:
    global _warned_unsafe
    if not _warned_unsafe:
        warnings.warn("unsafe_exec=True: model-written code runs WITHOUT isolation (rlimits only); it can read, "
                      "write and delete your files and use the network", RuntimeWarning, stacklevel=3)
        _warned_unsafe = True
    script = _UNSAFE_PROLOGUE.format(mem=int(memory_mb) << 20, cpu=max(1, int(timeout_s + 0.999)),
                                     fsize=int(max_file_mb) << 20) + _RUNNER
    with tempfile.TemporaryDirectory(prefix="fsgen_unsafe_") as tmp, tempfile.TemporaryFile() as err_f:
        with open(os.path.join(tmp, "program.py"), "w", encoding="utf-8") as f:
            f.write(code)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp, "TMPDIR": tmp}
        t0 = time.perf_counter()
        proc = subprocess.Popen([_python(), "-I", "-S", "-B", "-c", script], cwd=tmp, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_f,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill(proc)
        wall = time.perf_counter() - t0
        err = _read(err_f)
    if timed_out:
        return SandboxResult(False, "timeout", None, err, wall)
    rc = proc.returncode
    return SandboxResult(rc == 0, {0: "passed", 1: "failed", 3: "syntax_error"}.get(rc, "killed"), rc, err, wall)


def mbpp_program(solution: str, test_list: list[str], setup: str = "") -> str:
    return "\n".join([setup or "", solution, "", *test_list, ""])


def check_mbpp(solution: str, test_list: list[str], setup: str = "", timeout_s: float = 10.0,
               unsafe_exec: bool = False) -> dict:
    res = run_sandboxed(mbpp_program(solution, test_list, setup), timeout_s=timeout_s, unsafe_exec=unsafe_exec)
    return {"correct": res.passed, "status": res.status, "stderr": res.stderr[-500:]}


if __name__ == "__main__":  # manual check: python -m fsgen_engine.eval.sandbox 'print(1)'
    print(json.dumps(run_sandboxed(sys.argv[1]).__dict__))
