"""The tests' Snakemake launcher: one Python that has imported Snakemake's CLI forks a child for each invocation,
and the child runs `python -m snakemake ARGS` as a fresh process would: the same interpreter and module, its own
argv, sys.path, environment, working directory, output files, exit status and interpreter shutdown. It spares the
~1.2 s of imports that each of the tests' hundred-odd invocations otherwise pays. What the children share: the
launcher's string-hash seed (so the order of Snakemake's sets, which no test may depend on, is the same in each).

Run as a script, it serves requests, one JSON line each on stdin, answering {"returncode": int | null}: null when
the timeout passed before the child and every process of its group (its jobs) had ended, which were then killed.
Like subprocess.run with captured output, which waits for every process holding its pipes, it answers only when
the group is empty."""

import json
import os
import runpy
import signal
import sys
import time

POLL_S = 0.02
WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def run_child(request: dict) -> None:
    """In the forked child: become `python -m snakemake ARGS`. Never returns: the module's exit (SystemExit, or
    the end of the module) ends this process through the interpreter's normal shutdown."""
    os.setsid()  # its own process group: a timeout ends it and its jobs together
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as `python -m` sets it
    os.environ.clear()
    os.environ.update(request["env"])
    streams = ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], WRITE), (2, request["stderr"], WRITE))
    for descriptor, path, flags in streams:
        opened = os.open(path, flags)
        os.dup2(opened, descriptor)
        os.close(opened)
    sys.argv = ["snakemake", *request["args"]]
    runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
    sys.exit(0)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def end_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait(pid: int, timeout: float, client: int) -> int | None:
    """The child's exit status as subprocess reports it (-N: killed by signal N), once it and the rest of its
    process group have ended; None if that took past `timeout` seconds, and the group was killed. The group is
    killed too when the launcher is interrupted or its `client` (the test process) is gone."""
    deadline, status = time.monotonic() + timeout, None
    try:
        while time.monotonic() <= deadline and os.getppid() == client:
            if status is None:
                done, waited = os.waitpid(pid, os.WNOHANG)
                status = os.waitstatus_to_exitcode(waited) if done else None
            if status is not None and not group_alive(pid):
                return status
            time.sleep(POLL_S)
    except BaseException:  # interrupted (Ctrl-C): the jobs must not run on
        end_group(pid)
        raise
    end_group(pid)
    if status is None:
        os.waitpid(pid, 0)
    return None


def serve() -> None:
    import snakemake.cli  # noqa: F401  (what every child shares: imported once, before any fork)

    client = os.getppid()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            run_child(request)
        print(json.dumps({"returncode": wait(pid, request["timeout"], client)}), flush=True)


if __name__ == "__main__":
    serve()
