"""Secrets out of everything mlflow-bucket prints or logs.

One function, :func:`redact`, takes any text (a URL, an error message, a log
line, a dump of HTTP headers) and returns it with the credentials it may
carry replaced by ``***``:

- the ``user:password@`` of a URL (``http://KEY:SECRET@host`` -> ``http://***@host``);
- the value of a query parameter or ``name=value`` pair whose name looks
  secret (``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``,
  ``X-Goog-Signature``, ``GoogleAccessId``, ``sig``, ``token``,
  ``access_token``, ``key``, ``password``...);
- the value of a header or dictionary/JSON entry whose name looks secret
  (``Authorization``, ``X-Amz-Security-Token``, ``x-goog-...-token``,
  ``Cookie``, ``access_token``, ``SecretAccessKey``, ``private_key``...),
  in a Python repr, JSON or an HTTP header line (botocore's canonical
  request has ``x-amz-security-token:VALUE``);
- ``Bearer``/``Basic`` credentials, botocore's logged ``Signature``, and
  values shaped like a credential wherever they appear: AWS access key ids
  (``AKIA...``, ``ASIA...``), STS session tokens, Google OAuth access tokens
  (``ya29....``) and PEM private keys.

:func:`url_credentials` says what credential a URL-valued setting carries
(without repeating it), for the configuration to refuse it.

:func:`install_log_redaction` puts :class:`SecretsFilter` in front of every
record of the loggers of the cloud SDKs, HTTP clients, MLflow and our own
(``WATCHED_LOGGERS`` and their children): with DEBUG logging botocore logs
each request's headers (``X-Amz-Security-Token``, ``Authorization``) and
its canonical request. The storage layer installs it when it opens a store.

Standard library only: ``project`` (imported at ``import mlflow``) uses it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

MASK = "***"

# The name of a query parameter, header, dictionary key or name=value pair
# whose value is a credential.
_SECRET_NAME = re.compile(
    r"^(?:key|sig|pwd|auth)$"
    r"|secret|passw|token|signature|credential|cookie|session"
    r"|private[_-]?key|access[_-]?key|api[_-]?key|accessid|authorization"
    r"|customer[_-]?key|encryption[_-]?key",
    re.IGNORECASE,
)


def secret_name(name: str) -> bool:
    """Whether ``name`` (a query parameter, header or key) names a credential."""
    return bool(_SECRET_NAME.search(name.strip()))


# scheme://user[:password]@ : everything between // and @ with no / ? # in it.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@'\"<>]+@")
# PEM private keys, also JSON-escaped (\n as two characters).
_PEM = re.compile(
    r"-----BEGIN (?P<kind>[A-Z ]*)PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
    re.DOTALL,
)
# 'name': 'value', "name": "value", 'name': b'value' (a dict's repr, JSON).
_QUOTED_ITEM = re.compile(
    r"(?P<q>['\"])(?P<name>[^'\"\n]{1,100})(?P=q)(?P<sep>\s*:\s*b?)"
    r"(?P<vq>['\"])(?P<value>(?:\\.|(?!(?P=vq))[^\\])*)(?P=vq)"
)
# <SecretAccessKey>value</SecretAccessKey> (STS answers in XML).
_XML_ITEM = re.compile(r"<(?P<name>[A-Za-z][\w.\-]{0,100})>(?P<value>[^<]*)</(?P=name)>")
# A header line: "Authorization: value", "x-amz-security-token:value".
_HEADER_LINE = re.compile(
    r"^(?P<name>[A-Za-z][\w\-]{0,100})(?P<sep>[ \t]*:[ \t]*)(?P<value>\S[^\r\n]*)$",
    re.MULTILINE,
)
# name=value after ?, &, ;, a line start, a space, a comma or an opening
# parenthesis: query strings, "Credential=..., Signature=..." and kwargs reprs.
_PAIR = re.compile(
    r"(?P<pre>^|[?&;\s,(])(?P<name>[A-Za-z_][\w.\-]{0,100})=(?P<value>\"[^\"]*\"|'[^']*'|[^\s&;'\"<>#,)]*)",
    re.MULTILINE,
)
# botocore.auth logs "Signature:\n<hex>".
_SIGNATURE_DUMP = re.compile(r"(?P<pre>\bSignature:\s*)[0-9a-fA-F]{16,}")
_AUTH_SCHEME = re.compile(
    r"\b(?P<scheme>Bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*"
    r"|\b(?P<basic>Basic)\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{8,}=*",
)
# Values shaped like a credential, wherever they are.
_SHAPES = re.compile(
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b"  # AWS key ids
    r"|\b(?:IQoJb3JpZ2lu|FwoGZXIvYXdz|FQoGZXIvYXdz)[A-Za-z0-9+/=]+"  # STS session tokens
    r"|\bya29\.[A-Za-z0-9_\-.]+"  # Google OAuth access tokens
)


def _masked_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return f"{value[0]}{MASK}{value[0]}"
    return MASK


def _quoted_item(m: re.Match[str]) -> str:
    if not secret_name(m["name"]) or not m["value"]:
        return m[0]
    return f"{m['q']}{m['name']}{m['q']}{m['sep']}{m['vq']}{MASK}{m['vq']}"


def _xml_item(m: re.Match[str]) -> str:
    if not secret_name(m["name"]) or not m["value"]:
        return m[0]
    return f"<{m['name']}>{MASK}</{m['name']}>"


def _header_line(m: re.Match[str]) -> str:
    if not secret_name(m["name"]):
        return m[0]
    return f"{m['name']}{m['sep']}{MASK}"


def _pair(m: re.Match[str]) -> str:
    if not secret_name(m["name"]) or not m["value"] or m["value"] in ("''", '""'):
        return m[0]
    return f"{m['pre']}{m['name']}={_masked_value(m['value'])}"


def _auth_scheme(m: re.Match[str]) -> str:
    return f"{m['scheme'] or m['basic']} {MASK}"


_STEPS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_PEM, f"-----BEGIN \\g<kind>PRIVATE KEY-----{MASK}-----END \\g<kind>PRIVATE KEY-----"),
    (_USERINFO, f"\\g<scheme>{MASK}@"),
    (_QUOTED_ITEM, _quoted_item),
    (_XML_ITEM, _xml_item),
    (_HEADER_LINE, _header_line),
    (_SIGNATURE_DUMP, f"\\g<pre>{MASK}"),
    (_PAIR, _pair),
    (_AUTH_SCHEME, _auth_scheme),
    (_SHAPES, MASK),
)


def redact(text: str) -> str:
    """``text`` with every credential it may carry replaced by ``***``.

    For anything the product prints or logs: URLs (userinfo, secret query
    parameters), error messages, header dumps, JSON and XML bodies.
    """
    if not text:
        return text
    for pattern, replacement in _STEPS:
        text = pattern.sub(replacement, text)
    return text


# -- URL-valued settings --------------------------------------------------------------


def url_credentials(value: str) -> str | None:
    """What credential the URL ``value`` carries, described without its value
    (``"user:password@ before the host"``, ``"the query parameter 'X-Amz-Signature'"``),
    or None. A value without a scheme (``host:port``) is read as ``//host:port``."""
    rest = value.split("://", 1)[1] if "://" in value else value
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return "user@ or user:password@ before the host"
    for separator in ("?", "#"):
        if separator not in value:
            continue
        part = value.split(separator, 1)[1]
        if separator == "?":
            part = part.split("#", 1)[0]
        for name, _ in parse_qsl(part, keep_blank_values=True):
            if secret_name(name):
                where = "query" if separator == "?" else "fragment"
                return f"the {where} parameter {name!r}"
    return None


