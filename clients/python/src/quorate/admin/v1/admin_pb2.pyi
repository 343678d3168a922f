from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_FOLLOWER: _ClassVar[Role]
    ROLE_PRE_CANDIDATE: _ClassVar[Role]
    ROLE_CANDIDATE: _ClassVar[Role]
    ROLE_LEADER: _ClassVar[Role]
    ROLE_LEARNER: _ClassVar[Role]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_HEALTHY: _ClassVar[Verdict]
    VERDICT_DEGRADED: _ClassVar[Verdict]
    VERDICT_STALE_LEADER: _ClassVar[Verdict]
    VERDICT_NO_MAJORITY: _ClassVar[Verdict]
    VERDICT_DIVERGED: _ClassVar[Verdict]
ROLE_UNSPECIFIED: Role
ROLE_FOLLOWER: Role
ROLE_PRE_CANDIDATE: Role
ROLE_CANDIDATE: Role
ROLE_LEADER: Role
ROLE_LEARNER: Role
VERDICT_UNSPECIFIED: Verdict
VERDICT_HEALTHY: Verdict
VERDICT_DEGRADED: Verdict
VERDICT_STALE_LEADER: Verdict
VERDICT_NO_MAJORITY: Verdict
VERDICT_DIVERGED: Verdict

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "role", "term", "leader_id", "commit_index", "applied_index", "last_log_index", "last_log_term", "persisted_index", "has_leader", "quorum_active", "lease_remaining_ms", "peer_address", "client_address", "leader_peer_address", "voters", "counters", "peers", "data_size_bytes", "leader_contact_ms", "uptime_seconds", "wall_clock_unix_ms", "rejoining_after_term", "corrupt", "first_log_index", "learners", "voters_outgoing", "cluster_id", "membership_index", "removed", "removed_ids", "writes_held", "snapshot_index", "log_size_bytes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    PERSISTED_INDEX_FIELD_NUMBER: _ClassVar[int]
    HAS_LEADER_FIELD_NUMBER: _ClassVar[int]
    QUORUM_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEADER_PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LEADER_CONTACT_MS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WALL_CLOCK_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REJOINING_AFTER_TERM_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_FIELD_NUMBER: _ClassVar[int]
    FIRST_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    VOTERS_OUTGOING_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_INDEX_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_IDS_FIELD_NUMBER: _ClassVar[int]
    WRITES_HELD_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    role: Role
    term: int
    leader_id: int
    commit_index: int
    applied_index: int
    last_log_index: int
    last_log_term: int
    persisted_index: int
    has_leader: bool
    quorum_active: bool
    lease_remaining_ms: int
    peer_address: str
    client_address: str
    leader_peer_address: str
    voters: _containers.RepeatedScalarFieldContainer[int]
    counters: Counters
    peers: _containers.RepeatedCompositeFieldContainer[PeerView]
    data_size_bytes: int
    leader_contact_ms: int
    uptime_seconds: int
    wall_clock_unix_ms: int
    rejoining_after_term: int
    corrupt: str
    first_log_index: int
    learners: _containers.RepeatedScalarFieldContainer[int]
    voters_outgoing: _containers.RepeatedScalarFieldContainer[int]
    cluster_id: int
    membership_index: int
    removed: bool
    removed_ids: _containers.RepeatedScalarFieldContainer[int]
    writes_held: str
    snapshot_index: int
    log_size_bytes: int
    def __init__(self, node_id: _Optional[int] = ..., role: _Optional[_Union[Role, str]] = ..., term: _Optional[int] = ..., leader_id: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_log_index: _Optional[int] = ..., last_log_term: _Optional[int] = ..., persisted_index: _Optional[int] = ..., has_leader: _Optional[bool] = ..., quorum_active: _Optional[bool] = ..., lease_remaining_ms: _Optional[int] = ..., peer_address: _Optional[str] = ..., client_address: _Optional[str] = ..., leader_peer_address: _Optional[str] = ..., voters: _Optional[_Iterable[int]] = ..., counters: _Optional[_Union[Counters, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[PeerView, _Mapping]]] = ..., data_size_bytes: _Optional[int] = ..., leader_contact_ms: _Optional[int] = ..., uptime_seconds: _Optional[int] = ..., wall_clock_unix_ms: _Optional[int] = ..., rejoining_after_term: _Optional[int] = ..., corrupt: _Optional[str] = ..., first_log_index: _Optional[int] = ..., learners: _Optional[_Iterable[int]] = ..., voters_outgoing: _Optional[_Iterable[int]] = ..., cluster_id: _Optional[int] = ..., membership_index: _Optional[int] = ..., removed: _Optional[bool] = ..., removed_ids: _Optional[_Iterable[int]] = ..., writes_held: _Optional[str] = ..., snapshot_index: _Optional[int] = ..., log_size_bytes: _Optional[int] = ...) -> None: ...

