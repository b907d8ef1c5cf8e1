"""The tests' Snakemake launcher: one Python that has imported Snakemake's CLI forks a child for each invocation,
and the child runs `python -m snakemake ARGS` as a fresh process would: the same interpreter and module, its own
argv, environment, working directory, output files, exit status and interpreter shutdown. It spares the ~2 s of
imports that each of the tests' hundred-odd invocations otherwise pays (a dry run takes 2.5 s, 2 of them imports).

Run as a script, it serves requests, one JSON line each on stdin, answering {"returncode": int | null} (null: the
timeout killed the child's process group)."""

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


def wait(pid: int, timeout: float) -> int | None:
    """The child's exit status as subprocess reports it (-N: killed by signal N); None if it ran past `timeout`
    seconds and was killed with its process group."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(POLL_S)


def serve() -> None:
    import snakemake.cli  # noqa: F401  (what every child shares: imported once, before any fork)

    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            run_child(request)
        print(json.dumps({"returncode": wait(pid, request["timeout"])}), flush=True)


if __name__ == "__main__":
    serve()