# -- log records -------------------------------------------------------------------------

# Loggers (and their children) whose records are redacted: the cloud SDKs and
# HTTP clients the stores use, MLflow, the servers it runs on, and our own.
WATCHED_LOGGERS = (
    "botocore",
    "aiobotocore",
    "boto3",
    "s3transfer",
    "s3fs",
    "gcsfs",
    "google",
    "google_auth_httplib2",
    "google_auth_oauthlib",
    "urllib3",
    "requests",
    "aiohttp",
    "fsspec",
    "httpx",
    "httpcore",
    "mlflow",
    "mlflow_bucket",
    "mlflow_bucket_plugins",
    "uvicorn",
    "werkzeug",
)
_WATCHED = frozenset(WATCHED_LOGGERS)
_WATCHED_PREFIXES = tuple(f"{name}." for name in WATCHED_LOGGERS)


def watched(logger_name: str) -> bool:
    return logger_name in _WATCHED or logger_name.startswith(_WATCHED_PREFIXES)


class SecretsFilter(logging.Filter):
    """Redacts a record's message (and its exception text) in place; drops nothing.

    Also usable on a handler: ``handler.addFilter(SecretsFilter())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record)
        return True


def scrub(record: logging.LogRecord) -> None:
    """Redact ``record``'s message and exception text in place."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format: leave it for the handler to report
        return
    clean = redact(message)
    if clean != message:
        record.msg = clean
        record.args = ()
    if record.exc_info and not record.exc_text:
        text = _FORMATTER.formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            # Formatters use exc_text when it is set.
            record.exc_text = clean


_FORMATTER = logging.Formatter()
_FILTER = SecretsFilter()
_install_lock = threading.Lock()
_installed = False


def install_log_redaction() -> None:
    """Redact every record of ``WATCHED_LOGGERS`` and their children, in this process.

    A filter added to a logger sees only the records logged on that very
    logger, not its children's (``botocore.endpoint``, ``botocore.auth``), and
    a handler's only when the handler exists when the filter is added. So the
    filter is applied where records are made: the log record factory, which
    runs for every logger and handler, including loggers created later. A
    record is made only when its level is enabled, so with DEBUG off this
    costs nothing on the requests' debug calls. Idempotent.
    """
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if watched(record.name):
                _FILTER.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
