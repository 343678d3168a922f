"""A thin, idiomatic Python client for Quorate, over the generated gRPC stubs.

    from quorate_client import Client

    client = Client(["127.0.0.1:23791", "127.0.0.1:23792", "127.0.0.1:23793"])
    event, replayed = client.authorize("pay-1", 1250, "EUR", idempotency_key="order-77")
    print(client.get("pay-1").state)

Writes follow the contract's one retry rule (the same as `quoratectl`'s): a write that failed
with OUTCOME_UNKNOWN, NO_QUORUM, NOT_LEADER, SHUTTING_DOWN, CORRUPT, RESOURCE_EXHAUSTED or BUSY, or
with no Quorate reason on a broken call (UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN), is sent
again, to the next endpoint, with the same idempotency key: the cluster applies it at most
once and answers a repeat with the first answer (``replayed=True``). An overloaded node's
RESOURCE_EXHAUSTED carries a retry hint, which is waited out first. Every other error is
definite and raised as a :class:`QuorateError` carrying its reason.

With TLS, as etcdctl names the files::

    Client(endpoints, cacert="ca.pem", cert="me.pem", key="me-key.pem")   # client certificate
    Client(endpoints, cacert="ca.pem", token=open("token").read())       # bearer token
"""

import time
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from quorate.admin.v1 import admin_pb2, admin_pb2_grpc
from quorate.payments.v1 import payments_pb2, payments_pb2_grpc

__all__ = [
    "Client",
    "Lease",
    "LeaseHeld",
    "QuorateError",
    "reason_of",
    "retryable",
    "retry_delay",
    "payments_pb2",
    "admin_pb2",
]

ERROR_DOMAIN = "quorate"
RETRYABLE_REASONS = frozenset(
    {
        "OUTCOME_UNKNOWN",
        "NO_QUORUM",
        "NOT_LEADER",
        "SHUTTING_DOWN",
        "CORRUPT",
        "RESOURCE_EXHAUSTED",
        "BUSY",
    }
)
_RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN}
)


