"""Weight files: registry, SHA-256 checks, fetch on first use, `sirem weights`.

Downloads come from an http.server on 127.0.0.1 in a thread, which counts the requests; the
registry's URLs and hashes point at it through ``registry=`` or ``SIREM_WEIGHTS_REGISTRY``.
Nothing here reaches the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sirem_cli.cli import app
from sirem_cli.errors import InputError
from sirem_cli.metrics import weights as W

runner = CliRunner()


class _Server:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1; ``requests`` lists the paths asked."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.stall_s = 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                half = len(body) // 2
                self.wfile.write(body[:half])
                self.wfile.flush()
                if server.stall_s:
                    time.sleep(server.stall_s)
                self.wfile.write(body[half:])

            def log_message(self, *args: object) -> None:
                pass

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (timeout test) is expected

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _content(name: str) -> bytes:
    """Deterministic stand-in bytes for a weight file (a few hundred KiB)."""
    seed = hashlib.sha256(name.encode()).digest()
    return b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range(9000))


def _entry(url: str, body: bytes) -> dict:
    return {"url": url, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}


@pytest.fixture
def home(tmp_path, monkeypatch, server):
    """TORCH_HOME in tmp, online, and a test registry serving stand-ins of the three files."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("SIREM_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SIREM_DOWNLOAD_TIMEOUT", raising=False)
    files = {}
    for name in W.REGISTRY:
        body = _content(name)
        server.files[f"/w/{name}"] = body
        files[name] = _entry(server.url(f"/w/{name}"), body)
    reg_path = tmp_path / "registry.json"
    reg_path.write_text(json.dumps({"files": files}))
    monkeypatch.setenv("SIREM_WEIGHTS_REGISTRY", str(reg_path))
    return {"hub": tmp_path / "torch_home" / "hub" / "checkpoints", "registry": reg_path}


def _set_registry(path: Path, name: str, **fields) -> None:
    doc = json.loads(path.read_text())
    doc["files"][name].update(fields)
    path.write_text(json.dumps(doc))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the registry -------------------------------------------------------------------------


def test_registry_pins_the_published_files():
    assert W.METRIC_FILES == {
        "lpips": ("alexnet-owt-7be5be79.pth", "alex.pth"),
        "fid": ("pt_inception-2015-12-05-6726825d.pth",),
    }
    urls = {e.name: e.url for e in W.REGISTRY.values()}
    assert urls["alexnet-owt-7be5be79.pth"] == (
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    )
    assert urls["alex.pth"] == (
        "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
    )
    assert urls["pt_inception-2015-12-05-6726825d.pth"] == (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth"
    )
    for entry in W.REGISTRY.values():
        digest, full = W.expected_digest(entry)
        assert full and len(digest) == 64 and int(digest, 16) >= 0, entry.name
        assert entry.size and entry.size > 0
        # the hash prefix the upstream put in the file name agrees with the full hash
        prefix = entry.name.rsplit("-", 1)[-1].split(".")[0] if "-" in entry.name else ""
        assert digest.startswith(prefix)
    assert W.REGISTRY["alexnet-owt-7be5be79.pth"].sha256.startswith("7be5be79")
    assert W.REGISTRY["pt_inception-2015-12-05-6726825d.pth"].sha256.startswith("6726825d")


def test_prefix_in_file_name_is_the_fallback_hash():
    entry = W.WeightFile("net-0a1b2c3d.pth", "https://example.invalid/x", None, None, "x")
    assert W.expected_digest(entry) == ("0a1b2c3d", False)
    assert W.expected_digest(W.WeightFile("alex.pth", "u", None, None, "x")) == (None, False)
    assert W.expected_digest(W.WeightFile("a-2015-12-05-6726825d.pth", "u", None, 1, "x")) == (
        "6726825d",
        False,
    )


def test_weights_module_does_not_import_torch():
    code = "import sys, sirem_cli.metrics.weights\nprint('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_bad_registry_override_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "r.json"
    bad.write_text('{"files": {"resnet.pth": {}}}')
    monkeypatch.setenv("SIREM_WEIGHTS_REGISTRY", str(bad))
    with pytest.raises(InputError, match=r"unknown weight file 'resnet\.pth'"):
        W.get_registry()
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read the weights registry"):
        W.get_registry()


# --- fetch on first use -------------------------------------------------------------------


def test_download_lands_in_torch_home_verified_without_leftovers(home, server):
    seen = []
    found = W.resolve_weight_files(
        "fid", offline=False, progress=lambda n, d, t: seen.append((n, d, t))
    )
    name = "pt_inception-2015-12-05-6726825d.pth"
    assert found == {name: home["hub"] / name}
    assert found[name].read_bytes() == _content(name)
    assert sorted(p.name for p in home["hub"].iterdir()) == [name]  # the temporary is gone
    assert server.requests == [f"/w/{name}"]
    size = len(_content(name))
    assert seen[-1] == (name, size, size) and len(seen) >= 1
    # second call: the cached file is reused, verified, and nothing is requested
    again = W.resolve_weight_files("fid", offline=False)
    assert again == found and server.requests == [f"/w/{name}"]


