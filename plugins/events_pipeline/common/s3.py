"""S3 clients through Airflow connections, with errors that name the setting at fault."""

from __future__ import annotations

from typing import Any

from events_pipeline.common.errors import ServiceUnreachableError, SettingError
from events_pipeline.common.settings import AWS_CONN_ID, require_connection

#: How an AWS connection is written in ``AIRFLOW_CONN_<ID>`` (for error messages).
AWS_CONN_HOW = (
    'JSON like {"conn_type": "aws", "login": "<access key>", "password": "<secret key>", '
    '"extra": {"endpoint_url": "http://minio:9000"}} (endpoint_url only for MinIO or another '
    "S3-compatible server; without login/password the AWS default credential chain is used)"
)

#: S3 error codes meaning "no such key" (HEAD answers bare HTTP codes, GET named ones).
NO_SUCH_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
#: S3 error codes meaning "no such bucket".
NO_SUCH_BUCKET = frozenset({"NoSuchBucket", "404", "NotFound"})
#: S3 error codes meaning "access denied".
ACCESS_DENIED = frozenset({"AccessDenied", "403", "Forbidden"})
#: S3 error codes of a conditional request whose condition (e.g. ``If-Match``) failed.
PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412"})


def error_code(exc: BaseException) -> str:
    """Return the S3 error code of a botocore ``ClientError`` (``""`` for any other exception).

    :param exc: the exception raised by a boto3 call.
    """
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def s3_client(conn_id: str | None = None) -> Any:
    """Return a boto3 S3 client built from the Airflow connection ``conn_id``.

    The connection's ``endpoint_url`` extra (MinIO, a local S3 server) is honoured.
    The connection must exist: the AWS hook would otherwise fall back to the
    default credentials and real AWS without a word, and fail later with an
    error that is retried for minutes (``aws_default`` for the landing and
    backup buckets, a client's ``clients.export_conn_id`` for its bucket).

    :param conn_id: Airflow AWS connection id; ``None`` means ``aws_default``.
    :raises SettingError: the connection does not exist (names it and ``AIRFLOW_CONN_<ID>``).
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    conn_id = conn_id or AWS_CONN_ID
    require_connection(conn_id, AWS_CONN_HOW)
    return S3Hook(aws_conn_id=conn_id).get_conn()


def check_bucket(client: Any, bucket: str, *, what: str, conn_id: str | None = None) -> None:
    """Fail with one clear line when ``bucket`` is missing, forbidden or unreachable.

    :param client: a boto3 S3 client.
    :param bucket: the bucket name.
    :param what: which setting or client the bucket belongs to, for the message
        (e.g. ``"Variable events_landing_bucket"``).
    :param conn_id: the connection used, for the message.
    :raises SettingError: the bucket does not exist or access is denied.
    :raises ServiceUnreachableError: the endpoint cannot be reached.
    """
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    via = f"connection {conn_id or AWS_CONN_ID!r}"
    try:
        client.head_bucket(Bucket=bucket)
    except EndpointConnectionError as exc:
        raise ServiceUnreachableError(
            f"S3 endpoint unreachable for bucket {bucket!r} ({what}) through {via}: {exc}"
        ) from exc
    except ClientError as exc:
        code = error_code(exc)
        if code in NO_SUCH_BUCKET:
            raise SettingError(
                f"S3 bucket {bucket!r} ({what}) does not exist (checked through {via})"
            ) from exc
        if code in ACCESS_DENIED:
            raise SettingError(f"access denied to S3 bucket {bucket!r} ({what}) through {via}") from exc
        raise
    except BotoCoreError as exc:
        raise ServiceUnreachableError(
            f"S3 error for bucket {bucket!r} ({what}) through {via}: {exc}"
        ) from exc
