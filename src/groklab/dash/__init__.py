"""The live dashboard: ``groklab dash`` serves a page that watches run directories as they grow.

    >>> from groklab.dash import make_server
    >>> srv = make_server("runs", port=0)   # then srv.serve_forever(); open srv.url
"""
from groklab.dash.scan import discover, listing, run_detail, sweep_detail
from groklab.dash.server import DashServer, make_server

__all__ = ["DashServer", "make_server", "discover", "listing", "run_detail", "sweep_detail"]
