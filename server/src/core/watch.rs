//! Watches: who wants to hear about which path. Local to the server a
//! session is connected to (not replicated): clients re-register them with
//! setWatches after reconnecting, as in ZooKeeper.
//!
//! Triggering returns events as values keyed by session; `net` delivers them.

use std::collections::{BTreeMap, BTreeSet};

use protocol::{EventType, WatcherType};

use super::path;

/// The kinds of registration. `Data` also holds exists-watches, as
/// ZooKeeper's `dataWatches` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Data,
    Child,
    Persistent,
    PersistentRecursive,
}

const KINDS: [Kind; 4] = [Kind::Data, Kind::Child, Kind::Persistent, Kind::PersistentRecursive];

/// An event for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub session_id: i64,
    pub event_type: EventType,
    pub path: String,
}

#[derive(Debug, Default, Clone)]
pub struct Watches {
    by_path: BTreeMap<(Kind, String), BTreeSet<i64>>,
    by_session: BTreeMap<i64, BTreeSet<(Kind, String)>>,
    /// Number of (kind, path) keys with a recursive watcher: when zero,
    /// triggering skips the ancestor walk.
    recursive_paths: usize,
}

impl Watches {
    pub fn add(&mut self, session_id: i64, kind: Kind, path: &str) {
        let set = self.by_path.entry((kind, path.to_owned())).or_default();
        if set.is_empty() && kind == Kind::PersistentRecursive {
            self.recursive_paths += 1;
        }
        set.insert(session_id);
        self.by_session.entry(session_id).or_default().insert((kind, path.to_owned()));
    }

    /// How many watches the session holds.
    pub fn session_len(&self, session_id: i64) -> usize {
        self.by_session.get(&session_id).map_or(0, BTreeSet::len)
    }

    /// The most watches any one session holds (mntr).
    pub fn session_len_max(&self) -> usize {
        self.by_session.values().map(BTreeSet::len).max().unwrap_or(0)
    }

    /// Whether the session holds this very watch.
    pub fn has(&self, session_id: i64, kind: Kind, path: &str) -> bool {
        self.by_path.get(&(kind, path.to_owned())).is_some_and(|s| s.contains(&session_id))
    }

    fn remove_one(&mut self, session_id: i64, kind: Kind, path: &str) -> bool {
        let key = (kind, path.to_owned());
        let Some(set) = self.by_path.get_mut(&key) else { return false };
        if !set.remove(&session_id) {
            return false;
        }
        if set.is_empty() {
            self.by_path.remove(&key);
            if kind == Kind::PersistentRecursive {
                self.recursive_paths -= 1;
            }
        }
        if let Some(s) = self.by_session.get_mut(&session_id) {
            s.remove(&key);
            if s.is_empty() {
                self.by_session.remove(&session_id);
            }
        }
        true
    }

