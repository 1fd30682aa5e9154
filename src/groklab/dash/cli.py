"""``groklab dash``: the live page (``groklab export`` lives beside its code, groklab.runs.cli)."""
from __future__ import annotations


def cmd_dash(args) -> int:
    from groklab.dash.server import make_server
    srv = make_server(args.root, port=args.port, host=args.host, quiet=not args.verbose,
                      allow_remote=args.allow_remote)
    where = ("" if srv.host_names is not None else
             f"listening on {args.host} (--allow-remote): anyone who can reach this machine can read "
             f"every run under the root; ")
    print(f"groklab dash: {srv.url}  (root {srv.root}; {where}Ctrl-C to stop)", flush=True)
    try:
        srv.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


def register(subparsers) -> None:
    d = subparsers.add_parser("dash", help="a live page in the browser: runs, sweeps, curves, measures")
    d.add_argument("--root", default="runs", help="folder holding run and sweep directories (default: runs)")
    d.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    d.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; ::1 and localhost too; "
                        "any other needs --allow-remote)")
    d.add_argument("--allow-remote", action="store_true",
                   help="allow a --host beyond loopback (0.0.0.0: every interface); whoever reaches it "
                        "reads every run under --root")
    d.add_argument("--verbose", action="store_true", help="log every request")
    d.set_defaults(func=cmd_dash)
