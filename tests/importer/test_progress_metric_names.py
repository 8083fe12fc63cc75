"""The percent counter keeps CDI's name for imports and takes the upload server's name."""

from __future__ import annotations

from prometheus_client import generate_latest

from cdicontract import upload
from importer.progress import ImportMetrics, Progress


def exposition(metrics: ImportMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_imports_count_under_cdis_import_metric() -> None:
    metrics = ImportMetrics("uid-1")
    Progress(metrics).set(42.5)
    assert 'kubevirt_cdi_import_progress_total{ownerUID="uid-1"} 42.5' in exposition(metrics)


def test_uploads_count_under_the_upload_metric() -> None:
    metrics = ImportMetrics("uid-2", progress_metric=upload.UPLOAD_PROGRESS_METRIC)
    Progress(metrics).set(10.0)
    text = exposition(metrics)
    assert 'kubevirt_cdi_upload_progress_total{ownerUID="uid-2"} 10.0' in text
    assert "kubevirt_cdi_import_progress_total" not in text
