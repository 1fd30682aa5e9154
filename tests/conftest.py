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
