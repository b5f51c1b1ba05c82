//! Sessions: the replicated table (id → timeout) and the leader-local
//! expiry deadlines. Deadlines are in milliseconds of whatever clock the
//! shell passes in; the core never reads a clock.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The timeout the session was created with (replicated).
    pub timeout_ms: i32,
    /// The timeout negotiated by its latest connection; deadlines use it.
    /// Local, like the deadline: a reconnect renegotiates without a txn.
    pub local_timeout_ms: i32,
    /// When the session expires unless touched; not replicated.
    pub deadline_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Sessions {
    sessions: BTreeMap<i64, Session>,
    /// Secret mixed into session passwords so they cannot be guessed from ids.
    secret: u64,
    next_session_id: i64,
}

impl Sessions {
    /// `first_session_id` seeds the id generator (ZooKeeper derives it from
    /// the start time and server id, see `initial_session_id`).
    pub fn new(secret: u64, first_session_id: i64) -> Sessions {
        Sessions { sessions: BTreeMap::new(), secret, next_session_id: first_session_id }
    }

    /// A session id base unique across restarts: `(time << 24) >>> 8 | server_id << 56`,
    /// as `SessionTrackerImpl.initializeNextSessionId`.
    pub fn initial_session_id(now_ms: i64, server_id: u8) -> i64 {
        (((now_ms << 24) as u64 >> 8) as i64) | ((server_id as i64) << 56)
    }

    /// The secret keying passwords; 0 until the first leader's txn sets it.
    pub fn secret(&self) -> u64 {
        self.secret
    }

    /// Sets the secret if it is unset (a txn: the same on every replica).
    pub fn init_secret(&mut self, secret: u64) -> bool {
        if self.secret != 0 || secret == 0 {
            return false;
        }
        self.secret = secret;
        true
    }

    /// The id the next new session of this member gets.
    pub fn next_id(&self) -> i64 {
        self.next_session_id
    }

    pub fn allocate_id(&mut self) -> i64 {
        let id = self.next_session_id;
        self.next_session_id += 1;
        id
    }

    /// The password that proves ownership of `session_id`.
    pub fn password(&self, session_id: i64) -> Vec<u8> {
        let mut h = Sha1::new();
        h.update(self.secret.to_be_bytes());
        h.update(session_id.to_be_bytes());
        h.finalize()[..16].to_vec()
    }

    pub fn get(&self, session_id: i64) -> Option<&Session> {
        self.sessions.get(&session_id)
    }

    pub fn contains(&self, session_id: i64) -> bool {
        self.sessions.contains_key(&session_id)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i64, &Session)> {
        self.sessions.iter()
    }

    /// Adds a session. Its deadline starts unset (never expires) until the
    /// leader touches it: apply runs on every replica, deadlines only matter
    /// where sessions are tracked.
    pub fn open(&mut self, session_id: i64, timeout_ms: i32) {
        // Ids are unique even after a restart: keep the generator ahead of replayed ids.
        if session_id >= self.next_session_id && (session_id >> 56) == (self.next_session_id >> 56) {
            self.next_session_id = session_id + 1;
        }
        self.sessions.insert(session_id, Session { timeout_ms, local_timeout_ms: timeout_ms, deadline_ms: i64::MAX });
    }

    pub fn close(&mut self, session_id: i64) -> bool {
        self.sessions.remove(&session_id).is_some()
    }

    /// Extends the deadline of a live session; false if it is gone.
    pub fn touch(&mut self, session_id: i64, now_ms: i64) -> bool {
        match self.sessions.get_mut(&session_id) {
            Some(s) => {
                s.deadline_ms = now_ms + s.local_timeout_ms as i64;
                true
            }
            None => false,
        }
    }

    /// Records the timeout a reconnecting client negotiated (local only).
    pub fn renegotiate(&mut self, session_id: i64, timeout_ms: i32) {
        if let Some(s) = self.sessions.get_mut(&session_id) {
            s.local_timeout_ms = timeout_ms;
        }
    }

    /// Sessions whose deadline has passed, in id order.
    pub fn expired(&self, now_ms: i64) -> Vec<i64> {
        self.sessions.iter().filter(|(_, s)| s.deadline_ms <= now_ms).map(|(id, _)| *id).collect()
    }

    /// Gives every session a full timeout from `now_ms` (after a restart, as
    /// ZooKeeper does on loading a snapshot).
    pub fn reset_deadlines(&mut self, now_ms: i64) {
        for s in self.sessions.values_mut() {
            s.deadline_ms = now_ms + s.local_timeout_ms as i64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_touches() {
        let mut s = Sessions::new(7, 100);
        let id = s.allocate_id();
        s.open(id, 1000);
        assert!(s.expired(i64::MAX - 1).is_empty(), "untracked until touched");
        assert!(s.touch(id, 0));
        assert!(s.expired(999).is_empty());
        assert!(s.touch(id, 500));
        assert!(s.expired(1499).is_empty());
        assert_eq!(s.expired(1500), vec![id]);
        assert_ne!(s.password(id), s.password(id + 1));
        assert_eq!(s.password(id).len(), 16);
    }
}
