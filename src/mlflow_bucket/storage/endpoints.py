"""Which service a store's requests go to: the endpoint part of its identity.

Two stores with the same URI are different stores when their requests go to
different services: ``s3://twin/team`` on AWS and on a MinIO server, or on
two emulators. ``ObjectStore.identity`` is the URI plus the endpoint, which
is None for the scheme's default service (Google Cloud Storage, AWS S3 in
the standard partition), so a default store's identity is its plain URI.

Endpoints are compared as normalized strings (see ``normalize``): two
spellings of one address may still count as two endpoints (``localhost``
and ``127.0.0.1``), which errs on the safe side for the local state keyed
by identity (a spool left waiting, a cache missed), never the other way.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Google's own JSON API hosts, plain and mTLS: one service, so the default.
_GOOGLE_DEFAULTS = frozenset(
    {"https://storage.googleapis.com", "https://storage.mtls.googleapis.com"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize(url: str) -> str:
    """``url`` in one spelling: lower-case scheme and host, no default port,
    no trailing slash, no ``user:password@`` (it names who connects, not
    where, and must not reach a file or a message). A value that is not a
    URL is only stripped."""
    url = url.strip()
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return url.rstrip("/")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def gcs_endpoint(location: str) -> str | None:
    """The endpoint of a GCS store whose requests go to ``location`` (gcsfs's
    ``_location``: an ``endpoint_url`` option, else ``STORAGE_EMULATOR_HOST``,
    else Google's host for ``GOOGLE_CLOUD_UNIVERSE_DOMAIN``); None for Google's."""
    endpoint = normalize(location)
    return None if endpoint in _GOOGLE_DEFAULTS else endpoint


def s3_endpoint(fs: Any) -> str | None:
    """The endpoint of an S3 store on s3fs filesystem ``fs``; None for AWS's own.

    As botocore picks it: an ``endpoint_url`` option (or in ``client_kwargs``),
    else a configured one (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, then
    ``endpoint_url`` in the profile's ``services`` section or the profile,
    unless ``ignore_configured_endpoint_urls``). Without one, AWS's endpoint
    for the region's partition: None for the standard ``aws`` partition, else
    the partition (``aws-cn``, ``aws-us-gov``...), whose buckets are others.
    """
    explicit = fs.endpoint_url or (fs.client_kwargs or {}).get("endpoint_url")
    if explicit:
        return normalize(str(explicit))
    session = _botocore_session(fs)
    configured = _configured_s3_endpoint(fs, session)
    if configured:
        return normalize(configured)
    partition = _partition(fs, session)
    return None if partition in (None, "aws") else partition


def _botocore_session(fs: Any) -> Any:
    """The session s3fs uses (given, or made with the same profile), or None."""
    if fs.session is not None:
        return fs.session
    try:
        import botocore.session

        return botocore.session.Session(profile=(fs.kwargs or {}).get("profile"))
    except Exception:  # no botocore: the store cannot work anyway
        return None


def _configured_s3_endpoint(fs: Any, session: Any) -> str | None:
    ignore = (fs.config_kwargs or {}).get("ignore_configured_endpoint_urls")
    try:
        if ignore is None and session is not None:
            ignore = session.get_config_variable("ignore_configured_endpoint_urls")
        if ignore:
            return None
        from botocore.configprovider import ConfiguredEndpointProvider

        found = ConfiguredEndpointProvider(
            full_config=session.full_config,
            scoped_config=session.get_scoped_config(),
            client_name="s3",
        ).provide()
        return str(found) if found else None
    except Exception:
        # A missing profile or unreadable config file fails the store's own
        # requests too; the variables still name what botocore would use.
        if ignore:
            return None
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _partition(fs: Any, session: Any) -> str | None:
    try:
        region = (fs.client_kwargs or {}).get("region_name") or (
            session.get_config_variable("region") if session is not None else None
        )
        if not region:
            return None
        return str(session.get_partition_for_region(region))
    except Exception:  # an unknown region: botocore treats it as aws's
        return None
