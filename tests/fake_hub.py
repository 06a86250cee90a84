"""A Hugging Face Hub look-alike on 127.0.0.1, test checkpoints and the fixtures using them.

Registered for every test module by ``conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import torch

from daclip_plugin import weights

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import constants  # noqa: E402

REPO = "tester/test-repo"
COMMIT = hashlib.sha1(b"test commit").hexdigest()
DACLIP_FILE = "test-daclip.pt"
UNET_FILE = "test-unet.pth"

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}
TINY_UNET = {
    "in_nc": 3, "out_nc": 3, "nf": 32, "ch_mult": [1, 2], "context_dim": 16,
    "use_degra_context": True, "use_image_context": True,
}

# A model whose DA-CLIP file is pinned to a SHA-256 that no file has.
PINNED_PLUGIN = f"""
from daclip_plugin import hookimpl
from daclip_plugin.weights import ModelSpec, WeightFile

@hookimpl
def register_models(register):
    register(ModelSpec(name="pinned", description="", daclip=WeightFile.hub({REPO!r}, {DACLIP_FILE!r}, sha256="{'0' * 64}"),
                       unet=WeightFile.hub({REPO!r}, {UNET_FILE!r})))
"""

# A real plugin (installed as a distribution with an entry point) registering test models.
TEST_PLUGIN = """
from daclip_plugin import hookimpl
from daclip_plugin.weights import ModelSpec, WeightFile

CLIP = {clip!r}
UNET = {unet!r}

@hookimpl
def register_models(register):
    register(ModelSpec(
        name="test-model",
        description="two tiny checkpoints for the tests",
        daclip=WeightFile.hub({repo!r}, {daclip!r}),
        unet=WeightFile.hub({repo!r}, {unet_file!r}, size={unet_size}),
        clip_cfg=CLIP,
        unet_cfg=UNET,
    ))
    register(ModelSpec(
        name="test-missing",
        description="its UNet is not on the server",
        daclip=WeightFile.hub({repo!r}, {daclip!r}),
        unet=WeightFile.hub({repo!r}, "no-such-file.pth"),
    ))
"""


# --------------------------------------------------------------------------- a local Hub


class FakeHub:
    """A Hugging Face Hub look-alike on 127.0.0.1 serving a few files.

    ``cut_after`` (a byte offset in the file) and ``cuts`` (how many GET responses to cut)
    make the server close the connection mid-file; answers honour ``Range`` for resumes.
    """

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.cut_after: int | None = None
        self.cuts = 0
        # hostile or broken behaviour, by file name
        self.etags: dict[str, str] = {}  # the ETag sent instead of the file's SHA-256
        self.corrupt: set[str] = set()  # bodies with one byte flipped (same length)
        self.status: dict[str, int] = {}  # an HTTP error status for the GET
        self.stall = 0.0  # seconds to wait before sending a body
        self.oversend: dict[str, int] = {}  # bytes sent beyond the file (the GET then has no Content-Length)
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: stopping the server is final

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)

    def add(self, filename: str, data: bytes, repo: str = REPO) -> None:
        self.files[(repo, filename)] = data

    def gets(self, filename: str) -> list[str | None]:
        """The ``Range`` header of every GET of ``filename``."""
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith("/" + filename)]

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(handler.path).path)
        rng = handler.headers.get("Range")
        with self.lock:
            self.requests.append((handler.command, path, rng))
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        data = self.files.get((match.group(1), match.group(3))) if match else None
        if data is None:  # unknown file, or an /api/... call: a plain Hub-style 404
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound" if match else "RepoNotFound")
            handler.send_header("X-Repo-Commit", COMMIT)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        name = match.group(3)
        if body and name in self.status:
            handler.send_response(self.status[name])
            handler.send_header("X-Repo-Commit", COMMIT)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if name in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        if rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("X-Repo-Commit", COMMIT)
        real = self.files[(match.group(1), name)]
        handler.send_header("ETag", '"' + self.etags.get(name, hashlib.sha256(real).hexdigest()) + '"')
        handler.send_header("Accept-Ranges", "bytes")
        if not (body and name in self.oversend):
            handler.send_header("Content-Length", str(len(data) - start))
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if not body:
            return
        if self.stall:
            time.sleep(self.stall)
        end = len(data)
        with self.lock:
            if self.cuts > 0 and self.cut_after is not None:
                self.cuts -= 1
                end = max(start, min(end, self.cut_after))
        handler.wfile.write(data[start:end] + b"\0" * self.oversend.get(name, 0))
        handler.wfile.flush()
        handler.close_connection = True


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def checkpoints_dir(tmp_path_factory) -> Path:
    """Tiny real DA-CLIP and UNet checkpoints, written once."""
    from daclip_plugin.nn.daclip import DaCLIP
    from daclip_plugin.nn.unet import ConditionalUNet
    from daclip_plugin.weights.checkpoints import save_daclip, save_unet

    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    save_daclip(DaCLIP(TINY_CLIP), folder / DACLIP_FILE)
    (folder / DACLIP_FILE).with_suffix(".json").unlink(missing_ok=True)  # the spec carries the config
    save_unet(ConditionalUNet(**TINY_UNET), folder / UNET_FILE)
    return folder


@pytest.fixture
def hub(tmp_path, monkeypatch, checkpoints_dir):
    """A running local Hub serving the test checkpoints; huggingface_hub points at it."""
    server = FakeHub()
    for name in (DACLIP_FILE, UNET_FILE):
        server.add(name, (checkpoints_dir / name).read_bytes())
    cache = tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads these at import time
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # small read chunks (default 10 MB), so that a cut connection has written data to resume from
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv(weights.ENV_WEIGHTS_DIR, raising=False)
    server.cache = cache
    yield server
    server.stop()


@pytest.fixture
def test_models(install_plugin, fresh_plugins, checkpoints_dir):
    """Register ``test-model`` and ``test-missing`` through a real plugin."""
    install_plugin(
        "weights_tester",
        TEST_PLUGIN.format(
            clip=TINY_CLIP, unet=TINY_UNET, repo=REPO, daclip=DACLIP_FILE, unet_file=UNET_FILE,
            unet_size=(checkpoints_dir / UNET_FILE).stat().st_size,
        ),
    )
    fresh_plugins.reload_plugins()
    return weights.get_model("test-model")


@pytest.fixture
def no_retry_wait(monkeypatch):
    """Downloads wait a little before each resume attempt: skip the waiting only."""
    from daclip_plugin.weights import hub as downloads

    monkeypatch.setattr(downloads, "RETRY_WAIT", lambda attempt: 0.0)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".incomplete", ".partial"))] if folder.exists() else []
