"""Builds the Source a config asks for. The only place that maps options to source classes."""

from __future__ import annotations

from cdicontract.reasons import Reason
from cdicontract.sourcekinds import SourceKind
from importer.config import ImporterConfig
from importer.errors import ImportFailure
from importer.sources.base import Source


def build_source(config: ImporterConfig, workdir: str) -> Source:
    """`workdir` is a private temp dir for files a source needs (a CA bundle, a password file)."""
    ca_bundle: str | None = None
    if config.cert_dir:
        from importer.sources.http import ca_bundle_from_dir

        ca_bundle = ca_bundle_from_dir(config.cert_dir, f"{workdir}/ca-bundle.pem")
    if config.proxy_cert_dir:
        from importer.sources.httpwire import ca_bundle_with_dir

        ca_bundle = ca_bundle_with_dir(ca_bundle, config.proxy_cert_dir,
                                       f"{workdir}/ca-bundle-with-proxy.pem")

    if config.source is SourceKind.HTTP:
        from importer.sources.http import HttpOptions, HttpSource, parse_header_line

        auth = None
        if config.access_key is not None and config.secret_key is not None:
            auth = (config.access_key, config.secret_key)
        options = HttpOptions(
            ca_bundle=ca_bundle,
            insecure=config.insecure_tls,
            headers=tuple(parse_header_line(h) for h in config.extra_headers),
            origin_headers=tuple(parse_header_line(h) for h in config.secret_headers),
            basic_auth=auth,
            range_block=config.range_block,
            deny_local_addresses=config.deny_local_addresses,
        )
        return HttpSource(config.endpoint, options)
    if config.source is SourceKind.S3:
        from importer.sources.s3 import S3Options, S3Source

        return S3Source(
            config.endpoint,
            S3Options(
                access_key=config.access_key,
                secret_key=config.secret_key,
                ca_bundle=ca_bundle,
                insecure=config.insecure_tls,
                range_block=config.range_block,
                deny_local_addresses=config.deny_local_addresses,
            ),
        )
    if config.source is SourceKind.GCS:
        from importer.sources.gcs import GcsOptions, GcsSource

        return GcsSource(
            config.endpoint,
            GcsOptions(
                credentials_file=config.gcs_credentials,
                emulator_host=config.gcs_emulator_host,
                ca_bundle=ca_bundle,
                insecure=config.insecure_tls,
                range_block=config.range_block,
                deny_local_addresses=config.deny_local_addresses,
            ),
        )
    if config.source is SourceKind.REGISTRY:
        from importer.sources.registry.source import (
            RegistryOptions,
            RegistrySource,
            node_architecture,
        )

        return RegistrySource(
            config.endpoint,
            RegistryOptions(
                username=config.access_key,
                password=config.secret_key,
                ca_bundle=ca_bundle,
                insecure_tls=config.insecure_tls,
                insecure_registries=config.insecure_registries,
                architecture=config.platform_arch or node_architecture(),
                range_block=config.range_block,
                deny_local_addresses=config.deny_local_addresses,
            ),
        )
    raise ImportFailure(Reason.INVALID_CONFIG, f"source {config.source} has no data to read")