def test_lpips_downloads_both_files_and_a_weights_dir_copy_wins(home, server, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "alex.pth").write_bytes(_content("alex.pth"))
    found = W.resolve_weight_files("lpips", mine, offline=False)
    assert found["alex.pth"] == mine / "alex.pth"  # weights_dir first, never re-downloaded
    assert found["alexnet-owt-7be5be79.pth"].parent == home["hub"]
    assert server.requests == ["/w/alexnet-owt-7be5be79.pth"]
    assert not (home["hub"] / "alex.pth").exists()


def test_corrupt_download_is_refused_and_not_kept(home, server):
    name = "pt_inception-2015-12-05-6726825d.pth"
    good = _content(name)
    server.files[f"/w/{name}"] = good[:-1] + bytes([good[-1] ^ 1])  # same size, one bit off
    with pytest.raises(W.WeightsVerificationError) as info:
        W.resolve_weight_files("fid", offline=False)
    msg = str(info.value)
    assert "refused" in msg and hashlib.sha256(good).hexdigest() in msg
    assert hashlib.sha256(server.files[f"/w/{name}"]).hexdigest() in msg and "\n" not in msg
    assert not home["hub"].exists() or list(home["hub"].iterdir()) == []
    server.files[f"/w/{name}"] = good[:1000]  # truncated: the size is named too
    with pytest.raises(W.WeightsVerificationError, match=r"1,000 bytes instead of"):
        W.resolve_weight_files("fid", offline=False)
    assert list(home["hub"].iterdir()) == []


def test_wrong_hash_file_in_cache_is_refused_and_never_loaded(home, server, monkeypatch):
    torch = pytest.importorskip("torch")
    from sirem_cli.metrics import perceptual as P

    name = "pt_inception-2015-12-05-6726825d.pth"
    home["hub"].mkdir(parents=True)
    other = bytes(len(_content(name)))  # the right size, the wrong bytes
    (home["hub"] / name).write_bytes(other)

    def no_load(*args, **kwargs):
        raise AssertionError("a refused file was loaded")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(W.WeightsVerificationError) as info:
        P.load_inception(offline=False)
    msg = str(info.value)
    assert str(home["hub"] / name) in msg and "\n" not in msg
    assert hashlib.sha256(other).hexdigest() in msg
    assert hashlib.sha256(_content(name)).hexdigest() in msg
    assert "sirem weights fetch --metric fid --replace" in msg
    assert server.requests == []  # present (if wrong) files are not silently re-downloaded
    assert (home["hub"] / name).read_bytes() == other  # and not deleted


def test_wrong_hash_file_in_weights_dir_is_refused(home, server, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "alex.pth").write_bytes(b"x" * len(_content("alex.pth")))
    with pytest.raises(W.WeightsVerificationError) as info:
        W.resolve_weight_files("lpips", mine, offline=False)
    msg = str(info.value)
    assert str(mine / "alex.pth") in msg and "replace it with" in msg
    assert server.requests == []


def test_unreachable_url_fails_fast_with_the_manual_alternative(home, server):
    name = "alex.pth"
    url = f"http://127.0.0.1:{_closed_port()}/alex.pth"
    _set_registry(home["registry"], name, url=url)
    start = time.perf_counter()
    with pytest.raises(W.WeightsDownloadError) as info:
        W.resolve_weight_files("lpips", offline=False, timeout=5)
    elapsed = time.perf_counter() - start
    msg = str(info.value)
    assert elapsed < 3.0, elapsed  # refused at once, no retries
    assert "\n" not in msg and url in msg and str(home["hub"]) in msg
    assert "sirem weights fetch --metric lpips" in msg and "--weights-dir" in msg
    assert [p for p in home["hub"].iterdir() if p.name.startswith(".")] == []


def test_http_error_and_stalled_server(home, server):
    name = "pt_inception-2015-12-05-6726825d.pth"
    _set_registry(home["registry"], name, url=server.url("/nothing-here.pth"))
    with pytest.raises(W.WeightsDownloadError, match="HTTP 404"):
        W.resolve_weight_files("fid", offline=False)
    assert server.requests == ["/nothing-here.pth"]  # one attempt
    _set_registry(home["registry"], name, url=server.url(f"/w/{name}"))
    server.stall_s = 1.5
    start = time.perf_counter()
    with pytest.raises(W.WeightsDownloadError, match=r"stalled for 0\.3 s"):
        W.resolve_weight_files("fid", offline=False, timeout=0.3)
    assert time.perf_counter() - start < 1.4
    assert list(home["hub"].iterdir()) == []


