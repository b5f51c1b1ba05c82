//! Every record of ZooKeeper 3.9's client protocol, in `zookeeper.jute`'s
//! order and with its field names (snake_cased). ConnectRequest/Response and
//! multi are irregular and live in `connect.rs` and `multi.rs`.

use crate::records;

records! {
    // ---- module org.apache.zookeeper.data ----

    /// An identity: `scheme` is world, auth, digest, ip, super...
    pub struct Id { pub scheme: String, pub id: String }

    /// `perms` is a bit set of `Perms`.
    pub struct Acl { pub perms: i32, pub id: Id }

    /// A znode's metadata as clients see it.
    pub struct Stat {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub data_length: i32,
        pub num_children: i32,
        pub pzxid: i64,
    }

    /// The answer element of whoAmI.
    pub struct ClientInfo { pub auth_scheme: String, pub user: String }

    // ---- module org.apache.zookeeper.proto ----

    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }

    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }

    pub struct RequestHeader { pub xid: i32, pub r#type: i32 }

    /// Precedes each op of a multi request/response; `done` marks the end.
    pub struct MultiHeader { pub r#type: i32, pub done: bool, pub err: i32 }

    pub struct AuthPacket { pub r#type: i32, pub scheme: String, pub auth: Vec<u8> }

    pub struct ReplyHeader { pub xid: i32, pub zxid: i64, pub err: i32 }

    pub struct GetDataRequest { pub path: String, pub watch: bool }

    pub struct SetDataRequest { pub path: String, pub data: Option<Vec<u8>>, pub version: i32 }

    pub struct ReconfigRequest {
        pub joining_servers: String,
        pub leaving_servers: String,
        pub new_members: String,
        pub cur_config_id: i64,
    }

    pub struct SetDataResponse { pub stat: Stat }

    pub struct GetSaslRequest { pub token: Vec<u8> }

    pub struct SetSaslRequest { pub token: Vec<u8> }

    pub struct SetSaslResponse { pub token: Vec<u8> }

    pub struct CreateRequest { pub path: String, pub data: Option<Vec<u8>>, pub acl: Vec<Acl>, pub flags: i32 }

    pub struct CreateTtlRequest {
        pub path: String,
        pub data: Option<Vec<u8>>,
        pub acl: Vec<Acl>,
        pub flags: i32,
        pub ttl: i64,
    }

    pub struct DeleteRequest { pub path: String, pub version: i32 }

    pub struct GetChildrenRequest { pub path: String, pub watch: bool }

    pub struct GetAllChildrenNumberRequest { pub path: String }

    pub struct GetChildren2Request { pub path: String, pub watch: bool }

    pub struct CheckVersionRequest { pub path: String, pub version: i32 }

    pub struct GetMaxChildrenRequest { pub path: String }

    pub struct GetMaxChildrenResponse { pub max: i32 }

    pub struct SetMaxChildrenRequest { pub path: String, pub max: i32 }

    pub struct SyncRequest { pub path: String }

    pub struct SyncResponse { pub path: String }

    pub struct GetAclRequest { pub path: String }

    pub struct SetAclRequest { pub path: String, pub acl: Vec<Acl>, pub version: i32 }

    pub struct SetAclResponse { pub stat: Stat }

    /// `mode` is an `AddWatchMode`.
    pub struct AddWatchRequest { pub path: String, pub mode: i32 }

    /// A watch notification: `type` is an `EventType`, `state` a `KeeperState`.
    pub struct WatcherEvent { pub r#type: i32, pub state: i32, pub path: String }

    pub struct ErrorResponse { pub err: i32 }

    pub struct CreateResponse { pub path: String }

    pub struct Create2Response { pub path: String, pub stat: Stat }

    pub struct ExistsRequest { pub path: String, pub watch: bool }

    pub struct ExistsResponse { pub stat: Stat }

    pub struct GetDataResponse { pub data: Option<Vec<u8>>, pub stat: Stat }

    pub struct GetChildrenResponse { pub children: Vec<String> }

    pub struct GetAllChildrenNumberResponse { pub total_number: i32 }

    pub struct GetChildren2Response { pub children: Vec<String>, pub stat: Stat }

    pub struct GetAclResponse { pub acl: Vec<Acl>, pub stat: Stat }

    /// `type` is a `WatcherType`.
    pub struct CheckWatchesRequest { pub path: String, pub r#type: i32 }

    /// `type` is a `WatcherType`.
    pub struct RemoveWatchesRequest { pub path: String, pub r#type: i32 }

    pub struct GetEphemeralsRequest { pub prefix_path: String }

    pub struct GetEphemeralsResponse { pub ephemerals: Vec<String> }

    pub struct WhoAmIResponse { pub client_info: Vec<ClientInfo> }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::Jute;
    use proptest::prelude::*;

    fn round_trip<T: Jute + PartialEq + std::fmt::Debug>(v: &T) {
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), v.encoded_len(), "encoded_len disagrees with encode");
        assert_eq!(&T::from_bytes(&bytes).unwrap(), v);
        // Every strict prefix must fail cleanly, never panic or succeed.
        for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                assert!(T::from_bytes(&bytes[..cut]).is_err());
            }
        }
    }

    macro_rules! round_trips {
        ($($name:ident: $ty:ty),* $(,)?) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(64))]
                $( #[test] fn $name(v in any::<$ty>()) { round_trip(&v); } )*
            }
        };
    }

    round_trips! {
        id: Id, acl: Acl, stat: Stat, client_info: ClientInfo, set_watches: SetWatches,
        set_watches2: SetWatches2, request_header: RequestHeader, multi_header: MultiHeader,
        auth_packet: AuthPacket, reply_header: ReplyHeader, get_data_request: GetDataRequest,
        set_data_request: SetDataRequest, reconfig_request: ReconfigRequest,
        set_data_response: SetDataResponse, get_sasl_request: GetSaslRequest,
        set_sasl_request: SetSaslRequest, set_sasl_response: SetSaslResponse,
        create_request: CreateRequest, create_ttl_request: CreateTtlRequest,
        delete_request: DeleteRequest, get_children_request: GetChildrenRequest,
        get_all_children_number_request: GetAllChildrenNumberRequest,
        get_children2_request: GetChildren2Request, check_version_request: CheckVersionRequest,
        get_max_children_request: GetMaxChildrenRequest,
        get_max_children_response: GetMaxChildrenResponse,
        set_max_children_request: SetMaxChildrenRequest, sync_request: SyncRequest,
        sync_response: SyncResponse, get_acl_request: GetAclRequest, set_acl_request: SetAclRequest,
        set_acl_response: SetAclResponse, add_watch_request: AddWatchRequest,
        watcher_event: WatcherEvent, error_response: ErrorResponse, create_response: CreateResponse,
        create2_response: Create2Response, exists_request: ExistsRequest,
        exists_response: ExistsResponse, get_data_response: GetDataResponse,
        get_children_response: GetChildrenResponse,
        get_all_children_number_response: GetAllChildrenNumberResponse,
        get_children2_response: GetChildren2Response, get_acl_response: GetAclResponse,
        check_watches_request: CheckWatchesRequest, remove_watches_request: RemoveWatchesRequest,
        get_ephemerals_request: GetEphemeralsRequest, get_ephemerals_response: GetEphemeralsResponse,
        who_am_i_response: WhoAmIResponse,
    }

    /// A golden vector: the Stat of a fresh znode as Apache ZooKeeper encodes it.
    #[test]
    fn stat_layout_is_zookeepers() {
        let stat = Stat { czxid: 2, mzxid: 3, ctime: 4, mtime: 5, version: 6, cversion: 7, aversion: 8,
            ephemeral_owner: 9, data_length: 10, num_children: 11, pzxid: 12 };
        let b = stat.to_bytes();
        assert_eq!(b.len(), 68);
        assert_eq!(&b[..8], &2i64.to_be_bytes());
        assert_eq!(&b[32..36], &6i32.to_be_bytes());
        assert_eq!(&b[60..68], &12i64.to_be_bytes());
    }

    #[test]
    fn null_buffer_is_distinct_from_empty() {
        let null = GetDataResponse { data: None, stat: Stat::default() };
        let empty = GetDataResponse { data: Some(vec![]), stat: Stat::default() };
        assert_eq!(&null.to_bytes()[..4], &(-1i32).to_be_bytes());
        assert_eq!(&empty.to_bytes()[..4], &0i32.to_be_bytes());
        assert_eq!(GetDataResponse::from_bytes(&null.to_bytes()).unwrap(), null);
    }

    #[test]
    fn huge_vector_count_is_refused_before_allocating() {
        let mut b = Vec::new();
        i32::MAX.encode(&mut b);
        assert!(matches!(GetChildrenResponse::from_bytes(&b), Err(crate::DecodeError::UnexpectedEof { .. })));
    }
}
