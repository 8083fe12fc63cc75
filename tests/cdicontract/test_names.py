"""Source kinds and DataVolume phases are CDI's exact spellings."""

from __future__ import annotations

from cdicontract import api
from cdicontract.phases import DataVolumePhase
from cdicontract.sourcekinds import IMPORT_KINDS, SourceKind


def test_source_kinds_are_the_keys_of_spec_source() -> None:
    assert {k.value for k in SourceKind} == {
        "http", "s3", "gcs", "registry", "imageio", "vddk", "blank", "upload", "pvc", "snapshot"
    }
    assert SourceKind.UPLOAD not in IMPORT_KINDS


def test_phases_are_cdis_and_agree_with_the_api_constants() -> None:
    assert len({p.value for p in DataVolumePhase}) == 21
    for name in ("PENDING", "PVC_BOUND", "IMPORT_SCHEDULED", "IMPORT_IN_PROGRESS",
                 "WAIT_FOR_FIRST_CONSUMER", "SUCCEEDED", "FAILED", "UNKNOWN", "UNSET"):
        assert getattr(api, f"PHASE_{name}") == DataVolumePhase[name].value
    assert DataVolumePhase.UPLOAD_READY == "UploadReady"