    fn kinds_of(t: WatcherType) -> &'static [Kind] {
        match t {
            WatcherType::Children => &[Kind::Child],
            WatcherType::Data => &[Kind::Data],
            WatcherType::Persistent => &[Kind::Persistent],
            WatcherType::PersistentRecursive => &[Kind::PersistentRecursive],
            WatcherType::Any => &KINDS,
        }
    }

    /// Whether the session has a watch of type `t` on `path` (checkWatches).
    pub fn contains(&self, session_id: i64, t: WatcherType, path: &str) -> bool {
        Self::kinds_of(t)
            .iter()
            .any(|k| self.by_path.get(&(*k, path.to_owned())).is_some_and(|s| s.contains(&session_id)))
    }

    /// Removes the session's watches of type `t` on `path`; false if none.
    pub fn remove(&mut self, session_id: i64, t: WatcherType, path: &str) -> bool {
        let mut any = false;
        for k in Self::kinds_of(t) {
            any |= self.remove_one(session_id, *k, path);
        }
        any
    }

    /// Drops every watch of a session (its connection closed).
    pub fn remove_session(&mut self, session_id: i64) {
        let Some(keys) = self.by_session.remove(&session_id) else { return };
        for (kind, path) in keys {
            let key = (kind, path);
            if let Some(set) = self.by_path.get_mut(&key) {
                set.remove(&session_id);
                if set.is_empty() {
                    self.by_path.remove(&key);
                    if kind == Kind::PersistentRecursive {
                        self.recursive_paths -= 1;
                    }
                }
            }
        }
    }

    /// Takes one-shot watchers (removing them) or reads persistent ones.
    fn collect(&mut self, kind: Kind, path: &str, into: &mut BTreeSet<i64>) {
        match kind {
            Kind::Data | Kind::Child => {
                if let Some(set) = self.by_path.remove(&(kind, path.to_owned())) {
                    for s in &set {
                        if let Some(keys) = self.by_session.get_mut(s) {
                            keys.remove(&(kind, path.to_owned()));
                            if keys.is_empty() {
                                self.by_session.remove(s);
                            }
                        }
                    }
                    into.extend(set);
                }
            }
            Kind::Persistent | Kind::PersistentRecursive => {
                if let Some(set) = self.by_path.get(&(kind, path.to_owned())) {
                    into.extend(set.iter().copied());
                }
            }
        }
    }

    /// Fires what a change of `event_type` at `path` triggers, at most one
    /// event per session, and returns the events in session order.
    pub fn trigger(&mut self, path: &str, event_type: EventType) -> Vec<WatchEvent> {
        let mut sessions = BTreeSet::new();
        match event_type {
            EventType::NodeCreated | EventType::NodeDataChanged | EventType::NodeDeleted => {
                self.collect(Kind::Data, path, &mut sessions);
                if event_type == EventType::NodeDeleted {
                    self.collect(Kind::Child, path, &mut sessions);
                }
                self.collect(Kind::Persistent, path, &mut sessions);
                if self.recursive_paths > 0 {
                    for p in path::ancestors_and_self(path) {
                        self.collect(Kind::PersistentRecursive, p, &mut sessions);
                    }
                }
            }
            EventType::NodeChildrenChanged => {
                self.collect(Kind::Child, path, &mut sessions);
                self.collect(Kind::Persistent, path, &mut sessions);
            }
            _ => {}
        }
        sessions.into_iter().map(|session_id| WatchEvent { session_id, event_type, path: path.to_owned() }).collect()
    }

    // The four-letter-word views (wchs, wchc, wchp) show ZooKeeper 3.8's
    // data-watch table only: getData/exists and persistent watches, not
    // child watches.

    fn data_table(&self) -> impl Iterator<Item = (&(Kind, String), &BTreeSet<i64>)> {
        self.by_path.iter().filter(|((k, _), _)| *k != Kind::Child)
    }

    /// Registrations in the data-watch table (wchs).
    pub fn count(&self) -> usize {
        self.data_table().map(|(_, s)| s.len()).sum()
    }

    pub fn path_count(&self) -> usize {
        self.data_table().map(|((_, p), _)| p).collect::<BTreeSet<_>>().len()
    }

    pub fn session_count(&self) -> usize {
        self.data_table().flat_map(|(_, s)| s.iter()).collect::<BTreeSet<_>>().len()
    }

    /// Session → watched paths (wchc).
    pub fn by_session(&self) -> BTreeMap<i64, BTreeSet<&str>> {
        let mut m: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
        for ((_, p), sessions) in self.data_table() {
            for s in sessions {
                m.entry(*s).or_default().insert(p.as_str());
            }
        }
        m
    }

    /// Path → watching sessions (wchp).
    pub fn by_path(&self) -> BTreeMap<&str, BTreeSet<i64>> {
        let mut m: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for ((_, p), s) in self.data_table() {
            m.entry(p.as_str()).or_default().extend(s.iter().copied());
        }
        m
    }

    /// Every registration, child watches included (for tests and mntr).
    pub fn total(&self) -> usize {
        self.by_path.values().map(BTreeSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_watches_fire_once_and_deduplicate() {
        let mut w = Watches::default();
        w.add(1, Kind::Data, "/a");
        w.add(1, Kind::Child, "/a");
        w.add(2, Kind::Child, "/");
        let ev = w.trigger("/a", EventType::NodeDeleted);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].session_id, 1);
        assert!(w.trigger("/a", EventType::NodeDeleted).is_empty());
        assert_eq!(w.trigger("/", EventType::NodeChildrenChanged).len(), 1);
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn persistent_and_recursive_watches_stay() {
        let mut w = Watches::default();
        w.add(1, Kind::PersistentRecursive, "/a");
        w.add(2, Kind::Persistent, "/a");
        for _ in 0..2 {
            let ev = w.trigger("/a/b/c", EventType::NodeDataChanged);
            assert_eq!(ev.iter().map(|e| e.session_id).collect::<Vec<_>>(), vec![1]);
            // Recursive watches never see NodeChildrenChanged; persistent ones do.
            let ev = w.trigger("/a", EventType::NodeChildrenChanged);
            assert_eq!(ev.iter().map(|e| e.session_id).collect::<Vec<_>>(), vec![2]);
        }
        assert!(w.remove(1, WatcherType::Any, "/a"));
        assert!(!w.remove(1, WatcherType::Any, "/a"));
        assert!(w.trigger("/a/b", EventType::NodeCreated).is_empty());
        w.remove_session(2);
        assert_eq!(w.total(), 0);
    }
}
