"""The extension's REST rules against a real Jupyter server: tokens, names, archives, errors, config."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from nbmigrate.addresses import AddressError, RestKernel
from nbmigrate.server.archive import ArchiveError
from nbmigrate.server.client import RestError, RestKernelHandle, RestServer, connect
from nbmigrate.store import CheckpointStore
from tests.server.conftest import JupyterServer
from tests.unit.test_store import make_manifest, parts_for

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
ENDPOINTS = [
    ("GET", "api/nbmigrate"),
    ("GET", "api/nbmigrate/checkpoints"),
    ("GET", "api/nbmigrate/checkpoints/some/archive"),
    ("PUT", "api/nbmigrate/checkpoints/some/archive"),
    ("POST", "api/nbmigrate/kernels/0-0-0-0-0/checkpoint"),
    ("POST", "api/nbmigrate/kernels/0-0-0-0-0/restore"),
    ("GET", "api/nbmigrate/kernels/0-0-0-0-0/status"),
    ("GET", "api/nbmigrate/kernels/0-0-0-0-0/plan"),
]


def make_checkpoint(url: str, *payloads: bytes) -> CheckpointStore:
    store = CheckpointStore(url)
    refs = [store.write_blob(parts_for(p)) for p in payloads]
    store.write_manifest(make_manifest(dict(enumerate(refs))))
    return store


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_endpoint_needs_the_token(server: JupyterServer, token: str | None) -> None:
    for method, path in ENDPOINTS:
        response = server.request(method, path, token=token, data=b"{}")
        assert response.status_code == 403, (method, path, response.text)
    assert not server.store.exists() or not any(server.store.iterdir())
    assert server.request("GET", "api/nbmigrate").json()["store_url"] == str(server.store)


def test_token_in_the_url_works_too(server: JupyterServer) -> None:
    response = server.request("GET", f"api/nbmigrate/checkpoints?token={server.token}", token=None)
    assert response.status_code == 200 and response.json()["checkpoints"] == []


def test_unknown_kernel_is_a_clear_404(server: JupyterServer) -> None:
    for method, op in (("POST", "checkpoint"), ("POST", "restore"), ("GET", "status"), ("GET", "ping")):
        body = {"name": "x"} if op == "restore" else {}
        response = server.request(method, f"api/nbmigrate/kernels/no-such-kernel/{op}",
                                  json=body if method == "POST" else None)
        assert response.status_code == 404
        assert response.json() == {"message": "no kernel no-such-kernel on this server"}
    handle = RestKernelHandle(RestServer(server.url, server.token), "no-such-kernel")
    with pytest.raises(RestError, match="no kernel no-such-kernel on this server"):
        handle.operation("checkpoint")
    with pytest.raises(AddressError, match="no kernel no-such-kernel"), \
            connect(RestKernel(server.url, "no-such-kernel", server.token)):
        pass


def test_connect_rejects_a_wrong_token(server: JupyterServer) -> None:
    with pytest.raises(AddressError, match="403"), connect(RestKernel(server.url, None, "wrong")):
        pass


@pytest.mark.parametrize("body", [{"bogus": 1}, {"prefer": "fastest"}, {"bandwidth": -1}, {"bandwidth": "fast"},
                                  {"best_effort": "yes"}, {"url": 3}, [1, 2]])
def test_malformed_operation_requests_are_400(server: JupyterServer, body: Any) -> None:
    response = server.request("POST", "api/nbmigrate/kernels/no-such-kernel/checkpoint", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"]


def test_restore_needs_exactly_one_of_url_and_name(server: JupyterServer) -> None:
    for body in ({}, {"url": "/x", "name": "x"}, {"name": "../x"}):
        response = server.request("POST", "api/nbmigrate/kernels/no-such-kernel/restore", json=body)
        assert response.status_code == 400, response.text


def test_wrong_method_for_an_operation(server: JupyterServer) -> None:
    assert server.request("GET", "api/nbmigrate/kernels/no-such-kernel/checkpoint").status_code == 405
    assert server.request("POST", "api/nbmigrate/kernels/no-such-kernel/status", json={}).status_code == 405


@pytest.mark.parametrize("name", ["%2E", "%2E%2E", "..%2Fescape", "a%20b", "x" * 129, "%2Fetc"])
def test_bad_checkpoint_names_are_400(server: JupyterServer, name: str) -> None:
    for method in ("GET", "PUT"):
        response = server.request(method, f"api/nbmigrate/checkpoints/{name}/archive", data=b"")
        assert response.status_code == 400, (method, name, response.text)
        assert "invalid checkpoint name" in response.json()["message"]


def test_unknown_checkpoint_is_404(server: JupyterServer) -> None:
    response = server.request("GET", "api/nbmigrate/checkpoints/never-made/archive")
    assert response.status_code == 404
    assert response.json()["message"] == f"no checkpoint never-made in {server.store}"


def _tar(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("member", ["../evil", "../../evil", "/tmp/evil-nbmigrate", "blobs/../../evil"])
def test_upload_with_a_path_escaping_member_is_400(server: JupyterServer, member: str) -> None:
    response = server.request("PUT", "api/nbmigrate/checkpoints/victim/archive", data=_tar(member, b"owned"))
    assert response.status_code == 400, response.text
    assert repr(member) in response.json()["message"]
    assert response.json()["type"] == "ArchiveError"
    evil = [p for p in server.home.rglob("*evil*")]
    assert evil == [] and not Path("/tmp/evil-nbmigrate").exists()
    assert not (server.store / "victim" / "manifest.json").exists()


def test_upload_list_and_download_round_trip(server: JupyterServer, tmp_path: Path) -> None:
    src = make_checkpoint(str(tmp_path / "src"), b"a" * 3_000_000, b"b")
    rest = RestServer(server.url, server.token)
    uploaded = rest.upload_checkpoint(src.url, "round-trip")
    assert uploaded["name"] == "round-trip" and Path(uploaded["url"]) == server.store / "round-trip"
    assert {"name": "round-trip", "url": uploaded["url"]} in rest.list_checkpoints()

    received = rest.download_checkpoint("round-trip", str(tmp_path / "back"))
    assert received.files == 3
    back = CheckpointStore(str(tmp_path / "back"))
    assert back.read_manifest() == src.read_manifest()  # signature and content intact

    again = rest.upload_checkpoint(src.url, "round-trip")  # the same blobs again: verified, not rewritten
    assert again["skipped"] == 2

    progress: list[tuple[int, int]] = []  # server to server, through this process only
    copied = rest.send_checkpoint("round-trip", RestServer(server.url, server.token), "copy",
                                  progress=lambda *p: progress.append(p))
    assert copied["name"] == "copy" and progress[-1][0] == progress[-1][1] > 3_000_000
    assert CheckpointStore(copied["url"]).read_manifest() == src.read_manifest()


def test_damaged_checkpoint_is_never_downloaded_whole(server: JupyterServer, tmp_path: Path) -> None:
    src = make_checkpoint(str(tmp_path / "src"), b"c" * 3_000_000)
    rest = RestServer(server.url, server.token)
    rest.upload_checkpoint(src.url, "damaged")
    blob = next((server.store / "damaged" / "blobs").iterdir())
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(data)
    with pytest.raises((RestError, ArchiveError), match=r"cut the transfer short|truncated"):
        rest.download_checkpoint("damaged", str(tmp_path / "copy"))
    assert not (tmp_path / "copy" / "manifest.json").exists()
    assert "checksum mismatch" in server.log

    blob.write_bytes(data[:-1])  # now the size is wrong too: refused before the first byte
    response = server.request("GET", "api/nbmigrate/checkpoints/damaged/archive")
    assert response.status_code == 409 and "damaged" in response.json()["message"]


def test_shipped_config_file_enables_the_extension(server_factory: Any, tmp_path: Path) -> None:
    store = tmp_path / "elsewhere"
    server = server_factory("configured", f"--NbmigrateExtension.store_url={store}", extension=False,
                            env={"JUPYTER_CONFIG_PATH": str(REPO / "jupyter-config")})
    assert server.request("GET", "api/nbmigrate").json()["store_url"] == str(store)


def test_connect_to_a_bare_server_starts_a_kernel_and_drops_it_on_failure(server: JupyterServer) -> None:
    with pytest.raises(RuntimeError, match="migration failed"), \
            connect(RestKernel(server.url, None, server.token)) as handle:
        assert handle.started and handle.operation("ping")["monitoring"] is False
        raise RuntimeError("migration failed")
    assert handle.kernel_id not in [k["id"] for k in server.request("GET", "api/kernels").json()]
