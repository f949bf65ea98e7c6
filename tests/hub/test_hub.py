"""The hub recipe (docs/hub.md) with a real JupyterHub: a user's session survives its server being
stopped (by an operator, or culled by jupyterhub-idle-culler) and comes back when the server is
spawned again, through the store the servers share.

Each case runs a small notebook's cells in a session, stops the server, spawns it again and opens
the same notebook: its variables are back and its ``after_restore`` cells print what they print in a
session that never stopped (a local kernel that ran the notebook to the end).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from nbmigrate.remote import Kernel
from tests.hub.conftest import Hub, NotebookKernel

pytestmark = [pytest.mark.hub, pytest.mark.kernel, pytest.mark.timeout(600)]

NOTEBOOK = "work/analysis.ipynb"
SECOND = "work/second.ipynb"

CELLS = [
    "%load_ext nbmigrate",
    "import os\nimport numpy as np\nrng = np.random.default_rng(7)\ndata = rng.normal(size=2000)\n"
    "alias = {'data': data}",
    "def squares(n):\n    for i in range(n):\n        yield i * i\n\ngen = squares(10)\nnext(gen)",
    "with open('numbers.txt', 'w') as f:\n    f.write('3 4 5')\n"
    "with open('numbers.txt') as f:\n    numbers = [int(x) for x in f.read().split()]",
    "data *= 2\ntotal = float(data.sum())",
]
AFTER_RESTORE = [
    "print(round(total, 6), alias['data'] is data, numbers)",
    "print(next(gen), next(gen))",
    "data += 1\nprint(round(float(alias['data'].sum()), 6), os.path.basename(os.getcwd()))",
]


def write_notebook(home: Path, path: str) -> None:
    """The notebook file in the user's home: cells, then the ``after_restore`` tail."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS] + [
        nbformat.v4.new_code_cell(c, metadata={"tags": ["after_restore"]}) for c in AFTER_RESTORE]
    target = home / path
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


def run(kernel: NotebookKernel, cells: list[str]) -> list[str]:
    outputs = []
    for cell in cells:
        out = kernel.execute(cell)
        assert out.error is None, f"cell {cell!r} in kernel {kernel.kernel_id} raised {out.error}"
        outputs.append(out.text)
    return outputs


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """What the ``after_restore`` cells print in a session that never stopped: a local kernel, in a
    folder named like the notebook's, that runs the notebook to the end."""
    home = tmp_path_factory.mktemp("reference")
    (home / "work").mkdir()
    env = {**os.environ, "IPYTHONDIR": str(home / "ipython"), "NBMIGRATE_SECRET_FILE": str(home / "secret")}
    with Kernel.start(cwd=str(home / "work"), env=env) as kernel:
        outputs = [kernel.execute(cell).text for cell in [*CELLS, *AFTER_RESTORE]]
    return outputs[len(CELLS):]


def open_notebooks(hub: Hub, user: str, *paths: str) -> tuple[str, list[NotebookKernel]]:
    """Spawn the user's server, write the notebook files into the user's home and open them."""
    url = hub.start_server(user)
    for path in paths:
        write_notebook(hub.user_home(user), path)
    return url, [NotebookKernel(url, hub.token, path) for path in paths]


def without_resume_message(hub: Hub, output: str) -> str:
    """The first cell's output without the extension's resume message, which must be there."""
    lines = output.splitlines(keepends=True)
    assert any(line.startswith("nbmigrate: resumed") for line in lines), (
        f"no resume message in the notebook: first output {output!r}; hub log:\n{hub.server_log_tail()}")
    return "".join(line for line in lines if not line.startswith("nbmigrate: "))


def reopen(hub: Hub, user: str, expected: list[str]) -> str:
    """Spawn the user's server again, open the notebook, check that the session came back and that the
    notebook said so (the message comes with the first cell's output); the server's URL."""
    url = hub.start_server(user)
    kernel = NotebookKernel(url, hub.token, NOTEBOOK)
    try:
        outputs = run(kernel, AFTER_RESTORE)
    finally:
        kernel.shutdown()
    outputs[0] = without_resume_message(hub, outputs[0])
    assert outputs == expected, f"hub log:\n{hub.server_log_tail()}"
    return url


def test_stopped_server_resumes_sessions_elsewhere(hub_factory: Callable[..., Hub], s3_bucket: str,
                                                   expected: list[str]) -> None:
    """Two live notebooks; the server is stopped as the culler does (DELETE: SIGINT to the server, which
    drains its kernels into the S3 store); the user comes back on another hub (another "node": other
    processes, another home, sharing only the store, the hub's secret key and the user's files): both
    sessions come back."""
    recipe = {"store": f"{s3_bucket}/sessions", "hibernate_after": "0", "cull_timeout": "0",
              "drain_deadline": "40", "secret_key": "hub-test-key"}
    hub = hub_factory(**recipe)
    _, (kernel, second) = open_notebooks(hub, "ada", NOTEBOOK, SECOND)
    try:
        run(kernel, CELLS)
        run(second, ["%load_ext nbmigrate", "answer = 41"])
    finally:
        kernel.close()
        second.close()

    hub.stop_server("ada")
    hub.stop()

    elsewhere = hub_factory(**recipe)
    shutil.copytree(hub.user_home("ada") / "work", elsewhere.user_home("ada") / "work")  # a home volume
    url = reopen(elsewhere, "ada", expected)
    other = NotebookKernel(url, elsewhere.token, SECOND)
    try:
        assert without_resume_message(elsewhere, other.execute("print(answer + 1)").text) == "42\n"
    finally:
        other.shutdown()


def test_culled_server_resumes_hibernated_session(hub_factory: Callable[..., Hub], tmp_path: Path,
                                                  expected: list[str]) -> None:
    """The idle culler as a hub service with short timeouts: the kernel hibernates first (into a shared
    folder), the culler then stops the idle server, and the respawned server resumes the session."""
    store = tmp_path / "shared-store"
    hub = hub_factory(store=str(store), hibernate_after="3", hibernate_check_interval="1",
                      cull_timeout="15", cull_every="2", secret_key="hub-test-key",
                      environment={"JUPYTERHUB_ACTIVITY_INTERVAL": "1"})
    url, (kernel,) = open_notebooks(hub, "grace", NOTEBOOK)
    try:
        run(kernel, CELLS)
    finally:
        kernel.close()

    # Hibernated while the server still runs (asked without counting as activity), culled after.
    hub.wait(lambda: not hub.http.get(f"{url}api/kernels?no_track_activity=1", timeout=30).json(),
             120, "the idle kernel to hibernate")
    assert any(store.joinpath("grace").iterdir()), f"nothing in the user's prefix of the store {store}"
    hub.wait_stopped("grace", 180)

    reopen(hub, "grace", expected)
