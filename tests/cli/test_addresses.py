"""Kernel addresses and store URLs: what parses, what does not, and the CLI's exit code 2 for the rest.

No kernel is started here: every error is found before connecting.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from nbmigrate import addresses
from nbmigrate import cli as cli_module
from nbmigrate.addresses import (
    AddressError,
    ConnectionFile,
    RestKernel,
    parse_kernel_address,
    parse_store_url,
)

from ..conftest import NOTEBOOKS
from .conftest import cli

CONNECTION = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
              "ip": "127.0.0.1", "key": "k", "transport": "tcp", "signature_scheme": "hmac-sha256"}


def fake_connection_file(folder: Path, name: str) -> Path:
    """A well-formed connection file whose ports nothing listens on."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(CONNECTION))
    return path


# -- REST forms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("http://127.0.0.1:8888/api/kernels/1c2d-3e?token=abc", RestKernel("http://127.0.0.1:8888/", "1c2d-3e", "abc")),
    ("https://hub.example.org/user/ann/api/kernels/k1/?token=t",
     RestKernel("https://hub.example.org/user/ann/", "k1", "t")),
    ("http://localhost:8888/?token=abc", RestKernel("http://localhost:8888/", None, "abc")),
    ("http://localhost:8888", RestKernel("http://localhost:8888/", None, None)),
    ("http://localhost:8888/lab?token=abc", RestKernel("http://localhost:8888/", None, "abc")),
    ("http://localhost:8888/user/ann/tree?token=x", RestKernel("http://localhost:8888/user/ann/", None, "x")),
    ("HTTP://[::1]:9000/api/kernels/abc", RestKernel("http://[::1]:9000/", "abc", None)),
])
def test_rest_addresses_parse(text: str, expected: RestKernel) -> None:
    got = parse_kernel_address(text)
    assert got == expected
    assert got.token == expected.token  # not part of repr: a token must not leak into logs


