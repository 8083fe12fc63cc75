"""Scratch space: the names both sides use when an import needs a copy of its source.

An import whose source cannot be read at random offsets (a compressed qcow2, a registry's
gzip layer, a server without range requests) converts from a local copy. In a pod that
copy goes on a scratch PVC mounted at /scratch, never on the node's disk: the importer
ends with `Reason.SCRATCH_SPACE_REQUIRED` when no such volume is mounted, and the
controller creates `<pvc>-scratch` and starts the pod again with it (CDI's flow).
"""

from __future__ import annotations

from cdicontract.annotations import PREFIX

REQUIRES_SCRATCH = PREFIX + "storage.import.requiresScratch"
"""On the target PVC: "true" once an importer said it needs scratch (CDI's
AnnRequiresScratch). Durable: every later importer pod gets the scratch volume."""
NAME_SUFFIX = "-scratch"
"""CDI's ScratchNameSuffix: the scratch PVC of `<pvc>` is `<pvc>-scratch`."""
VOLUME_NAME = "cdi-scratch-vol"
"""The pod volume name CDI gives the scratch PVC."""
MESSAGE = "scratch space required and none found"
"""CDI's common.ScratchSpaceRequired, the Running condition's message (tools match it)."""
CONDITION_REASON = "Scratch space required"
"""CDI's ScratchSpaceRequiredReason, the Running condition's reason."""
CLASS_NOT_FOUND_REASON = "ScratchStorageClassNotFound"
"""Ours (CDI falls back silently): CDIConfig names a scratch class that does not exist."""


def scratch_name(pvc_name: str) -> str:
    return pvc_name + NAME_SUFFIX