def test_offline_makes_no_request(home, server, monkeypatch):
    for env in ("SIREM_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(env, "1")
        with pytest.raises(W.WeightsUnavailable) as info:
            W.resolve_weight_files("fid")
        monkeypatch.delenv(env)
        msg = str(info.value)
        assert "offline" in msg and "sirem weights fetch --metric fid" in msg
        assert "--weights-dir" in msg and str(home["hub"]) in msg and "\n" not in msg
    with pytest.raises(W.WeightsUnavailable):
        W.resolve_weight_files("lpips", offline=True)  # the argument wins over the environment
    assert server.requests == []
    assert not home["hub"].exists()


def test_prefix_only_entry_is_checked_by_its_prefix(tmp_path, server):
    body = b"weights" * 1000
    digest = hashlib.sha256(body).hexdigest()
    good = f"net-{digest[:8]}.pth"
    bad = f"net-{'0' * 8 if digest[:8] != '0' * 8 else '1' * 8}.pth"
    unnamed = "net.pth"
    for n in (good, bad, unnamed):
        server.files[f"/{n}"] = body
    reg = {
        n: W.WeightFile(n, server.url(f"/{n}"), None, None, "test") for n in (good, bad, unnamed)
    }
    path = W.download_weight_file(good, tmp_path, registry=reg)
    assert path.read_bytes() == body
    with pytest.raises(W.WeightsVerificationError, match="prefix from the file name"):
        W.download_weight_file(bad, tmp_path, registry=reg)
    with pytest.raises(W.WeightsVerificationError, match="no published SHA-256"):
        W.download_weight_file(unnamed, tmp_path, registry=reg)
    assert server.requests == [f"/{good}", f"/{bad}"]  # nothing unverifiable is downloaded
    assert sorted(p.name for p in tmp_path.iterdir()) == [good]


def test_evaluate_fetches_lpips_weights_on_first_use(home, server, monkeypatch):
    torch = pytest.importorskip("torch")
    import numpy as np

    from sirem_cli.metrics import perceptual as P
    from sirem_cli.metrics.evaluate import PerceptualModels, evaluate_sequences

    gen = torch.Generator().manual_seed(0)
    net = P.LpipsAlex()
    alex = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in net.state_dict().items()}
    blobs = {
        "alexnet-owt-7be5be79.pth": {k: v for k, v in alex.items() if k.startswith("features")},
        "alex.pth": {k: v.abs() for k, v in alex.items() if k.startswith("lin")},
    }
    for name, state in blobs.items():
        buf = io.BytesIO()
        torch.save(state, buf)
        server.files[f"/w/{name}"] = buf.getvalue()
        _set_registry(home["registry"], name, **_entry(server.url(f"/w/{name}"), buf.getvalue()))
    rng = np.random.default_rng(0)
    x = {"u": rng.random((2, 40, 40))}
    y = {"u": rng.random((2, 40, 40))}
    res = evaluate_sequences(x, y, "lpips", models=PerceptualModels(offline=False))
    assert res.unavailable == {} and res.summary["lpips"].mean > 0
    assert sorted(server.requests) == ["/w/alex.pth", "/w/alexnet-owt-7be5be79.pth"]
    res2 = evaluate_sequences(x, y, "lpips", models=PerceptualModels(offline=False))
    assert res2.summary["lpips"].mean == res.summary["lpips"].mean
    assert len(server.requests) == 2  # cached: no second download


def test_failed_download_is_tried_once_per_evaluation(home, server):
    from sirem_cli.metrics.evaluate import PerceptualModels, evaluate_methods

    np = pytest.importorskip("numpy")
    name = "pt_inception-2015-12-05-6726825d.pth"
    _set_registry(home["registry"], name, url=server.url("/gone.pth"))
    rng = np.random.default_rng(1)
    y = {"u": rng.random((3, 32, 32))}
    methods = {f"m{i}": {"u": rng.random((3, 32, 32))} for i in range(3)}
    results = evaluate_methods(methods, y, "ssim,fid", models=PerceptualModels(offline=False))
    assert all("HTTP 404" in r.unavailable["fid"] for r in results)
    assert all("ssim" in r.summary for r in results)
    assert server.requests == ["/gone.pth"]


