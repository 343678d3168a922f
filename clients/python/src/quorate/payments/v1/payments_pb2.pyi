from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_AUTHORIZED: _ClassVar[EventKind]
    EVENT_KIND_CAPTURED: _ClassVar[EventKind]
    EVENT_KIND_VOIDED: _ClassVar[EventKind]
    EVENT_KIND_REFUNDED: _ClassVar[EventKind]

class PaymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATE_UNSPECIFIED: _ClassVar[PaymentState]
    PAYMENT_STATE_AUTHORIZED: _ClassVar[PaymentState]
    PAYMENT_STATE_PARTIALLY_CAPTURED: _ClassVar[PaymentState]
    PAYMENT_STATE_CAPTURED: _ClassVar[PaymentState]
    PAYMENT_STATE_VOIDED: _ClassVar[PaymentState]
    PAYMENT_STATE_PARTIALLY_REFUNDED: _ClassVar[PaymentState]
    PAYMENT_STATE_REFUNDED: _ClassVar[PaymentState]

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_UNSPECIFIED: _ClassVar[Consistency]
    CONSISTENCY_LINEARIZABLE: _ClassVar[Consistency]
    CONSISTENCY_STALE: _ClassVar[Consistency]
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_AUTHORIZED: EventKind
EVENT_KIND_CAPTURED: EventKind
EVENT_KIND_VOIDED: EventKind
EVENT_KIND_REFUNDED: EventKind
PAYMENT_STATE_UNSPECIFIED: PaymentState
PAYMENT_STATE_AUTHORIZED: PaymentState
PAYMENT_STATE_PARTIALLY_CAPTURED: PaymentState
PAYMENT_STATE_CAPTURED: PaymentState
PAYMENT_STATE_VOIDED: PaymentState
PAYMENT_STATE_PARTIALLY_REFUNDED: PaymentState
PAYMENT_STATE_REFUNDED: PaymentState
CONSISTENCY_UNSPECIFIED: Consistency
CONSISTENCY_LINEARIZABLE: Consistency
CONSISTENCY_STALE: Consistency

class FencingToken(_message.Message):
    __slots__ = ("term", "sequence")
    TERM_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    term: int
    sequence: int
    def __init__(self, term: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class LeaseFence(_message.Message):
    __slots__ = ("lease", "token")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    lease: str
    token: int
    def __init__(self, lease: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("payment_id", "idempotency_key", "kind", "amount_minor", "currency", "metadata", "fence")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    idempotency_key: str
    kind: EventKind
    amount_minor: int
    currency: str
    metadata: _containers.ScalarMap[str, str]
    fence: LeaseFence
    def __init__(self, payment_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., kind: _Optional[_Union[EventKind, str]] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., fence: _Optional[_Union[LeaseFence, _Mapping]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("event", "replayed")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    event: PaymentEvent
    replayed: bool
    def __init__(self, event: _Optional[_Union[PaymentEvent, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class PaymentEvent(_message.Message):
    __slots__ = ("index", "token", "payment_id", "payment_seq", "kind", "amount_minor", "currency", "idempotency_key", "metadata", "fence", "recorded_at_unix_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    index: int
    token: FencingToken
    payment_id: str
    payment_seq: int
    kind: EventKind
    amount_minor: int
    currency: str
    idempotency_key: str
    metadata: _containers.ScalarMap[str, str]
    fence: LeaseFence
    recorded_at_unix_ms: int
    def __init__(self, index: _Optional[int] = ..., token: _Optional[_Union[FencingToken, _Mapping]] = ..., payment_id: _Optional[str] = ..., payment_seq: _Optional[int] = ..., kind: _Optional[_Union[EventKind, str]] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., fence: _Optional[_Union[LeaseFence, _Mapping]] = ..., recorded_at_unix_ms: _Optional[int] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("payment_id", "state", "currency", "authorized_minor", "captured_minor", "refunded_minor", "events", "events_compacted")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZED_MINOR_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_MINOR_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_MINOR_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_COMPACTED_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    state: PaymentState
    currency: str
    authorized_minor: int
    captured_minor: int
    refunded_minor: int
    events: _containers.RepeatedCompositeFieldContainer[PaymentEvent]
    events_compacted: int
    def __init__(self, payment_id: _Optional[str] = ..., state: _Optional[_Union[PaymentState, str]] = ..., currency: _Optional[str] = ..., authorized_minor: _Optional[int] = ..., captured_minor: _Optional[int] = ..., refunded_minor: _Optional[int] = ..., events: _Optional[_Iterable[_Union[PaymentEvent, _Mapping]]] = ..., events_compacted: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("payment_id", "consistency")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    consistency: Consistency
    def __init__(self, payment_id: _Optional[str] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("payment", "applied_index", "stale")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    payment: Payment
    applied_index: int
    stale: bool
    def __init__(self, payment: _Optional[_Union[Payment, _Mapping]] = ..., applied_index: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("after_index", "limit", "consistency")
    AFTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    after_index: int
    limit: int
    consistency: Consistency
    def __init__(self, after_index: _Optional[int] = ..., limit: _Optional[int] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("events", "next_after_index", "applied_index", "stale")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[PaymentEvent]
    next_after_index: int
    applied_index: int
    stale: bool
    def __init__(self, events: _Optional[_Iterable[_Union[PaymentEvent, _Mapping]]] = ..., next_after_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("after_index", "consistency")
    AFTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    after_index: int
    consistency: Consistency
    def __init__(self, after_index: _Optional[int] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class AcquireRequest(_message.Message):
    __slots__ = ("name", "holder", "ttl_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    holder: str
    ttl_ms: int
    def __init__(self, name: _Optional[str] = ..., holder: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class AcquireResponse(_message.Message):
    __slots__ = ("granted", "token", "holder", "expires_in_ms")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    token: int
    holder: str
    expires_in_ms: int
    def __init__(self, granted: _Optional[bool] = ..., token: _Optional[int] = ..., holder: _Optional[str] = ..., expires_in_ms: _Optional[int] = ...) -> None: ...

class KeepAliveRequest(_message.Message):
    __slots__ = ("name", "holder", "token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    holder: str
    token: int
    def __init__(self, name: _Optional[str] = ..., holder: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class KeepAliveResponse(_message.Message):
    __slots__ = ("expires_in_ms",)
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    expires_in_ms: int
    def __init__(self, expires_in_ms: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("name", "holder", "token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    holder: str
    token: int
    def __init__(self, name: _Optional[str] = ..., holder: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...
