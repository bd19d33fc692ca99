//! The garbage collector and the namespace controller: background deletion of dependents whose
//! owners are gone, the `orphan` and `foregroundDeletion` finalizers, and emptying deleted
//! namespaces. Runs as a task polling the work that writes leave in [`Store::gc`].
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::ops::{self, DeleteOpts};
use super::store::{ObjKey, Store};

fn resource_of(store: &Store, key: &ObjKey) -> Option<Arc<super::registry::ResourceInfo>> {
    store.registry.resources().iter().find(|r| r.storage_key() == key.storage).cloned()
}

fn without_owner(obj: &Value, uid: &str) -> Value {
    let mut o = obj.clone();
    if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
        refs.retain(|r| r["uid"] != uid);
        if refs.is_empty() {
            o["metadata"].as_object_mut().map(|m| m.remove("ownerReferences"));
        }
    }
    o
}

fn remove_finalizer(store: &mut Store, key: &ObjKey, fin: &str) {
    let Some(obj) = store.get(key) else { return };
    let mut o = (*obj).clone();
    if let Some(fs) = o["metadata"]["finalizers"].as_array_mut() {
        fs.retain(|f| f != fin);
    }
    let empty = o["metadata"]["finalizers"].as_array().is_none_or(|a| a.is_empty());
    if empty && !o["metadata"]["deletionTimestamp"].is_null() {
        match resource_of(store, key) {
            Some(ri) => {
                ops::remove_object(store, &ri, key);
            }
            None => {
                store.remove(key);
            }
        }
    } else {
        store.put(key, o);
    }
}

fn delete_background(store: &mut Store, key: &ObjKey) {
    if let Some(ri) = resource_of(store, key) {
        let _ = ops::delete(store, &ri, key, &DeleteOpts::default());
    } else {
        store.remove(key);
    }
}

/// One pass over the pending work; true when it changed something.
pub fn run_once(store: &mut Store) -> bool {
    let mut changed = false;
    for uid in std::mem::take(&mut store.gc.owners_gone) {
        for dep in store.dependents_of(&uid) {
            let Some(obj) = store.get(&dep) else { continue };
            let owners: Vec<String> = obj["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect();
            if owners.iter().any(|o| store.by_uid(o).is_some()) {
                store.put(&dep, without_owner(&obj, &uid));
            } else if obj["metadata"]["deletionTimestamp"].is_null() {
                delete_background(store, &dep);
            } else {
                continue;
            }
            changed = true;
        }
    }
    for key in store.gc.finalizing.clone() {
        let Some(obj) = store.get(&key) else {
            store.gc.finalizing.remove(&key);
            continue;
        };
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        let fins: Vec<String> = obj["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        if fins.iter().any(|f| f == "orphan") {
            for dep in store.dependents_of(&uid) {
                if let Some(d) = store.get(&dep) {
                    store.put(&dep, without_owner(&d, &uid));
                }
            }
            remove_finalizer(store, &key, "orphan");
            changed = true;
        } else if fins.iter().any(|f| f == "foregroundDeletion") {
            let deps = store.dependents_of(&uid);
            if deps.is_empty() {
                remove_finalizer(store, &key, "foregroundDeletion");
                changed = true;
            } else {
                for dep in deps {
                    if store.get(&dep).is_some_and(|d| d["metadata"]["deletionTimestamp"].is_null()) {
                        delete_background(store, &dep);
                        changed = true;
                    }
                }
            }
        } else {
            store.gc.finalizing.remove(&key);
        }
    }
    for ns in store.gc.namespaces.clone() {
        let keys = store.keys_in_namespace(&ns);
        if keys.is_empty() {
            let nskey = ObjKey { storage: "namespaces".into(), namespace: String::new(), name: ns.clone() };
            if let Some(n) = store.get(&nskey)
                && n["metadata"]["finalizers"].as_array().is_none_or(|a| a.is_empty())
            {
                let mut n2 = (*n).clone();
                n2["spec"] = json!({});
                store.remove(&nskey);
            }
            store.gc.namespaces.remove(&ns);
            changed = true;
        } else {
            for k in keys {
                if store.get(&k).is_some_and(|o| o["metadata"]["deletionTimestamp"].is_null()) {
                    delete_background(store, &k);
                    changed = true;
                }
            }
        }
    }
    changed
}

/// Runs the collector until the server shuts down.
pub async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let mut store = shared.store.lock().unwrap();
        let mut rounds = 0;
        while !store.gc.is_empty() && run_once(&mut store) && rounds < 100 {
            rounds += 1;
        }
    }
}
