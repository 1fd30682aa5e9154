"""``groklab dash``: the live page (``groklab export`` lives beside its code, groklab.runs.cli)."""
from __future__ import annotations

import sys


def cmd_dash(args) -> int:
    from groklab.dash.server import make_server
    srv = make_server(args.root, port=args.port, host=args.host, quiet=not args.verbose)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"groklab dash: warning: listening on {args.host}: anyone who can reach this "
              f"machine can read the runs under {srv.root}", file=sys.stderr)
    print(f"groklab dash: {srv.url}  (root {srv.root}; Ctrl-C to stop)", flush=True)
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
                   help="address to bind (default 127.0.0.1: this machine only)")
    d.add_argument("--verbose", action="store_true", help="log every request")
    d.set_defaults(func=cmd_dash)
