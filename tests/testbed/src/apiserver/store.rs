//! The object store: objects by resource and namespace, the global resourceVersion, the bounded
//! event history watches resume from, and the uid / owner indexes garbage collection uses.
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

use super::registry::Registry;

pub type Obj = Arc<Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object, as watches see it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub storage: String,
    pub namespace: String,
    pub kind: EventType,
    pub object: Obj,
    /// The object before the change (for MODIFIED), so selector watches can tell an object leaving
    /// the selector from one changing inside it.
    pub old: Option<Obj>,
    lines: [OnceLock<Bytes>; 3],
}

impl Event {
    /// The watch line `{"type":..,"object":..}\n` for this event reported as `t`, serialized once.
    pub fn line(&self, t: EventType) -> Bytes {
        let i = t as usize;
        self.lines[i].get_or_init(|| watch_line(t.as_str(), &self.object)).clone()
    }
}

/// `{"type":t,"object":obj}` and a newline, written straight from `obj` (no copy of it in a new
/// `Value`, as `json!` would make).
pub fn watch_line(t: &str, obj: &Value) -> Bytes {
    let mut v = Vec::with_capacity(1024);
    v.extend_from_slice(b"{\"type\":");
    serde_json::to_writer(&mut v, t).expect("a string serializes");
    v.extend_from_slice(b",\"object\":");
    serde_json::to_writer(&mut v, obj).expect("a JSON value serializes");
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

/// The object with its top-level fields in the order kube-apiserver writes them: `kind`,
/// `apiVersion`, `metadata`, `spec`, `status`, then the others (clients compare serialized text).
pub fn kube_field_order(obj: Value) -> Value {
    let Value::Object(mut m) = obj else { return obj };
    const FIRST: [&str; 5] = ["kind", "apiVersion", "metadata", "spec", "status"];
    let mut out = serde_json::Map::with_capacity(m.len());
    for k in FIRST {
        if let Some(v) = m.shift_remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(m);
    Value::Object(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub storage: String,
    pub namespace: String,
    pub name: String,
}

type Collection = BTreeMap<String, BTreeMap<String, Obj>>;

/// Work for the garbage collector, accumulated by writes.
#[derive(Debug, Default)]
pub struct GcWork {
    /// uids of deleted objects that had dependents.
    pub owners_gone: Vec<String>,
    /// Objects being deleted that carry the `orphan` or `foregroundDeletion` finalizer.
    pub finalizing: HashSet<ObjKey>,
    /// Namespaces being deleted.
    pub namespaces: HashSet<String>,
}

impl GcWork {
    pub fn is_empty(&self) -> bool {
        self.owners_gone.is_empty() && self.finalizing.is_empty() && self.namespaces.is_empty()
    }
}

pub struct Store {
    rv: u64,
    pub registry: Registry,
    collections: HashMap<String, Collection>,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Watches from a resourceVersion older than this get 410 Gone.
    compacted_rv: u64,
    uids: HashMap<String, ObjKey>,
    dependents: HashMap<String, HashSet<ObjKey>>,
    tx: broadcast::Sender<Arc<Event>>,
    pub gc: GcWork,
}

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj["metadata"]["ownerReferences"].as_array().into_iter().flatten().filter_map(|r| r["uid"].as_str())
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(65_536);
        Store {
            rv: 1,
            registry: Registry::new(),
            collections: HashMap::new(),
            history: VecDeque::new(),
            history_limit,
            compacted_rv: 0,
            uids: HashMap::new(),
            dependents: HashMap::new(),
            tx,
            gc: GcWork::default(),
        }
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    pub fn set_history_limit(&mut self, n: usize) {
        self.history_limit = n;
        self.trim_history();
    }

    /// Forgets the whole event history: every watch from an earlier resourceVersion gets 410.
    pub fn compact(&mut self) {
        self.compacted_rv = self.rv;
        self.history.clear();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted_rv = e.rv;
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Events after `rv` still in the history, or None when `rv` is older than the window.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.compacted_rv {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Some(self.history.range(start..).cloned().collect())
    }

    pub fn get(&self, key: &ObjKey) -> Option<Obj> {
        self.collections.get(&key.storage)?.get(&key.namespace)?.get(&key.name).cloned()
    }

    pub fn by_uid(&self, uid: &str) -> Option<&ObjKey> {
        self.uids.get(uid)
    }

    pub fn dependents_of(&self, uid: &str) -> Vec<ObjKey> {
        self.dependents.get(uid).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.get(&ObjKey { storage: "namespaces".into(), namespace: String::new(), name: ns.into() }).is_some()
    }

    /// Objects of a resource, in `(namespace, name)` order, optionally in one namespace, starting
    /// after `after` (a continue position).
    pub fn list(&self, storage: &str, namespace: Option<&str>, after: Option<&(String, String)>) -> Vec<Obj> {
        self.list_iter(storage, namespace, after).map(|(_, _, o)| o.clone()).collect()
    }

    pub fn list_iter<'a>(
        &'a self,
        storage: &str,
        namespace: Option<&'a str>,
        after: Option<&'a (String, String)>,
    ) -> Box<dyn Iterator<Item = (&'a String, &'a String, &'a Obj)> + 'a> {
        use std::ops::Bound::*;
        let Some(coll) = self.collections.get(storage) else { return Box::new(std::iter::empty()) };
        let namespaces: Box<dyn Iterator<Item = (&String, &BTreeMap<String, Obj>)>> = match (namespace, after) {
            (Some(ns), _) => Box::new(coll.get_key_value(ns).into_iter()),
            (None, Some((ans, _))) => Box::new(coll.range::<String, _>((Included(ans), Unbounded))),
            (None, None) => Box::new(coll.iter()),
        };
        Box::new(namespaces.flat_map(move |(ns, objs)| {
            let range: Box<dyn Iterator<Item = (&String, &Obj)>> = match after {
                Some((ans, aname)) if ans == ns => Box::new(objs.range::<String, _>((Excluded(aname), Unbounded))),
                _ => Box::new(objs.iter()),
            };
            range.map(move |(name, o)| (ns, name, o))
        }))
    }

    /// Every object of every resource in a namespace.
    pub fn keys_in_namespace(&self, ns: &str) -> Vec<ObjKey> {
        let mut out = Vec::new();
        for (storage, coll) in &self.collections {
            if let Some(objs) = coll.get(ns) {
                for name in objs.keys() {
                    out.push(ObjKey { storage: storage.clone(), namespace: ns.to_string(), name: name.clone() });
                }
            }
        }
        out
    }

    pub fn keys_of(&self, storage: &str) -> Vec<ObjKey> {
        self.list_iter(storage, None, None)
            .map(|(ns, name, _)| ObjKey { storage: storage.to_string(), namespace: ns.clone(), name: name.clone() })
            .collect()
    }

    fn emit(&mut self, storage: &str, namespace: &str, kind: EventType, object: Obj, old: Option<Obj>) {
        let ev = Arc::new(Event {
            rv: self.rv,
            storage: storage.to_string(),
            namespace: namespace.to_string(),
            kind,
            object,
            old,
            lines: Default::default(),
        });
        self.history.push_back(ev.clone());
        self.trim_history();
        let _ = self.tx.send(ev);
    }

    /// Stores an object (created or replaced), giving it the next resourceVersion.
    pub fn put(&mut self, key: &ObjKey, obj: Value) -> Obj {
        let mut obj = kube_field_order(obj);
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let obj = Arc::new(obj);
        let coll = self.collections.entry(key.storage.clone()).or_default();
        let old = coll.entry(key.namespace.clone()).or_default().insert(key.name.clone(), obj.clone());
        if let Some(o) = &old {
            for uid in owner_uids(o) {
                if let Some(s) = self.dependents.get_mut(uid) {
                    s.remove(key);
                }
            }
        }
        for uid in owner_uids(&obj) {
            self.dependents.entry(uid.to_string()).or_default().insert(key.clone());
        }
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.uids.insert(uid.to_string(), key.clone());
        }
        let kind = if old.is_some() { EventType::Modified } else { EventType::Added };
        self.emit(&key.storage, &key.namespace, kind, obj.clone(), old);
        obj
    }

    /// Removes an object; the DELETED event carries it with a new resourceVersion.
    pub fn remove(&mut self, key: &ObjKey) -> Option<Obj> {
        let coll = self.collections.get_mut(&key.storage)?;
        let objs = coll.get_mut(&key.namespace)?;
        let old = objs.remove(&key.name)?;
        if objs.is_empty() {
            coll.remove(&key.namespace);
        }
        for uid in owner_uids(&old) {
            if let Some(s) = self.dependents.get_mut(uid) {
                s.remove(key);
                if s.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        if let Some(uid) = old["metadata"]["uid"].as_str() {
            self.uids.remove(uid);
            if self.dependents.contains_key(uid) {
                self.gc.owners_gone.push(uid.to_string());
            }
        }
        self.rv += 1;
        let mut gone = (*old).clone();
        gone["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let gone = Arc::new(gone);
        self.emit(&key.storage, &key.namespace, EventType::Deleted, gone.clone(), Some(old));
        Some(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(ns: &str, name: &str) -> ObjKey {
        ObjKey { storage: "configmaps".into(), namespace: ns.into(), name: name.into() }
    }

    #[test]
    fn list_order_continue_and_history() {
        let mut s = Store::new(3);
        for (ns, n) in [("b", "1"), ("a", "2"), ("a", "1")] {
            s.put(&key(ns, n), json!({"metadata": {"name": n, "namespace": ns}}));
        }
        let names: Vec<_> = s.list_iter("configmaps", None, None).map(|(ns, n, _)| format!("{ns}/{n}")).collect();
        assert_eq!(names, ["a/1", "a/2", "b/1"]);
        let after = ("a".to_string(), "1".to_string());
        let rest: Vec<_> =
            s.list_iter("configmaps", None, Some(&after)).map(|(ns, n, _)| format!("{ns}/{n}")).collect();
        assert_eq!(rest, ["a/2", "b/1"]);
        assert_eq!(s.list("configmaps", Some("a"), None).len(), 2);
        assert_eq!(s.rv(), 4);
        assert_eq!(s.events_since(2).unwrap().len(), 2);
        s.put(&key("c", "1"), json!({"metadata": {}}));
        assert!(s.events_since(1).is_none(), "rv 1 fell out of a 3-event window");
        s.compact();
        assert!(s.events_since(4).is_none());
        assert!(s.events_since(5).unwrap().is_empty());
    }

    #[test]
    fn a_watch_line_is_one_json_object_and_a_newline() {
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "a\"b", "labels": {"x": "é"}}, "data": {"n": 1.5}});
        for t in ["ADDED", "BOOKMARK", "ERROR"] {
            let line = watch_line(t, &obj);
            let mut expected = serde_json::to_vec(&json!({"type": t, "object": obj})).unwrap();
            expected.push(b'\n');
            assert_eq!(line.as_ref(), expected.as_slice(), "{t}");
        }
    }
}
