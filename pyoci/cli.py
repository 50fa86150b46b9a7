"""Command line, runc's grammar: `pyoci [global flags] <command> [flags] <args>`.

Go clients emit single-dash long flags (`-bundle`) and `--flag=value`: both are declared. Handlers are thin:
they parse and call one lifecycle function. Errors are logged once, here, as one line.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from pyoci import OCI_VERSION, __version__, logs
from pyoci.entry import SPAWNING, command_word
from pyoci.errors import PyociError
from pyoci.state import StateStore, default_root

# Modules that add their own subcommands with register(sub). Imported only when their command is the one
# being run (or for --help): `state`/`kill`/`delete` run on every containerd and podman call.
EXTRA_COMMANDS = {"exec": "pyoci.exec_cmd", "pause": "pyoci.cgroup_cmds", "resume": "pyoci.cgroup_cmds",
                  "update": "pyoci.cgroup_cmds", "ps": "pyoci.cgroup_cmds", "events": "pyoci.cgroup_cmds",
                  "network": "pyoci.network"}


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        # argparse would import shutil for the terminal width on every run, help or not.
        super().__init__(prog, indent_increment, max_help_position, width or int(os.environ.get("COLUMNS", 100)))


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        # Python 3.11 prefix-matches single-dash long flags even with allow_abbrev=False (`-r` would be
        # "ambiguous: -root, -rootless"): like Go's flag package, match options exactly.
        return []

    def error(self, message: str) -> Any:  # one line + usage, exit 1 like runc's "Incorrect Usage."
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(1)


def _flag(p: argparse.ArgumentParser, *names: str, **kw: Any) -> None:
    """Declare --name plus the single-dash long form Go clients use (-name)."""
    extra = [f"-{n[2:]}" for n in names if n.startswith("--")]
    p.add_argument(*names, *extra, **kw)


def _create_flags(p: argparse.ArgumentParser) -> None:
    _flag(p, "--bundle", "-b", default=".", help="path to the bundle directory (default: cwd)")
    _flag(p, "--pid-file", dest="pid_file", help="file to write the container init's pid to")
    _flag(p, "--console-socket", dest="console_socket", help="AF_UNIX socket that receives the pty master")
    _flag(p, "--no-pivot", dest="no_pivot", action="store_true", help="MS_MOVE + chroot instead of pivot_root")
    _flag(p, "--no-new-keyring", dest="no_new_keyring", action="store_true", help="keep the session keyring")
    _flag(p, "--preserve-fds", dest="preserve_fds", type=int, default=0, help="pass N extra fds (3..3+N-1)")
    _flag(p, "--pidfd-socket", dest="pidfd_socket", help=argparse.SUPPRESS)
    p.add_argument("id")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog="pyoci", description="pyoci: an OCI container runtime in Python", allow_abbrev=False)
    _flag(p, "--root", default=None, help="state directory (default /run/pyoci, $XDG_RUNTIME_DIR/pyoci non-root)")
    _flag(p, "--log", default=None, help="log file (default stderr)")
    _flag(p, "--log-format", dest="log_format", choices=["text", "json"], default="text")
    _flag(p, "--debug", action="store_true")
    _flag(p, "--systemd-cgroup", dest="systemd_cgroup", action="store_true")
    _flag(p, "--rootless", default="auto", help=argparse.SUPPRESS)
    _flag(p, "--version", "-v", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)

    c = sub.add_parser("create", help="create a container", allow_abbrev=False)
    _create_flags(c)
    c.set_defaults(func=cmd_create)
    r = sub.add_parser("run", help="create and start a container", allow_abbrev=False)
    _create_flags(r)
    _flag(r, "--detach", "-d", action="store_true")
    _flag(r, "--keep", action="store_true", help="do not delete the container after it exits")
    _flag(r, "--no-subreaper", dest="no_subreaper", action="store_true", help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("start", help="start a created container")
    s.add_argument("id")
    s.set_defaults(func=cmd_start)
    st = sub.add_parser("state", help="print a container's state JSON")
    st.add_argument("id")
    st.set_defaults(func=cmd_state)
    k = sub.add_parser("kill", help="send a signal to the container's init")
    _flag(k, "--all", "-a", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    k.set_defaults(func=cmd_kill)
    d = sub.add_parser("delete", help="delete a container")
    _flag(d, "--force", "-f", action="store_true")
    d.add_argument("id")
    d.set_defaults(func=cmd_delete)
    ls = sub.add_parser("list", help="list containers")
    _flag(ls, "--format", "-f", choices=["table", "json"], default="table")
    _flag(ls, "--quiet", "-q", action="store_true")
    ls.set_defaults(func=cmd_list)
    sp = sub.add_parser("spec", help="write a starter config.json")
    _flag(sp, "--bundle", "-b", default=".")
    _flag(sp, "--rootless", action="store_true")
    sp.set_defaults(func=cmd_spec)
    f = sub.add_parser("features", help="print the OCI features JSON")
    f.set_defaults(func=cmd_features)
    word = command_word(sys.argv[1:] if argv is None else argv)
    wanted = [EXTRA_COMMANDS[word]] if word in EXTRA_COMMANDS else []
    if word is None or (word not in _CORE and word not in EXTRA_COMMANDS):  # help/unknown: list all
        wanted = list(dict.fromkeys(EXTRA_COMMANDS.values()))
    if wanted:
        import importlib
        import importlib.util
        for mod in wanted:
            if importlib.util.find_spec(mod) is not None:
                importlib.import_module(mod).register(sub)
    return p


_CORE = {"create", "run", "start", "state", "kill", "delete", "list", "spec", "features"}


def _store(args: argparse.Namespace) -> StateStore:
    return StateStore(args.root or default_root())


def _create_opts(args: argparse.Namespace) -> Any:
    from pyoci.process import CreateOptions
    if args.preserve_fds < 0:
        raise PyociError(f"--preserve-fds: {args.preserve_fds} must not be negative")
    return CreateOptions(bundle=os.path.abspath(args.bundle),
                         pid_file=os.path.abspath(args.pid_file) if args.pid_file else None,
                         console_socket=args.console_socket, no_pivot=args.no_pivot,
                         no_new_keyring=args.no_new_keyring, preserve_fds=args.preserve_fds,
                         systemd_cgroup=args.systemd_cgroup)


def cmd_create(args: argparse.Namespace) -> int:
    from pyoci import lifecycle
    lifecycle.create(_store(args), args.id, _create_opts(args))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pyoci import lifecycle
    return lifecycle.run(_store(args), args.id, _create_opts(args), detach=args.detach, keep=args.keep)


def cmd_start(args: argparse.Namespace) -> int:
    from pyoci import lifecycle
    lifecycle.start(_store(args), args.id)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    from pyoci import lifecycle
    sys.stdout.write(lifecycle.dump_state(lifecycle.state(_store(args), args.id)))
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    from pyoci import lifecycle
    from pyoci.linux.pids import parse_signal
    try:
        sig = parse_signal(args.signal)
    except ValueError as exc:
        raise PyociError(str(exc)) from None
    lifecycle.kill(_store(args), args.id, sig, all_procs=args.all)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from pyoci import lifecycle
    lifecycle.delete(_store(args), args.id, force=args.force)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from pyoci import lifecycle
    store = _store(args)
    if args.root and not os.path.isdir(store.root):
        raise PyociError(f"--root {args.root!r}: no such directory")
    states = lifecycle.list_states(store)
    if args.quiet:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif args.format == "json":
        sys.stdout.write(lifecycle.dump_state(states or None) + "\n")
    else:
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [[s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]] for s in states]
        widths = [max(12, *(len(r[i]) for r in rows)) + 3 for i in range(6)]
        for r in rows:
            sys.stdout.write("".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from pyoci import spec
    spec.write_spec(args.bundle, args.rootless)
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    import json
    from pyoci import lifecycle
    sys.stdout.write(json.dumps(lifecycle.features(), indent=4) + "\n")
    return 0


def _close_inherited_fds(args: argparse.Namespace) -> str | None:
    """Before opening anything: check the fds we are asked to pass, close every other inherited fd.
    The container init is forked, not exec'ed, so CLOEXEC would not keep a caller's fd out of it while the
    container sits in `created` (security.md B1, class 2). Returns an error message instead of raising:
    logging is not set up yet."""
    from pyoci.linux import libc
    from pyoci.linux.pids import listen_fds
    preserve = getattr(args, "preserve_fds", 0) or 0
    passed = listen_fds() + max(0, preserve)
    for fd in range(3, 3 + passed):
        try:
            os.fstat(fd)
        except OSError:
            return f"--preserve-fds {preserve}: unable to stat preserved-fd {fd}: it is not open"
    libc.close_range(3 + passed)
    return None


def version_text() -> str:
    return f"pyoci version {__version__}\nspec: {OCI_VERSION}\npython: {sys.version.split()[0]}\n"


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if command_word(args_in) is None and any(a in ("--version", "-v", "-version") for a in args_in):
        # podman/containerd probe this often, also as `--root X --version`
        sys.stdout.write(version_text())
        return 0
    # The interpreter was sealed (class 1) by pyoci.entry, before this module was imported.
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    fd_error = _close_inherited_fds(args) if args.command in SPAWNING else None
    logs.setup(args.log, args.log_format, args.debug)  # after the close: the log fd must survive it
    if fd_error:
        logs.fatal(fd_error)
        return getattr(args, "error_exit_code", 1)
    if args.version:
        sys.stdout.write(version_text())
        return 0
    if not args.command:
        parser.print_help(sys.stderr)
        return 1
    try:
        if args.systemd_cgroup and not os.path.isdir("/run/systemd/system") and args.command in ("create", "run"):
            raise PyociError("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system)")
        return int(args.func(args))
    except PyociError as exc:
        logs.fatal(str(exc))
        return getattr(args, "error_exit_code", exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line, never a traceback (--debug has it)
        logs.fatal(f"{args.command}: internal error: {exc.__class__.__name__}: {exc}")
        logging.getLogger(__name__).debug("details", exc_info=True)
        return getattr(args, "error_exit_code", 1)


if __name__ == "__main__":
    raise SystemExit(main())