# --- sirem weights fetch / status ---------------------------------------------------------


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_cli_fetch_then_status(home, server, tmp_path):
    res = runner.invoke(app, ["weights", "status", "--metric", "fid"])
    assert res.exit_code == 2 and "missing" in res.output
    assert len(_error_lines(res.output)) == 1 and "sirem weights fetch --metric fid" in res.output
    res = runner.invoke(app, ["weights", "fetch", "--metric", "fid"])
    assert res.exit_code == 0, res.output
    name = "pt_inception-2015-12-05-6726825d.pth"
    assert (home["hub"] / name).read_bytes() == _content(name)
    assert "downloaded" in res.output and len(server.requests) == 1
    res = runner.invoke(app, ["weights", "fetch", "--metric", "fid"])
    assert res.exit_code == 0 and "present" in res.output and len(server.requests) == 1
    res = runner.invoke(app, ["weights", "status", "--metric", "fid"])
    assert res.exit_code == 0, res.output
    assert "SHA-256 ok" in res.output and name in res.output
    # into a folder for an offline machine: the verified cache copy is copied, not downloaded
    dest = tmp_path / "for-offline"
    res = runner.invoke(app, ["weights", "fetch", "--metric", "fid", "--weights-dir", str(dest)])
    assert res.exit_code == 0 and "copied" in res.output and len(server.requests) == 1
    assert (dest / name).read_bytes() == _content(name)
    assert sorted(p.name for p in dest.iterdir()) == [name]


def test_cli_fetch_all_and_status_wrong_hash(home, server):
    res = runner.invoke(app, ["weights", "fetch"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in home["hub"].iterdir()) == sorted(W.REGISTRY)
    (home["hub"] / "alex.pth").write_bytes(bytes(len(_content("alex.pth"))))
    res = runner.invoke(app, ["weights", "status"])
    assert res.exit_code == 2 and "WRONG" in res.output
    lines = _error_lines(res.output)
    assert len(lines) == 1 and str(home["hub"] / "alex.pth") in lines[0]
    res = runner.invoke(app, ["weights", "fetch", "--metric", "lpips"])
    assert res.exit_code == 2 and len(_error_lines(res.output)) == 1
    assert "refused" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["weights", "fetch", "--metric", "lpips", "--replace"])
    assert res.exit_code == 0, res.output
    assert (home["hub"] / "alex.pth").read_bytes() == _content("alex.pth")


def test_cli_fetch_json_and_quiet(home, server, tmp_path):
    """--json: the files fetched, with the registry override note; --quiet: nothing at all."""
    res = runner.invoke(app, ["weights", "fetch", "--metric", "fid", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # stdout holds the JSON alone
    name = "pt_inception-2015-12-05-6726825d.pth"
    assert doc["command"] == "weights fetch" and doc["folder"] == str(home["hub"])
    (row,) = doc["files"]
    assert row["file"] == name and row["action"] == "downloaded" and row["verified"] is True
    assert row["path"] == str(home["hub"] / name) and row["size"] == len(_content(name))
    assert row["sha256"] == hashlib.sha256(_content(name)).hexdigest()
    assert any("SIREM_WEIGHTS_REGISTRY" in n for n in doc["notes"]) and doc["warnings"] == []
    res = runner.invoke(app, ["weights", "fetch", "--metric", "lpips", "--quiet"])
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""
    assert len(server.requests) == 3
    res = runner.invoke(app, ["weights", "status", "--json", "-q"])
    assert res.exit_code == 0 and res.stderr == ""
    assert all(f["verified"] for f in json.loads(res.stdout)["files"])
    (home["hub"] / name).write_bytes(b"x")
    res = runner.invoke(app, ["weights", "fetch", "--metric", "fid", "-q"])
    assert res.exit_code == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("error: ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["weights", "fetch", "--metric", "ssim"], "--metric 'ssim'"),
        (["weights", "status", "--metric", "nope"], "--metric 'nope'"),
        (["weights", "fetch", "--timeout", "0"], "--timeout"),
    ],
)
def test_cli_bad_arguments_one_line(home, server, args, needle):
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output
    assert len(_error_lines(res.output)) == 1 and server.requests == []


def test_cli_fetch_unreachable_one_line(home, server):
    url = f"http://127.0.0.1:{_closed_port()}/x.pth"
    _set_registry(home["registry"], "pt_inception-2015-12-05-6726825d.pth", url=url)
    res = runner.invoke(app, ["weights", "fetch", "--metric", "fid", "--timeout", "2"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = _error_lines(res.output)
    assert len(lines) == 1 and url in lines[0] and "--weights-dir" in lines[0]


def test_cli_evaluate_offline_flag_reaches_the_api(monkeypatch, tmp_path):
    import sirem_cli.api.evaluate as api

    seen = {}

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        raise InputError("stop here")

    monkeypatch.setattr(api, "run_evaluate", fake_run)
    recon = tmp_path / "r.h5"
    res = runner.invoke(app, ["evaluate", str(recon), "--offline"])
    assert res.exit_code == 2 and seen["offline"] is True
    runner.invoke(app, ["evaluate", str(recon)])
    assert seen["offline"] is None  # follows SIREM_OFFLINE / HF_HUB_OFFLINE
