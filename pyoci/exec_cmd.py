"""`pyoci exec`: runc's flags and exit codes (cli-surface.md "exec", §5); the work is in pyoci.tenant."""
from __future__ import annotations

import argparse
import os
from typing import Any


def register(sub: Any) -> None:
    from pyoci.cli import _flag
    p = sub.add_parser("exec", help="run a process inside a running container", allow_abbrev=False)
    _flag(p, "--console-socket", dest="console_socket", help="AF_UNIX socket that receives the pty master")
    _flag(p, "--cwd", help="current working directory in the container")
    _flag(p, "--env", "-e", action="append", default=[], help="set an environment variable (repeatable)")
    _flag(p, "--tty", "-t", action="store_true", help="allocate a pseudo-TTY")
    _flag(p, "--user", "-u", help="uid[:gid] of the process")
    _flag(p, "--additional-gids", "-g", dest="additional_gids", action="append", default=[],
          help="additional gid (repeatable)")
    _flag(p, "--process", "-p", help="process.json (an OCI process object); other process flags are ignored")
    _flag(p, "--detach", "-d", action="store_true", help="return once the process runs")
    _flag(p, "--pid-file", dest="pid_file", help="file to write the process' pid to")
    _flag(p, "--process-label", dest="process_label", help="SELinux label of the process")
    _flag(p, "--apparmor", help="AppArmor profile of the process")
    _flag(p, "--no-new-privs", dest="no_new_privs", action="store_true", help="set no_new_privs")
    _flag(p, "--cap", "-c", action="append", default=[], help="add a capability (repeatable)")
    _flag(p, "--preserve-fds", dest="preserve_fds", type=int, default=0, help="pass N extra fds (3..3+N-1)")
    _flag(p, "--ignore-paused", dest="ignore_paused", action="store_true", help="exec in a paused container")
    p.add_argument("id")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="command and arguments")  # not `command`: cli.main's
    # runc exec.go: every failure before the process runs exits 255 (fatalWithCode).
    p.set_defaults(func=cmd_exec, error_exit_code=255)


def cmd_exec(args: argparse.Namespace) -> int:
    from pyoci import config, lifecycle, tenant
    from pyoci.cli import _store
    from pyoci.errors import PyociError
    store = _store(args)
    if args.preserve_fds < 0:
        raise PyociError(f"--preserve-fds: {args.preserve_fds} must not be negative")
    if args.process:
        proc = config.load_process(args.process)
    elif not args.argv:
        raise PyociError("exec: a command is required unless --process is given")
    else:
        proc = tenant.build_process(
            lifecycle.Container(store, args.id).spec().get("process") or {}, args.argv, env=args.env,
            cwd=args.cwd, user=args.user, additional_gids=args.additional_gids, caps=args.cap, tty=args.tty,
            no_new_privs=args.no_new_privs, process_label=args.process_label, apparmor=args.apparmor)
    opts = tenant.ExecOptions(process=proc, detach=args.detach, console_socket=args.console_socket,
                              pid_file=os.path.abspath(args.pid_file) if args.pid_file else None,
                              preserve_fds=args.preserve_fds, ignore_paused=args.ignore_paused)
    return tenant.exec_process(store, args.id, opts)