class PeerView(_message.Message):
    __slots__ = ("node_id", "peer_address", "last_sent_ok_ms", "last_received_ms", "rtt_us", "peer_term", "consecutive_failures", "last_error", "match_index", "lag", "reachable", "clock_offset_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LAST_SENT_OK_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_RECEIVED_MS_FIELD_NUMBER: _ClassVar[int]
    RTT_US_FIELD_NUMBER: _ClassVar[int]
    PEER_TERM_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    peer_address: str
    last_sent_ok_ms: int
    last_received_ms: int
    rtt_us: int
    peer_term: int
    consecutive_failures: int
    last_error: str
    match_index: int
    lag: int
    reachable: bool
    clock_offset_ms: int
    def __init__(self, node_id: _Optional[int] = ..., peer_address: _Optional[str] = ..., last_sent_ok_ms: _Optional[int] = ..., last_received_ms: _Optional[int] = ..., rtt_us: _Optional[int] = ..., peer_term: _Optional[int] = ..., consecutive_failures: _Optional[int] = ..., last_error: _Optional[str] = ..., match_index: _Optional[int] = ..., lag: _Optional[int] = ..., reachable: _Optional[bool] = ..., clock_offset_ms: _Optional[int] = ...) -> None: ...

class Counters(_message.Message):
    __slots__ = ("stale_token_rejections", "idempotent_replays", "no_quorum_refusals", "invalid_transitions", "key_reuse_rejections", "fencing_rejections", "leader_clock_corrections", "machine_clock_unix_ms")
    STALE_TOKEN_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENT_REPLAYS_FIELD_NUMBER: _ClassVar[int]
    NO_QUORUM_REFUSALS_FIELD_NUMBER: _ClassVar[int]
    INVALID_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    KEY_REUSE_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    FENCING_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    LEADER_CLOCK_CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    MACHINE_CLOCK_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    stale_token_rejections: int
    idempotent_replays: int
    no_quorum_refusals: int
    invalid_transitions: int
    key_reuse_rejections: int
    fencing_rejections: int
    leader_clock_corrections: int
    machine_clock_unix_ms: int
    def __init__(self, stale_token_rejections: _Optional[int] = ..., idempotent_replays: _Optional[int] = ..., no_quorum_refusals: _Optional[int] = ..., invalid_transitions: _Optional[int] = ..., key_reuse_rejections: _Optional[int] = ..., fencing_rejections: _Optional[int] = ..., leader_clock_corrections: _Optional[int] = ..., machine_clock_unix_ms: _Optional[int] = ...) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Member(_message.Message):
    __slots__ = ("node_id", "peer_address", "client_address", "voter", "view", "learner", "outgoing")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    OUTGOING_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    peer_address: str
    client_address: str
    voter: bool
    view: PeerView
    learner: bool
    outgoing: bool
    def __init__(self, node_id: _Optional[int] = ..., peer_address: _Optional[str] = ..., client_address: _Optional[str] = ..., voter: _Optional[bool] = ..., view: _Optional[_Union[PeerView, _Mapping]] = ..., learner: _Optional[bool] = ..., outgoing: _Optional[bool] = ...) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members", "leader_id", "term", "joint", "membership_index")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    JOINT_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_INDEX_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    leader_id: int
    term: int
    joint: bool
    membership_index: int
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., leader_id: _Optional[int] = ..., term: _Optional[int] = ..., joint: _Optional[bool] = ..., membership_index: _Optional[int] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("node_id", "peer_address", "voter")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    peer_address: str
    voter: bool
    def __init__(self, node_id: _Optional[int] = ..., peer_address: _Optional[str] = ..., voter: _Optional[bool] = ...) -> None: ...

class PromoteMemberRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    def __init__(self, node_id: _Optional[int] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    def __init__(self, node_id: _Optional[int] = ...) -> None: ...

class UpdateMemberRequest(_message.Message):
    __slots__ = ("node_id", "peer_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    peer_address: str
    def __init__(self, node_id: _Optional[int] = ..., peer_address: _Optional[str] = ...) -> None: ...

class MembershipChangeResponse(_message.Message):
    __slots__ = ("index", "term", "members")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    members: ListMembersResponse
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., members: _Optional[_Union[ListMembersResponse, _Mapping]] = ...) -> None: ...

class TransferLeadershipRequest(_message.Message):
    __slots__ = ("target_id",)
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    def __init__(self, target_id: _Optional[int] = ...) -> None: ...

class TransferLeadershipResponse(_message.Message):
    __slots__ = ("leader_id", "term")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader_id: int
    term: int
    def __init__(self, leader_id: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class StepDownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StepDownResponse(_message.Message):
    __slots__ = ("new_leader_id", "term")
    NEW_LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    new_leader_id: int
    term: int
    def __init__(self, new_leader_id: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class HashEventsRequest(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class HashEventsResponse(_message.Message):
    __slots__ = ("index", "hash", "events")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    hash: str
    events: int
    def __init__(self, index: _Optional[int] = ..., hash: _Optional[str] = ..., events: _Optional[int] = ...) -> None: ...

class SplitBrainReportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MemberReport(_message.Message):
    __slots__ = ("node_id", "peer_address", "answered", "error", "status")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    peer_address: str
    answered: bool
    error: str
    status: StatusResponse
    def __init__(self, node_id: _Optional[int] = ..., peer_address: _Optional[str] = ..., answered: _Optional[bool] = ..., error: _Optional[str] = ..., status: _Optional[_Union[StatusResponse, _Mapping]] = ...) -> None: ...

class Reachability(_message.Message):
    __slots__ = ("to", "reachable", "known", "last_contact_ms")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_MS_FIELD_NUMBER: _ClassVar[int]
    to: int
    reachable: bool
    known: bool
    last_contact_ms: int
    def __init__(self, to: _Optional[int] = ..., reachable: _Optional[bool] = ..., known: _Optional[bool] = ..., last_contact_ms: _Optional[int] = ..., **kwargs) -> None: ...

class LeadersInTerm(_message.Message):
    __slots__ = ("term", "leader_ids")
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_IDS_FIELD_NUMBER: _ClassVar[int]
    term: int
    leader_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, term: _Optional[int] = ..., leader_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Partition(_message.Message):
    __slots__ = ("node_ids", "has_majority")
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    HAS_MAJORITY_FIELD_NUMBER: _ClassVar[int]
    node_ids: _containers.RepeatedScalarFieldContainer[int]
    has_majority: bool
    def __init__(self, node_ids: _Optional[_Iterable[int]] = ..., has_majority: _Optional[bool] = ...) -> None: ...

class Majority(_message.Message):
    __slots__ = ("node_ids", "leader_id", "term")
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    node_ids: _containers.RepeatedScalarFieldContainer[int]
    leader_id: int
    term: int
    def __init__(self, node_ids: _Optional[_Iterable[int]] = ..., leader_id: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class StaleLeader(_message.Message):
    __slots__ = ("node_id", "term", "lease_remaining_ms", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    term: int
    lease_remaining_ms: int
    reason: str
    def __init__(self, node_id: _Optional[int] = ..., term: _Optional[int] = ..., lease_remaining_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class NodeHash(_message.Message):
    __slots__ = ("node_id", "hash", "error")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    hash: str
    error: str
    def __init__(self, node_id: _Optional[int] = ..., hash: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class Divergence(_message.Message):
    __slots__ = ("common_index", "hashes", "diverged_node_ids", "undecided")
    COMMON_INDEX_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    UNDECIDED_FIELD_NUMBER: _ClassVar[int]
    common_index: int
    hashes: _containers.RepeatedCompositeFieldContainer[NodeHash]
    diverged_node_ids: _containers.RepeatedScalarFieldContainer[int]
    undecided: bool
    def __init__(self, common_index: _Optional[int] = ..., hashes: _Optional[_Iterable[_Union[NodeHash, _Mapping]]] = ..., diverged_node_ids: _Optional[_Iterable[int]] = ..., undecided: _Optional[bool] = ...) -> None: ...

class SplitBrainReportResponse(_message.Message):
    __slots__ = ("verdict", "members", "reachability", "leaders_by_term", "partitions", "majority", "stale_leaders", "divergence", "recommended_action", "reporter_id", "reporter_in_majority", "duration_ms", "clock_skews")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REACHABILITY_FIELD_NUMBER: _ClassVar[int]
    LEADERS_BY_TERM_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    MAJORITY_FIELD_NUMBER: _ClassVar[int]
    STALE_LEADERS_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_ACTION_FIELD_NUMBER: _ClassVar[int]
    REPORTER_ID_FIELD_NUMBER: _ClassVar[int]
    REPORTER_IN_MAJORITY_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SKEWS_FIELD_NUMBER: _ClassVar[int]
    verdict: Verdict
    members: _containers.RepeatedCompositeFieldContainer[MemberReport]
    reachability: _containers.RepeatedCompositeFieldContainer[Reachability]
    leaders_by_term: _containers.RepeatedCompositeFieldContainer[LeadersInTerm]
    partitions: _containers.RepeatedCompositeFieldContainer[Partition]
    majority: Majority
    stale_leaders: _containers.RepeatedCompositeFieldContainer[StaleLeader]
    divergence: Divergence
    recommended_action: str
    reporter_id: int
    reporter_in_majority: bool
    duration_ms: int
    clock_skews: _containers.RepeatedCompositeFieldContainer[ClockSkew]
    def __init__(self, verdict: _Optional[_Union[Verdict, str]] = ..., members: _Optional[_Iterable[_Union[MemberReport, _Mapping]]] = ..., reachability: _Optional[_Iterable[_Union[Reachability, _Mapping]]] = ..., leaders_by_term: _Optional[_Iterable[_Union[LeadersInTerm, _Mapping]]] = ..., partitions: _Optional[_Iterable[_Union[Partition, _Mapping]]] = ..., majority: _Optional[_Union[Majority, _Mapping]] = ..., stale_leaders: _Optional[_Iterable[_Union[StaleLeader, _Mapping]]] = ..., divergence: _Optional[_Union[Divergence, _Mapping]] = ..., recommended_action: _Optional[str] = ..., reporter_id: _Optional[int] = ..., reporter_in_majority: _Optional[bool] = ..., duration_ms: _Optional[int] = ..., clock_skews: _Optional[_Iterable[_Union[ClockSkew, _Mapping]]] = ...) -> None: ...

class ClockSkew(_message.Message):
    __slots__ = ("node_id", "offset_ms", "measured_by")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_BY_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    offset_ms: int
    measured_by: int
    def __init__(self, node_id: _Optional[int] = ..., offset_ms: _Optional[int] = ..., measured_by: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("index", "term", "first_log_index", "log_size_bytes_before", "log_size_bytes_after")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    FIRST_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    first_log_index: int
    log_size_bytes_before: int
    log_size_bytes_after: int
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., first_log_index: _Optional[int] = ..., log_size_bytes_before: _Optional[int] = ..., log_size_bytes_after: _Optional[int] = ...) -> None: ...

class SaveSnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotHeader(_message.Message):
    __slots__ = ("index", "term", "cluster_id", "member_id", "voters", "learners", "image_bytes", "created_unix_ms", "events_hash")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_HASH_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    cluster_id: int
    member_id: int
    voters: _containers.RepeatedScalarFieldContainer[int]
    learners: _containers.RepeatedScalarFieldContainer[int]
    image_bytes: int
    created_unix_ms: int
    events_hash: str
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., cluster_id: _Optional[int] = ..., member_id: _Optional[int] = ..., voters: _Optional[_Iterable[int]] = ..., learners: _Optional[_Iterable[int]] = ..., image_bytes: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., events_hash: _Optional[str] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("header", "data", "sha256")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    header: SnapshotHeader
    data: bytes
    sha256: bytes
    def __init__(self, header: _Optional[_Union[SnapshotHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., sha256: _Optional[bytes] = ...) -> None: ...