@pytest.mark.parametrize(("text", "message"), [
    ("http://localhost:8888/api/sessions/abc", "/api/kernels/<kernel id>"),
    ("http://localhost:8888/api/kernels", "/api/kernels/<kernel id>"),
    ("http://localhost:99999/", "port"),
    ("http:///api/kernels/x", "no host"),
    ("http://h:1/?token=", "token= is empty"),
    ("http://h:1/?token=a&token=b", "more than one token"),
    ("ws://h:1/api/kernels/x", "ws:// is not supported"),
    ("", "empty kernel address"),
])
def test_bad_rest_addresses(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_kernel_address(text)


# -- connection files ----------------------------------------------------------------------------------


def test_connection_file_by_path_id_and_prefix(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    path = fake_connection_file(runtime, "kernel-4f2a9c-77.json")
    fake_connection_file(runtime, "kernel-5b00.json")
    for text in (str(path), "kernel-4f2a9c-77.json", "4f2a9c-77", "4f2a"):
        assert parse_kernel_address(text, runtime_dir=runtime) == ConnectionFile(path.resolve())


def test_connection_file_errors(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    fake_connection_file(runtime, "kernel-ab1.json")
    fake_connection_file(runtime, "kernel-ab2.json")
    with pytest.raises(AddressError, match="matches 2 kernels"):
        parse_kernel_address("ab", runtime_dir=runtime)
    with pytest.raises(AddressError, match=r"no kernel 'zz'.*runtime directory"):
        parse_kernel_address("zz", runtime_dir=runtime)
    with pytest.raises(AddressError, match="no kernel connection file at"):
        parse_kernel_address(str(tmp_path / "missing" / "kernel-1.json"), runtime_dir=runtime)
    garbage = tmp_path / "notes.json"
    garbage.write_text("[1, 2]")
    with pytest.raises(AddressError, match="is not a kernel connection file"):
        parse_kernel_address(str(garbage), runtime_dir=runtime)
    with pytest.raises(AddressError, match="is not a file"):
        parse_kernel_address(str(tmp_path), runtime_dir=runtime)


# -- store URLs ---------------------------------------------------------------------------------------


def test_store_urls(tmp_path: Path) -> None:
    assert parse_store_url("ckpt", cwd=tmp_path).url == str(tmp_path / "ckpt")
    assert parse_store_url("~/ckpt").url == str(Path("~/ckpt").expanduser())
    assert parse_store_url("s3://bucket/prefix").protocols == ("s3",)
    assert parse_store_url("file:///tmp/ckpt").url == "file:///tmp/ckpt"
    chained = parse_store_url("simplecache::s3://bucket/x")
    assert chained.protocols == ("simplecache", "s3") and not chained.in_process_only
    assert parse_store_url("memory://ckpt").in_process_only


@pytest.mark.parametrize(("text", "message"), [
    ("s3:/bucket/x", "write s3://bucket/x"),
    ("foo://x", "unknown storage protocol 'foo'"),
    ("file://relative/x", "needs an absolute path"),
    ("", "empty store URL"),
    ("s3://b::x", "must be a protocol"),
])
def test_bad_store_urls(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        parse_store_url(text)


# -- the CLI's exit code 2 ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["checkpoint", "restore", "migrate", "inspect", "run", "install", "uninstall"])
def test_every_command_explains_itself(command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.stdout
    if command not in ("install", "uninstall"):
        assert "Example" in result.stdout


def test_malformed_store_url_exits_2(tmp_path: Path) -> None:
    kernel = fake_connection_file(tmp_path, "kernel-x.json")  # parsed, never reached: the URL fails first
    for url, message in (("s3:/x", "is not a URL: write s3://x"), ("foo://x", "unknown storage protocol 'foo'")):
        result = cli("checkpoint", kernel, "--to", url)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and not result.stdout
        result = cli("restore", url, "--into", kernel, "--json")
        assert result.exit_code == 2
        assert json.loads(result.stdout) == {"ok": False, "exit_code": 2, "error": result.stderr[7:].strip()}
    assert cli("inspect", "s3:/x").exit_code == 2


def test_bad_kernel_address_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    result = cli("checkpoint", "no-such-kernel", "--to", tmp_path / "ckpt")
    assert result.exit_code == 2
    assert "no kernel 'no-such-kernel'" in result.stderr
    result = cli("migrate", "http://h:1/api/kernels/a", "--to", "ws://h:1/")
    assert result.exit_code == 2 and "ws:// is not supported" in result.stderr


def test_dead_kernel_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "CONNECT_TIMEOUT", 1.0)
    stale = fake_connection_file(tmp_path, "kernel-stale.json")
    result = cli("checkpoint", stale, "--to", tmp_path / "ckpt")
    assert result.exit_code == 2
    assert f"no kernel answers at {stale.resolve()}" in result.stderr


def test_rest_kernel_without_server_extension_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = addresses.importlib.import_module

    def without_server(name: str, package: str | None = None) -> ModuleType:
        if name.startswith("nbmigrate.server"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, package)

    monkeypatch.setattr(addresses.importlib, "import_module", without_server)
    result = cli("checkpoint", "http://127.0.0.1:1/api/kernels/abc?token=secret", "--to", tmp_path / "c")
    assert result.exit_code == 2
    assert "REST kernels need the nbmigrate server extension" in result.stderr
    assert "secret" not in result.stderr


def test_other_usage_errors_exit_2(tmp_path: Path) -> None:
    kernel = fake_connection_file(tmp_path, "kernel-x.json")
    other = fake_connection_file(tmp_path, "kernel-y.json")
    assert cli("checkpoint", kernel, "--to", tmp_path, "--bandwidth", "fast").exit_code == 2
    assert cli("checkpoint", kernel, "--to", tmp_path, "--prefer", "speed").exit_code == 2
    assert cli("checkpoint", kernel).exit_code == 2  # --to is required
    same = cli("migrate", kernel, "--to", kernel)
    assert same.exit_code == 2 and "are the same kernel" in same.stderr
    memory = cli("migrate", kernel, "--to", other, "--via", "memory://x")
    assert memory.exit_code == 2 and "memory://" in memory.stderr
    notebook = NOTEBOOKS / "session_objects.ipynb"
    upto = cli("run", notebook, "--checkpoint", tmp_path / "c", "--upto", "no-such-cell")
    assert upto.exit_code == 2 and "no cell with that id" in upto.stderr
    upto = cli("run", notebook, "--checkpoint", tmp_path / "c", "--upto", "99")
    assert upto.exit_code == 2 and "has 10 cells" in upto.stderr
    not_notebook = tmp_path / "x.ipynb"
    not_notebook.write_text("{")
    bad = cli("run", not_notebook, "--checkpoint", tmp_path / "c")
    assert bad.exit_code == 2 and "not a notebook" in bad.stderr


def test_progress_bars_draw_each_phase() -> None:
    import io

    from rich.console import Console

    from nbmigrate.cli import ProgressBars

    out = io.StringIO()
    with ProgressBars(Console(file=out, force_terminal=True, width=100)) as bars:
        bars("write", 512, 2048)
        bars("write", 2048, 2048)
        bars("replay", 3, 4)
    text = out.getvalue()
    assert "writing checkpoint" in text and "replaying cells" in text
    assert "3/4 cells" in text
