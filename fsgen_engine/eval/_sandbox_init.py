"""Trusted launcher of :mod:`fsgen_engine.eval.sandbox` (runs as its own process, stdlib only).

Reads its configuration (JSON) from stdin, then, before any untrusted code exists:

1. creates new mount, pid, network, ipc, uts and cgroup namespaces and builds a new root on a tmpfs:
   the Python installation, /usr and /lib* bind-mounted read-only, nosuid, nodev; a few /dev nodes; a
   size-limited tmpfs ``/tmp`` (the only writable place) holding the program; no /proc, no /etc, no
   home; then ``pivot_root`` into it and detaches the old root. Started as root, it does this with
   root's rights and then drops to an unprivileged uid/gid (``nobody``) and enters a new user
   namespace mapping that uid to itself; started as another user, it creates the user namespace
   first (identity-mapped) to be allowed the others;
2. sets ``RLIMIT_NPROC`` once inside the new user namespace: the kernel then counts only the processes
   of that namespace against it, so concurrent sandboxes (all ``nobody``) and one still being torn
   down never starve each other; above it, the uid's count is held to the limit the launcher had
   before. It binds: the uid is not root and has no capability outside its namespace;
3. reports ``ok <pid>`` on the status descriptor (a file the evaluator reads; the program never sees
   it) and forks the namespace's init (pid 1): a new session, rlimits, no-new-privileges, an empty
   capability bounding set, every other descriptor closed, then ``execve`` of Python on the runner. As
   its uid is not 0, execve leaves it no capabilities.

The launcher waits for that child and exits with its status (128 + signal when killed). When the
launcher dies (the evaluator kills it at the timeout), the child receives SIGKILL (parent-death
signal) and the kernel kills every process of its pid namespace with it: nothing outlives a run.
Any failure before the fork is reported on the status descriptor as ``error <message>`` with exit code 97.
"""
import ctypes
import json
import os
import platform
import resource
import select
import signal
import sys

SETUP_FAILED = 97

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
ST_NOEXEC, ST_NOATIME, ST_NODIRATIME, ST_RELATIME = 8, 1024, 2048, 4096
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}
BASE = "/tmp"  # mount point of the new root's tmpfs, in the launcher's private mount namespace

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src, dst, fstype, flags, data=None):
    enc = (lambda s: None if s is None else os.fsencode(s))
    _check(_libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {src} on {dst}")


def _prctl(option, arg):
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _bind_readonly(src, target, is_dir):
    if is_dir:
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        open(target, "a").close()
    _mount(src, target, None, MS_BIND)
    # A remount inside a user namespace must keep the locked flags of the source (noexec, atime).
    f = os.statvfs(target).f_flag
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
    flags |= (MS_NOEXEC if f & ST_NOEXEC else 0) | (MS_NOATIME if f & ST_NOATIME else 0)
    flags |= (MS_NODIRATIME if f & ST_NODIRATIME else 0) | (MS_RELATIME if f & ST_RELATIME else 0)
    _mount(None, target, None, flags)


def _unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def _enter_user_ns(proc_self):
    """A new user namespace with this process's (unprivileged) uid and gid mapped to themselves."""
    uid, gid = os.getuid(), os.getgid()
    _prctl(PR_SET_DUMPABLE, 1)  # after a uid change /proc/self stays root's until dumpable is set again
    _unshare(CLONE_NEWUSER)
    _map_ids(proc_self, uid, gid)
    _prctl(PR_SET_DUMPABLE, 0)


def _map_ids(proc_self, uid, gid):
    """Map ``uid``/``gid`` to themselves in the user namespace just entered (no supplementary groups)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(name, os.O_WRONLY, dir_fd=proc_self)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _build_root(cfg):
    """In this process's new mount namespace: the new root on a tmpfs, then pivot_root into it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
    _mount("tmpfs", BASE, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path in cfg["binds"]:
        target = BASE + path
        if os.path.islink(path):  # a symlink such as /bin -> usr/bin on merged-/usr systems
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            os.symlink(os.readlink(path), target)
        elif os.path.exists(path):
            _bind_readonly(path, target, os.path.isdir(path))
    for d in cfg["devices"]:
        if os.path.exists(d):
            target = BASE + d
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            open(target, "a").close()
            _mount(d, target, None, MS_BIND)
    work = BASE + "/tmp"
    os.makedirs(work, mode=0o755, exist_ok=True)
    uid = cfg["uid"] if os.geteuid() == 0 else os.geteuid()
    gid = cfg["gid"] if os.geteuid() == 0 else os.getegid()
    _mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmp_mb']}m,mode=0700,uid={uid},gid={gid}")
    with open(work + "/program.py", "w", encoding="utf-8") as f:
        f.write(cfg["program"])
    os.chown(work + "/program.py", uid, gid)
    _mount(None, BASE, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(BASE)
    nr = SYS_PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(_libc.syscall(nr, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def setup(cfg):
    """Namespaces, new root, unprivileged uid; returns a /dev/null descriptor for the child."""
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    proc_self = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    others = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    nproc = cfg["limits"]["nproc"]
    if os.geteuid() == 0:
        # Root builds the namespaces and the new root with its own rights (it can read the Python
        # installation wherever it lives), then becomes nobody inside a user namespace of its own.
        _unshare(others)
        _build_root(cfg)
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
        if os.geteuid() == 0 or os.getuid() == 0:
            raise OSError("could not drop root")
        _enter_user_ns(proc_self)
    else:
        uid, gid = os.getuid(), os.getgid()
        _unshare(CLONE_NEWUSER | others)
        _map_ids(proc_self, uid, gid)
        _build_root(cfg)
    # Only now: set before the user namespace existed, the limit would also cap that uid's processes
    # machine-wide (every other sandbox's, or a desktop user's whole session).
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    os.close(proc_self)
    return null


def child(cfg, alive_r, null):
    """pid 1 of the new pid namespace: limits, no privileges, then the untrusted program."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([alive_r], [], [], 0)[0]:  # the launcher died before the line above
        os._exit(SETUP_FAILED)
    os.setsid()  # kill(0, ...) in the program then reaches only its own processes
    lim = cfg["limits"]
    for kind, value in ((resource.RLIMIT_AS, lim["as"]), (resource.RLIMIT_CPU, lim["cpu"]),
                        (resource.RLIMIT_FSIZE, lim["fsize"]), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_NOFILE, lim["nofile"])):
        resource.setrlimit(kind, (value, value))
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break  # past the last capability
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.closerange(3, 1 << 16)
    os.chdir("/tmp")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}
    os.execve(cfg["python"], [cfg["python"], "-I", "-S", "-B", "-c", cfg["runner"]], env)


def main():
    status_fd = None
    try:
        cfg = json.load(sys.stdin)
        status_fd = cfg["status_fd"]
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != cfg["parent_pid"]:
            os._exit(SETUP_FAILED)
        null = setup(cfg)
        alive_r, alive_w = os.pipe()
        pid = os.fork()
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a report on the status file
        if status_fd is not None:
            os.write(status_fd, f"error {type(exc).__name__}: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    if pid == 0:
        try:
            os.close(alive_w)
            child(cfg, alive_r, null)
        finally:
            os._exit(SETUP_FAILED)
    os.close(alive_r)
    os.write(status_fd, f"ok {pid}\n".encode())  # one write, newline-terminated: the reader waits for the newline
    os.close(status_fd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
