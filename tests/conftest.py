import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from harness import KERNEL_NAME, Kernel


def pytest_addoption(parser):
    parser.addoption("--lab-screenshot", metavar="PATH", help="where the browser test of the sessions panel saves a "
                     "screenshot of JupyterLab (`make screenshot`: docs/jupyterlab.png, shown in the README)")


@pytest.fixture
def screenshot(request):
    return request.config.getoption("--lab-screenshot")


def pytest_configure(config):
    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        raise pytest.UsageError(
            f"the {KERNEL_NAME!r} kernelspec is not installed: run the tests with `make test`"
        ) from None


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernel shared by a module's tests that do not depend on each other's state."""
    k = Kernel(tmp_path_factory.mktemp("workspace"))
    yield k
    k.shutdown()


@pytest.fixture
def new_kernel(tmp_path):
    """A factory of kernels of the test's own (options, environment), shut down afterwards."""
    started = []

    def start(*options, env=None, cwd=None):
        k = Kernel(cwd or tmp_path, options, env)
        started.append(k)
        return k

    yield start
    for k in started:
        k.shutdown()
