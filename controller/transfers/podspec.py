"""What every transfer pod's container shares: resources from the CDIConfig, the
termination report path, and the non-root, no-capability security context (pure)."""

from __future__ import annotations

import copy

from cdicontract import envvars as env
from cdicontract import importpod as ip
from controller.cdiconfig import EffectiveConfig
from controller.runtime.objects import Obj


def container_common(config: EffectiveConfig) -> Obj:
    """The container fields import, upload and clone pods share."""
    return {
        "resources": copy.deepcopy(config.resources),
        "terminationMessagePath": env.DEFAULT_TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": ip.IMPORTER_UID,
        },
    }
