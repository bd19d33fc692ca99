//! Watch streams: newline-delimited JSON events from a resourceVersion, with selectors,
//! bookmarks, timeouts, 410 Gone for a resourceVersion older than the history window, objects as
//! Tables when asked.
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::registry::{self, ResourceInfo};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Event, EventType, Obj, watch_line};
use super::table;
use super::{Shared, negotiate};

/// What a watch request asks for.
#[derive(Debug, Clone)]
pub struct WatchParams {
    pub storage: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// None: resourceVersion absent or "0" (start with the current state as ADDED events).
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Duration,
    /// apiVersion and kind the client asked for (objects and bookmarks are reported in it).
    pub api_version: String,
    pub kind: String,
    /// `Some(meta.k8s.io version)` when the client asked for `PartialObjectMetadata` objects.
    pub metadata_only: Option<String>,
    /// Objects reported as Tables (`Accept: ...;as=Table`, as `kubectl get -w` asks).
    pub table: Option<TableWatch>,
}

/// A watch whose objects are reported as one-row Tables; like kube-apiserver, only the first one
/// carries the column definitions.
#[derive(Debug, Clone)]
pub struct TableWatch {
    pub resource: Arc<ResourceInfo>,
    /// The `includeObject` parameter.
    pub include: String,
    pub headers_sent: Cell<bool>,
}

impl WatchParams {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    fn line_for(&self, t: EventType, obj: &Obj, ev: Option<&Event>) -> Bytes {
        if let Some(v) = &self.metadata_only {
            return watch_line(t.as_str(), &negotiate::partial(v, obj));
        }
        if let Some(tw) = &self.table {
            let o = registry::present(obj, &self.api_version);
            let rv = o["metadata"]["resourceVersion"].as_str().unwrap_or_default();
            let mut table = table::table(&tw.resource, &[&o], rv, None, &tw.include);
            if tw.headers_sent.replace(true) {
                table["columnDefinitions"] = Value::Null;
            }
            return watch_line(t.as_str(), &table);
        }
        if obj["apiVersion"].as_str() == Some(self.api_version.as_str()) {
            match ev {
                Some(e) if Arc::ptr_eq(obj, &e.object) => e.line(t),
                _ => watch_line(t.as_str(), obj),
            }
        } else {
            watch_line(t.as_str(), &registry::present(obj, &self.api_version))
        }
    }

    /// The event as this watcher sees it: selector changes turn MODIFIED into ADDED or DELETED.
    fn translate(&self, ev: &Event) -> Option<Bytes> {
        if ev.storage != self.storage {
            return None;
        }
        if let Some(ns) = &self.namespace
            && ev.namespace != *ns
        {
            return None;
        }
        let now = self.matches(&ev.object);
        let t = match ev.kind {
            EventType::Added => now.then_some(EventType::Added)?,
            EventType::Deleted => now.then_some(EventType::Deleted)?,
            EventType::Modified => {
                let before = ev.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return None,
                }
            }
        };
        Some(self.line_for(t, &ev.object, Some(ev)))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match &self.metadata_only {
            Some(v) => ("PartialObjectMetadata".to_string(), format!("meta.k8s.io/{v}")),
            None => (self.kind.clone(), self.api_version.clone()),
        };
        watch_line("BOOKMARK", &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}))
    }
}

/// Starts a watch and answers with its stream.
/// At most this much of the events waiting is sent as one chunk.
const CHUNK_MAX: usize = 64 * 1024;

/// The watch's lines for event `first` and the events already waiting after it, as one chunk
/// (`None`: none is for this watch); and whether the watch ends (it lagged behind the broadcast,
/// or the store closed). kube-apiserver flushes a watch only when no event is waiting (its
/// `WatchServer` flushes when `len(ch) == 0`), so a burst of events reaches the client in one
/// write.
fn drain(
    first: Result<Arc<Event>, RecvError>,
    rx: &mut tokio::sync::broadcast::Receiver<Arc<Event>>,
    p: &WatchParams,
    last_rv: &mut u64,
) -> (Option<Bytes>, bool) {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut lines: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let mut next = first.map_err(|_| ());
    let ended = loop {
        match next {
            Ok(ev) => {
                if ev.rv > *last_rv {
                    *last_rv = ev.rv;
                    if let Some(line) = p.translate(&ev) {
                        size += line.len();
                        lines.push(line);
                    }
                }
            }
            Err(()) => break true,
        }
        if size >= CHUNK_MAX {
            break false;
        }
        next = match rx.try_recv() {
            Ok(ev) => Ok(ev),
            Err(TryRecvError::Empty) => break false,
            Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => Err(()),
        };
    };
    let chunk = match lines.len() {
        0 => None,
        1 => lines.pop(),
        _ => Some(Bytes::from(lines.concat())),
    };
    (chunk, ended)
}

pub fn serve(shared: Arc<Shared>, p: WatchParams) -> Response {
    let mut initial: Vec<Bytes> = Vec::new();
    let mut gone = false;
    let (mut rx, mut last_rv) = {
        let store = shared.store.lock().unwrap();
        match p.resource_version {
            Some(rv) if !p.send_initial_events => match store.events_since(rv) {
                Some(evs) => initial.extend(evs.iter().filter_map(|e| p.translate(e))),
                None => {
                    let err = ApiError::gone(format!("too old resource version: {rv} ({})", store.compacted_rv()));
                    initial.push(watch_line("ERROR", &err.status()));
                    gone = true;
                }
            },
            _ => {
                for (_, _, o) in store.list_iter(&p.storage, p.namespace.as_deref(), None) {
                    if p.matches(o) {
                        initial.push(p.line_for(EventType::Added, o, None));
                    }
                }
            }
        }
        (store.subscribe(), store.rv())
    };
    if p.send_initial_events && !gone {
        initial.push(p.bookmark(last_rv, true));
    }
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let mut drops = shared.faults.watch_drops();
    let mut shutdown = shared.shutdown.clone();
    let bookmark_every = shared.options.bookmark_interval;
    tokio::spawn(async move {
        for line in initial {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if gone {
            return;
        }
        let deadline = tokio::time::sleep(p.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = drops.changed() => return,
                _ = shutdown.changed() => return,
                _ = ticker.tick(), if p.bookmarks => {
                    if tx.send(Ok(p.bookmark(last_rv, false))).await.is_err() { return; }
                }
                r = rx.recv() => {
                    let (chunk, ended) = drain(r, &mut rx, &p, &mut last_rv);
                    if let Some(chunk) = chunk
                        && tx.send(Ok(chunk)).await.is_err() { return; }
                    // A watcher too slow for the broadcast buffer is closed; the client resumes
                    // from its last resourceVersion, like after any dropped watch.
                    if ended { return; }
                }
            }
        }
        if p.bookmarks {
            let _ = tx.send(Ok(p.bookmark(last_rv, false))).await;
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(body_rx);
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("response")
}
