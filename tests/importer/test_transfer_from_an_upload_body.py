"""run_transfer fed by a BodySource from another thread, as the upload server feeds it.

Real qemu-img images, a real file target in tmp_path, a feeding thread and the pipeline
on the test's thread. What the upload server relies on: `drained` once the body is read
and stored (before conversion ends), and a failure decided from the head of the body
while the client is still sending, leaving nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import tarfile
import threading
import time
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.checksum import Checksum
from importer.errors import ImportFailure
from importer.events import TransferEvents
from importer.pipeline import run_transfer
from importer.progress import Progress
from importer.sources.body import BodyClosed, BodySource, BodyState
from importer.transferspec import ContentType, TransferSpec
from tests import imagefactory
from tests.imagefactory import MiB

WAIT = 60.0
STAY = 10.0
CHUNK = 64 * 1024
REQUESTED = 64 * MiB  # no overhead below: usable = 64 MiB


class Place:
    def __init__(self, tmp_path: Path) -> None:
        self.out = tmp_path / "out"
        self.scratch = tmp_path / "scratch"
        self.out.mkdir()
        self.scratch.mkdir()
        self.dest = self.out / "disk.img"

    def spec(self, checksum: str | None = None) -> TransferSpec:
        return TransferSpec(
            dest=str(self.dest),
            requested_size=REQUESTED,
            filesystem_overhead=0.0,
            checksum=Checksum.parse(checksum) if checksum else None,
            scratch_dir=str(self.scratch),
        )

    def assert_nothing_left(self) -> None:
        assert list(self.out.iterdir()) == []
        assert list(self.scratch.iterdir()) == []


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> imagefactory.Reference:
    return imagefactory.make_reference(tmp_path_factory.mktemp("ref"))


def feeder(
    body: BodySource, data: bytes, *, stop_at: int | None = None, then: str = "finish"
) -> tuple[threading.Thread, dict[str, BaseException]]:
    """Put `data` (up to `stop_at`) in CHUNK pieces from a thread, then finish/abandon/stay."""
    errors: dict[str, BaseException] = {}
    end = len(data) if stop_at is None else stop_at

    def run() -> None:
        try:
            for i in range(0, end, CHUNK):
                body.put(data[i : min(i + CHUNK, end)], timeout=WAIT)
            if then == "finish":
                body.finish()
            elif then == "abandon":
                body.abandon("the client started another upload")
            elif then == "pause":
                body.pause()
            elif then == "stay":
                # Keep the connection "open" until the run gives up on the body; should it
                # never, the client goes away, so a broken check fails instead of hanging.
                deadline = time.monotonic() + STAY
                while body.state is BodyState.RECEIVING and time.monotonic() < deadline:
                    time.sleep(0.05)
                body.pause()
        except BaseException as e:
            errors["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def transfer(body: BodySource, spec: TransferSpec, events: TransferEvents) -> object:
    try:
        return run_transfer(body, None, spec, Progress(), threading.Event(), events=events)
    except ImportFailure as e:
        return e


def image(reference: imagefactory.Reference, kind: str) -> bytes:
    raw = reference.path.read_bytes()
    if kind == "raw":
        return raw
    if kind == "raw.gz":
        return gzip.compress(raw, 1)
    if kind == "raw.xz":
        return lzma.compress(raw, preset=0)
    return imagefactory.convert(reference, kind).read_bytes()


@pytest.mark.parametrize("kind", ["qcow2", "raw.gz", "raw.xz", "raw", "vmdk", "vdi"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_becomes_the_image(
    place: Place, reference: imagefactory.Reference, kind: str, declared: bool
) -> None:
    data = image(reference, kind)
    body = BodySource(len(data) if declared else None, buffer_bytes=256 * 1024)
    seen: dict[str, object] = {}

    def on_drained() -> None:
        seen["offset"] = body.offset
        seen["dest_exists"] = place.dest.exists()
        seen["scratch"] = [p.stat().st_size for p in place.scratch.iterdir()]

    events = TransferEvents(on_drained=on_drained)
    checksum = "sha256:" + hashlib.sha256(data).hexdigest()
    thread, errors = feeder(body, data)
    report = transfer(body, place.spec(checksum), events)
    thread.join(WAIT)
    assert not isinstance(report, ImportFailure), report
    assert errors == {}
    raw = reference.path.read_bytes()
    out = place.dest.read_bytes()
    assert len(out) == REQUESTED
    assert out[: len(raw)] == raw
    assert out[len(raw) :].count(0) == REQUESTED - len(raw)
    assert events.drained.is_set() and not events.failed.is_set()
    assert seen["offset"] == len(data)
    if kind in ("qcow2", "vmdk", "vdi"):
        # Drained once the body is in scratch, before the conversion made the image.
        assert seen["dest_exists"] is False
        assert seen["scratch"] == [len(data)]
    assert list(place.scratch.iterdir()) == []


def big(tmp_path: Path, fmt: str) -> bytes:
    path = tmp_path / f"big.{fmt}"
    imagefactory.run("qemu-img", "create", "-q", "-f", fmt, path, "8G")
    return path.read_bytes()


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vpc", "vdi"])
def test_a_too_large_image_fails_from_its_header_while_the_client_sends(
    place: Place, tmp_path: Path, fmt: str
) -> None:
    data = big(tmp_path, fmt)
    data += bytes(max(0, 2 * MiB - len(data)))  # more body than the head, as a client has
    body = BodySource(len(data), buffer_bytes=128 * 1024, pause_timeout=1.0)
    events = TransferEvents()
    sent = 96 * 1024  # the head (64 KiB) and a little: the client keeps the rest
    thread, _ = feeder(body, data, stop_at=sent, then="stay")
    result = transfer(body, place.spec(), events)
    thread.join(WAIT)
    assert isinstance(result, ImportFailure)
    assert result.reason is Reason.IMAGE_TOO_LARGE
    assert "DataVolume too small to contain image" in result.message
    assert events.failed.is_set() and events.failure is result
    assert not events.drained.is_set()
    assert body.offset == sent < len(data)
    with pytest.raises(BodyClosed):  # the server can answer the still-sending client now
        body.put(data[sent : sent + CHUNK], timeout=1.0)
    place.assert_nothing_left()


def test_a_raw_body_declared_larger_than_the_volume_fails_at_once(
    place: Place, reference: imagefactory.Reference
) -> None:
    head = reference.path.read_bytes()[: 128 * 1024]
    body = BodySource(REQUESTED + 1024 * 1024, pause_timeout=1.0)
    events = TransferEvents()
    thread, _ = feeder(body, head, then="stay")
    result = transfer(body, place.spec(), events)
    thread.join(WAIT)
    assert isinstance(result, ImportFailure)
    assert result.reason is Reason.IMAGE_TOO_LARGE
    assert body.offset == len(head)
    with pytest.raises(BodyClosed):
        body.put(b"more")
    place.assert_nothing_left()


@pytest.mark.parametrize("kind", ["qcow2", "raw", "raw.gz"])
def test_a_checksum_mismatch_leaves_no_image(
    place: Place, reference: imagefactory.Reference, kind: str
) -> None:
    data = image(reference, kind)
    body = BodySource(len(data))
    events = TransferEvents()
    thread, _ = feeder(body, data)
    result = transfer(body, place.spec("sha256:" + "0" * 64), events)
    thread.join(WAIT)
    assert isinstance(result, ImportFailure)
    assert result.reason is Reason.CHECKSUM_MISMATCH
    assert events.failure is result and not events.drained.is_set()
    place.assert_nothing_left()


@pytest.mark.parametrize("kind", ["qcow2", "raw", "raw.xz"])
def test_an_abandoned_body_leaves_no_image(
    place: Place, reference: imagefactory.Reference, kind: str
) -> None:
    data = image(reference, kind)
    body = BodySource(len(data))
    events = TransferEvents()
    thread, _ = feeder(body, data, stop_at=len(data) // 2 // CHUNK * CHUNK, then="abandon")
    result = transfer(body, place.spec(), events)
    thread.join(WAIT)
    assert isinstance(result, ImportFailure)
    assert result.reason is Reason.CANCELLED
    assert "another upload" in result.message
    place.assert_nothing_left()


def test_a_client_that_never_resumes_fails_the_transfer(
    place: Place, reference: imagefactory.Reference
) -> None:
    data = reference.path.read_bytes()
    body = BodySource(len(data), pause_timeout=0.5)
    thread, errors = feeder(body, data, stop_at=MiB, then="pause")
    thread.join(WAIT)
    assert errors == {}
    result = transfer(body, place.spec(), TransferEvents())
    assert isinstance(result, ImportFailure)
    assert result.reason is Reason.NETWORK_ERROR
    assert "did not resume" in result.message
    place.assert_nothing_left()


def test_a_paused_and_resumed_body_is_one_image(
    place: Place, reference: imagefactory.Reference
) -> None:
    data = image(reference, "qcow2")
    body = BodySource(len(data), pause_timeout=WAIT)
    half = len(data) // 2
    first, _ = feeder(body, data, stop_at=half, then="pause")
    first.join(WAIT)

    def reconnect() -> None:
        assert body.resume(body.offset)
        rest = data[body.offset :]
        for i in range(0, len(rest), CHUNK):
            body.put(rest[i : i + CHUNK], timeout=WAIT)
        body.finish()

    later = threading.Timer(0.3, reconnect)
    later.start()
    report = transfer(body, place.spec("sha256:" + hashlib.sha256(data).hexdigest()),
                      TransferEvents())
    later.join(WAIT)
    assert not isinstance(report, ImportFailure), report
    assert place.dest.read_bytes()[: reference.size] == reference.path.read_bytes()


def tar_body() -> tuple[bytes, dict[str, bytes]]:
    files = {"a.txt": b"alpha\n", "dir/b.bin": bytes(range(256)) * 1200}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    # Zeros after the end-of-archive blocks (a large blocking factor): still the body.
    return buf.getvalue() + bytes(256 * 1024), files


def test_an_archive_body_is_extracted_and_read_to_its_end(tmp_path: Path) -> None:
    data, files = tar_body()
    dest = tmp_path / "data"
    dest.mkdir()
    body = BodySource(len(data), buffer_bytes=8 * 1024)
    events = TransferEvents()
    thread, errors = feeder(body, data)
    checksum = Checksum.parse("sha256:" + hashlib.sha256(data).hexdigest())
    spec = TransferSpec(dest=str(dest), content_type=ContentType.ARCHIVE,
                        requested_size=REQUESTED, checksum=checksum)
    report = transfer(body, spec, events)
    thread.join(WAIT)
    assert not isinstance(report, ImportFailure), report
    assert errors == {}  # the client could send its last bytes: the pipeline read them
    assert body.offset == len(data)
    assert events.drained.is_set()
    got = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert got == files


def test_an_archive_whose_checksum_fails_leaves_the_directory_as_it_was(tmp_path: Path) -> None:
    data, _ = tar_body()
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "lost+found").mkdir()
    body = BodySource(len(data))
    thread, _ = feeder(body, data)
    spec = TransferSpec(dest=str(dest), content_type=ContentType.ARCHIVE,
                        requested_size=REQUESTED, checksum=Checksum.parse("md5:" + "0" * 32))
    result = transfer(body, spec, TransferEvents())
    thread.join(WAIT)
    assert isinstance(result, ImportFailure)
    assert result.reason is Reason.CHECKSUM_MISMATCH
    assert [p.name for p in dest.iterdir()] == ["lost+found"]