def reason_of(error):
    """The ``google.rpc.ErrorInfo`` reason of a failed call (``None`` when it carries none)."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                return info.reason
    return None


def retry_delay(error):
    """The wait a ``google.rpc.RetryInfo`` detail asks for, in seconds (``None``: none)."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def retryable(error):
    """Whether a failed write may be sent again with the same idempotency key."""
    reason = reason_of(error)
    if reason is not None:
        return reason in RETRYABLE_REASONS
    return isinstance(error, grpc.Call) and error.code() in _RETRYABLE_CODES


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """``authorization: Bearer <token>`` on a plain channel (gRPC's call credentials need
    TLS; a node without TLS still accepts tokens, though they then cross in clear text)."""

    def __init__(self, token):
        self._metadata = ("authorization", f"Bearer {token}")

    def _add(self, details):
        metadata = list(details.metadata or []) + [self._metadata]
        return _Details(details, metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._add(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._add(details), request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, details, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class QuorateError(Exception):
    """A definite refusal: ``code`` (a ``grpc.StatusCode``), ``reason`` (the contract's
    name, e.g. ``STALE_TOKEN``) and the server's ``message``."""

    def __init__(self, code, reason, message):
        super().__init__(f"{reason or code.name}: {message}")
        self.code = code
        self.reason = reason
        self.message = message

    @classmethod
    def from_rpc(cls, error):
        return cls(error.code(), reason_of(error), error.details())


class LeaseHeld(Exception):
    """The lease is held by another holder (``holder``) for ``expires_in_ms`` more."""

    def __init__(self, name, holder, expires_in_ms):
        super().__init__(f"lease {name!r} is held by {holder!r} for {expires_in_ms} ms")
        self.name = name
        self.holder = holder
        self.expires_in_ms = expires_in_ms


class Client:
    """Clients of every endpoint (``host:port`` of nodes' client ports).

    ``deadline`` bounds each call; ``retry_for`` bounds how long a write is retried.

    TLS: ``cacert`` (the CA that signed the nodes' certificates) turns it on; ``cert`` and
    ``key`` present a client certificate (its common name is the identity the nodes' roles
    file knows); ``token`` is sent as ``authorization: Bearer <token>`` instead, for
    deployments without client certificates. Files are PEM paths."""

    def __init__(self, endpoints, deadline=5.0, retry_for=30.0, cacert=None, cert=None, key=None, token=None):
        if not endpoints:
            raise ValueError("endpoints: give at least one host:port")
        if (cert is None) != (key is None):
            raise ValueError("cert and key go together")
        if cert is not None and cacert is None:
            raise ValueError("cert needs cacert: the CA that signed the nodes' certificates")
        self.endpoints = list(endpoints)
        self.deadline = deadline
        self.retry_for = retry_for
        if cacert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(cacert),
                private_key=_read(key) if key else None,
                certificate_chain=_read(cert) if cert else None,
            )
            if token is not None:
                credentials = grpc.composite_channel_credentials(
                    credentials, grpc.access_token_call_credentials(token.strip())
                )
            self._channels = [grpc.secure_channel(e, credentials) for e in self.endpoints]
        else:
            self._channels = [grpc.insecure_channel(e) for e in self.endpoints]
            if token is not None:
                interceptor = _BearerToken(token.strip())
                self._channels = [grpc.intercept_channel(c, interceptor) for c in self._channels]
        self._next = 0

    def close(self):
        for channel in self._channels:
            channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _channel(self):
        channel = self._channels[self._next % len(self._channels)]
        return channel

    def _rotate(self):
        self._next += 1

    def _call(self, make, request, retry):
        """Calls ``make(channel)(request)`` on the current endpoint; with ``retry``, again on
        the next ones while the failure is retryable."""
        give_up = time.monotonic() + self.retry_for
        while True:
            try:
                return make(self._channel())(request, timeout=self.deadline)
            except grpc.RpcError as error:
                if not (retry and retryable(error)) or time.monotonic() > give_up:
                    raise QuorateError.from_rpc(error) from None
                self._rotate()
                time.sleep(retry_delay(error) or 0.05)

    def submit(self, request):
        """Sends a ``payments_pb2.SubmitRequest``, retrying undecided outcomes with its
        idempotency key. Returns ``(event, replayed)``."""
        if not request.idempotency_key:
            raise ValueError("idempotency_key: a write needs one to be retried safely")
        reply = self._call(
            lambda c: payments_pb2_grpc.PaymentEventsStub(c).Submit, request, retry=True
        )
        return reply.event, reply.replayed

    def _event(self, kind, payment_id, amount_minor, currency, idempotency_key, metadata, lease):
        request = payments_pb2.SubmitRequest(
            payment_id=payment_id,
            idempotency_key=idempotency_key or str(uuid.uuid4()),
            kind=kind,
            amount_minor=amount_minor,
            currency=currency,
            metadata=metadata or {},
        )
        if lease is not None:
            request.fence.CopyFrom(lease.fence())
        return self.submit(request)

    def authorize(self, payment_id, amount_minor, currency, idempotency_key=None, metadata=None, lease=None):
        return self._event(payments_pb2.EVENT_KIND_AUTHORIZED, payment_id, amount_minor, currency, idempotency_key, metadata, lease)

    def capture(self, payment_id, amount_minor, currency, idempotency_key=None, metadata=None, lease=None):
        return self._event(payments_pb2.EVENT_KIND_CAPTURED, payment_id, amount_minor, currency, idempotency_key, metadata, lease)

    def void(self, payment_id, currency, idempotency_key=None, metadata=None, lease=None):
        return self._event(payments_pb2.EVENT_KIND_VOIDED, payment_id, 0, currency, idempotency_key, metadata, lease)

    def refund(self, payment_id, amount_minor, currency, idempotency_key=None, metadata=None, lease=None):
        return self._event(payments_pb2.EVENT_KIND_REFUNDED, payment_id, amount_minor, currency, idempotency_key, metadata, lease)

    def get(self, payment_id, stale=False):
        """The payment (linearizable unless ``stale``). Reads are retried like writes: they
        change nothing."""
        consistency = (
            payments_pb2.CONSISTENCY_STALE if stale else payments_pb2.CONSISTENCY_LINEARIZABLE
        )
        request = payments_pb2.GetRequest(payment_id=payment_id, consistency=consistency)
        reply = self._call(lambda c: payments_pb2_grpc.PaymentEventsStub(c).Get, request, retry=True)
        return reply.payment

    def status(self, endpoint_index=0):
        """``Admin.Status`` of one endpoint."""
        stub = admin_pb2_grpc.AdminStub(self._channels[endpoint_index])
        return stub.Status(admin_pb2.StatusRequest(), timeout=self.deadline)

    def lease(self, name, holder, ttl_ms=10_000):
        """A writer lease: see :class:`Lease`."""
        return Lease(self, name, holder, ttl_ms)


class Lease:
    """A writer lease. ``acquire()`` takes it and remembers its fencing token; writes made
    with ``lease=`` carry that token, so the cluster refuses them (``STALE_TOKEN``) once
    another holder took the lease over. Use as a context manager to release it at the end."""

    def __init__(self, client, name, holder, ttl_ms):
        self.client = client
        self.name = name
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.token = None

    def _leases(self, channel):
        return payments_pb2_grpc.LeasesStub(channel)

    def acquire(self):
        reply = self.client._call(
            lambda c: self._leases(c).Acquire,
            payments_pb2.AcquireRequest(name=self.name, holder=self.holder, ttl_ms=self.ttl_ms),
            retry=True,
        )
        if not reply.granted:
            raise LeaseHeld(self.name, reply.holder, reply.expires_in_ms)
        self.token = reply.token
        return self

    def keep_alive(self):
        self._require()
        self.client._call(
            lambda c: self._leases(c).KeepAlive,
            payments_pb2.KeepAliveRequest(name=self.name, holder=self.holder, token=self.token),
            retry=True,
        )

    def release(self):
        if self.token is None:
            return
        self.client._call(
            lambda c: self._leases(c).Release,
            payments_pb2.ReleaseRequest(name=self.name, holder=self.holder, token=self.token),
            retry=True,
        )
        self.token = None

    def fence(self):
        self._require()
        return payments_pb2.LeaseFence(lease=self.name, token=self.token)

    def _require(self):
        if self.token is None:
            raise RuntimeError(f"lease {self.name!r} is not held: acquire() it first")

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
