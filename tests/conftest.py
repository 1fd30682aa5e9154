"""Shared fixtures."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models: a second thread only waits for the scheduler on a shared machine.
    A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def server(tmp_path):
    """The dashboard's server on ``tmp_path``, on a free loopback port (tests/test_dash*.py)."""
    import threading

    from groklab.dash.server import make_server
    srv = make_server(tmp_path, port=0)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
