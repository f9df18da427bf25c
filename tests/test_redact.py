"""mlflow_bucket.redact: what is masked in text, and the log records it cleans."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from mlflow_bucket import redact as redaction
from mlflow_bucket.redact import (
    install_log_redaction,
    redact,
    url_credentials,
)

S = "SECRETVALUE"

# (text carrying S, what must survive the redaction)
CASES = {
    "userinfo": (f"http://AKIAUSER:{S}@minio:9000/bucket", "http://***@minio:9000/bucket"),
    "user only": (f"s3://{S}@bucket/prefix", "s3://***@bucket/prefix"),
    "presigned": (
        "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={S}%2F20260101&X-Amz-Security-Token={S}"
        f"&X-Amz-Signature={S}&prefix=team%2Fml",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***",
    ),
    "gcs signed": (
        f"https://storage.googleapis.com/b/o?X-Goog-Signature={S}&GoogleAccessId={S}",
        "https://storage.googleapis.com/b/o?X-Goog-Signature=***&GoogleAccessId=***",
    ),
    "sas": (f"https://a.blob.core.windows.net/c?sv=2024&sig={S}", "?sv=2024&sig=***"),
    "request line": (f'"GET /tokeninfo?access_token={S} HTTP/1.1" 200', "access_token=***"),
    "botocore request": (
        "<AWSPreparedRequest stream_output=False, method=GET, url=http://h/b?list-type=2,"
        f" headers={{'User-Agent': b'Boto3', 'X-Amz-Security-Token': b'{S}', "
        f"'Authorization': b'AWS4-HMAC-SHA256 Credential=ASIA{S}/2026/us-east-1/s3/"
        f"aws4_request, SignedHeaders=host;x-amz-date, Signature={S}'}}>",
        "'User-Agent': b'Boto3', 'X-Amz-Security-Token': b'***', 'Authorization': b'***'",
    ),
    "canonical request": (
        f"GET\n/b\nlist-type=2\nhost:h\nx-amz-date:20260101\nx-amz-security-token:{S}\n\nhost",
        "x-amz-date:20260101\nx-amz-security-token:***\n",
    ),
    "signature dump": (
        "Signature:\n" + "0123456789abcdef" * 4,
        "Signature:\n***",
    ),
    "header line": (f"Authorization: Bearer {S}", "Authorization: ***"),
    "bearer": (f"sent with Bearer {S}abc", "sent with Bearer ***"),
    "json token": (f'{{"access_token": "{S}", "expires_in": 3599}}', '"expires_in": 3599'),
    "sts xml": (
        f"<AccessKeyId>ASIA{S}</AccessKeyId><SecretAccessKey>{S}</SecretAccessKey>"
        f"<SessionToken>{S}</SessionToken><Expiration>2026</Expiration>",
        "<Expiration>2026</Expiration>",
    ),
    "kwargs": (f"Credentials(token='{S}', key=\"{S}\", max-keys=5)", "max-keys=5"),
    "private key": (
        f'"private_key": "-----BEGIN PRIVATE KEY-----\\n{S}\\n-----END PRIVATE KEY-----\\n"',
        '"private_key": "***"',
    ),
    "pem": (
        f"-----BEGIN RSA PRIVATE KEY-----\n{S}\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----***",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_kind_of_credential_is_masked_and_the_rest_kept(case: str) -> None:
    text, kept = CASES[case]
    clean = redact(text)
    assert S not in clean, clean
    assert kept in clean, clean


@pytest.mark.parametrize(
    "value",
    [
        "AKIAIOSFODNN7EXAMPLE",  # AWS access key id
        "ASIAIOSFODNN7EXAMPLE",  # STS access key id
        "FQoGZXIvYXdzEBYaDGwlExampleSessionToken",  # STS session token
        "IQoJb3JpZ2luX2VjExampleSessionToken",
        "ya29.a0AfB_byExampleAccessToken",  # Google OAuth access token
    ],
)
def test_values_shaped_like_credentials_are_masked_anywhere(value: str) -> None:
    assert value not in redact(f"something said {value} here")


@pytest.mark.parametrize(
    "text",
    [
        "s3://bucket/team/ml/a@b.txt",  # @ in a key is not userinfo
        "gs://bucket/prefix",
        "http://127.0.0.1:9000/bucket?list-type=2&prefix=team%2F&max-keys=1000",
        "put s3://b/p/k (HTTP 403): AccessDenied: Access Denied",
        "Basic configuration done",
        "'Content-Type': 'application/json', 'x-amz-date': '20260101T000000Z'",
        "",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_url_credentials_describes_without_the_value() -> None:
    assert url_credentials(f"http://u:{S}@h") == "user@ or user:password@ before the host"
    assert url_credentials(f"u:{S}@h:9000") == "user@ or user:password@ before the host"
    assert url_credentials(f"s3://b/p?X-Amz-Signature={S}") == (
        "the query parameter 'X-Amz-Signature'"
    )
    assert url_credentials(f"https://h/#access_token={S}") == (
        "the fragment parameter 'access_token'"
    )
    for clean in ("h:9000", "http://h:9000/x?region=eu", "s3://b/p", "gs://b/a@b"):
        assert url_credentials(clean) is None, clean


# -- log records -----------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def collected() -> Iterator[_Collect]:
    """A handler on the root logger at DEBUG, as logging.basicConfig(level=DEBUG) gives."""
    install_log_redaction()
    handler = _Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_records_of_the_sdks_loggers_and_their_children_are_redacted(
    collected: _Collect,
) -> None:
    # A child logger made after the installation, with %-args, as botocore logs.
    child = logging.getLogger("botocore.endpoint.made-later")
    child.debug("Sending http request: %s", {"X-Amz-Security-Token": S, "Host": "h"})
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s', "https", "h", 443, "GET", f"/x?access_token={S}", "1.1", 200
    )
    logging.getLogger("mlflow_bucket.storage.retry").warning("retrying http://u:%s@h", S)
    try:
        raise RuntimeError(f"cannot reach http://u:{S}@h")
    except RuntimeError:
        logging.getLogger("gcsfs.credentials").debug("connect failed", exc_info=True)
    text = "\n".join(collected.lines)
    assert S not in text, text
    assert "'X-Amz-Security-Token': '***'" in text and "'Host': 'h'" in text
    assert "access_token=***" in text
    assert "RuntimeError: cannot reach http://***@h" in text


def test_other_loggers_records_are_left_alone(collected: _Collect) -> None:
    logging.getLogger("someones.app").debug("token=%s", S)
    logging.getLogger("botocorex").debug("token=%s", S)  # a prefix is not a parent
    assert all(S in line for line in collected.lines), collected.lines


def test_with_debug_off_nothing_is_redacted_or_even_formatted(
    collected: _Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = redaction.redact

    def counting(text: str) -> str:
        calls.append(text)
        return original(text)

    monkeypatch.setattr(redaction, "redact", counting)
    logger = logging.getLogger("botocore.auth")
    logger.setLevel(logging.INFO)
    try:
        for _ in range(1000):
            logger.debug("CanonicalRequest:\n%s", f"x-amz-security-token:{S}")
        assert calls == []  # no record was made
        logger.info("one record")
        assert len(calls) == 1
    finally:
        logger.setLevel(logging.NOTSET)


def test_installing_twice_wraps_the_record_factory_once() -> None:
    install_log_redaction()
    factory = logging.getLogRecordFactory()
    install_log_redaction()
    assert logging.getLogRecordFactory() is factory


def test_opening_a_store_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow_bucket.storage import open_store

    monkeypatch.setattr(redaction, "_installed", False)
    previous = logging.getLogRecordFactory()
    try:
        open_store("memory://redact-test/p").close()
        assert logging.getLogRecordFactory() is not previous
    finally:
        logging.setLogRecordFactory(previous)  # and monkeypatch restores _installed
