//! An object's io: what it keeps across instance resets. Its identity, its
//! storage (the running event's writes, the cache, the SQL page file and
//! the commits in flight, all in [`ObjectStorage`]), its SQLite connection,
//! and the chain of calls the running event belongs to.

use std::sync::Arc;

use super::Identity;
use crate::runtime::engine::GuestLog;
use crate::runtime::guest::GuestIo;
use crate::runtime::shared::HostShared;
use crate::runtime::sockets::{Frame, Owner, SocketId};
use crate::runtime::sql::Sql;
use crate::runtime::stub::{CallChain, object_label};
use crate::runtime::targets::Lender;
use dohost_store::{AlarmRecord, Gate, ObjectKey, ObjectRecord, ObjectStorage};

/// The object's storage and context, kept across instance resets.
pub(crate) struct ObjectIo {
    pub(crate) identity: Identity,
    pub(crate) shared: Arc<HostShared>,
    /// The object's KV storage, SQL pages and commits.
    pub(crate) storage: ObjectStorage,
    /// The object's SQLite connection (none until first used).
    pub(crate) sql: Sql,
    /// The alarm whose handler is running, as stored when it began.
    pub(crate) running_alarm: Option<AlarmRecord>,
    /// The chain of objects waiting on the running turn's event (empty for
    /// a request from outside or an alarm).
    pub(crate) chain: CallChain,
    /// What the running turn sent on WebSockets, queued when it ends.
    pub(crate) sent: Vec<(SocketId, Frame)>,
    /// The number of the instance that holds the io (see
    /// [`crate::runtime::targets`]).
    pub(crate) instance: u64,
    /// Where the guest's output goes.
    pub(crate) log: Arc<GuestLog>,
    /// The bookmark to restore the storage to before the next instance
    /// starts (`onNextSessionRestoreBookmark`).
    pub(crate) restore: Option<dohost_store::Bookmark>,
}

impl ObjectIo {
    pub(crate) fn new(identity: Identity, shared: Arc<HostShared>) -> ObjectIo {
        let settings = &shared.settings;
        let storage = ObjectStorage::new(
            identity.key,
            shared.store.clone(),
            shared.cache_budget.clone(),
            settings.max_sql_database_bytes,
            settings.write_set_bytes,
        );
        ObjectIo {
            sql: Sql::new(
                storage.pages(),
                settings.max_sql_database_bytes,
                settings.cpu_time_per_event,
                settings.memory_per_object,
            ),
            storage,
            shared,
            running_alarm: None,
            chain: CallChain::default(),
            sent: Vec::new(),
            instance: 0,
            log: GuestLog::object(identity.binding.clone(), identity.id_hex.clone()),
            restore: None,
            identity,
        }
    }

    /// The io of an instance made before it knows its object
    /// ([`super::ready`]), or asked only which classes its component
    /// exports: no object's identity, and storage nothing reads.
    pub(crate) fn stand_in(binding: &str, shared: Arc<HostShared>) -> ObjectIo {
        let identity = Identity {
            key: ObjectKey::new(u32::MAX, &[0; 32]),
            binding: binding.into(),
            id_hex: String::new(),
            name: None,
            class: "".into(),
        };
        ObjectIo::new(identity, shared)
    }

    /// Hands what the event has committed so far, KV and SQL, to the
    /// committer.
    pub(crate) fn flush(&mut self) {
        // A cursor's statement ends here, so an autocommit write it was
        // part of is in the page file.
        self.sql.close_cursors();
        let identity = &self.identity;
        self.storage.flush(|| ObjectRecord {
            class: identity.class.to_string(),
            name: identity.name.clone(),
        });
    }

    /// The gate an event's response, and a call the object makes, must
    /// pass.
    pub(crate) fn response_gate(&self) -> Option<Gate> {
        self.storage.response_gate()
    }

    /// Who the object is, as its WebSockets name it.
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            key: self.identity.key,
            binding: self.identity.binding.clone(),
            name: self.identity.name.clone(),
        }
    }

    /// Drops the running event's writes, KV and SQL (it trapped). The
    /// connection goes first: it may hold the event's pages in its cache.
    pub(crate) fn discard_event(&mut self) {
        self.sent.clear();
        self.sql.close();
        self.storage.discard_event();
    }

    /// Goes back to what redb holds, once nothing sent is still in flight.
    pub(crate) async fn forget(&mut self) {
        self.sql.close();
        self.storage.forget().await;
    }
}

impl GuestIo for ObjectIo {
    fn shared(&self) -> &HostShared {
        &self.shared
    }

    fn outgoing(&self, waits: bool) -> (CallChain, Option<Gate>) {
        let me = &self.identity;
        let label = object_label(&me.binding, &me.key.id(), me.name.as_deref());
        (self.chain.then(me.key, label, waits), self.response_gate())
    }

    fn lender(&self) -> Result<(Lender, u64), String> {
        let namespace = self
            .shared
            .namespace(&self.identity.binding)
            .map_err(|e| e.to_string())?;
        let id = namespace
            .id_from_string(&self.identity.id_hex)
            .map_err(|e| e.to_string())?;
        Ok((Lender::Object(id.get()), self.instance))
    }
}
