//! Server-side apply (`application/apply-patch+yaml`) with `managedFields` (FieldsV1).
//!
//! Follows kube-apiserver's field manager (structured-merge-diff):
//! - an applier's set is the leaves of its applied configuration, plus the items of associative
//!   lists (`k:{...}`) and sets (`v:...`); `apiVersion`, `kind`, `metadata.name`, ... are never
//!   owned;
//! - the configuration is merged into the live object (maps recursively unless atomic, lists by
//!   their list type: atomic lists replaced, sets united, map lists merged item by item by key);
//! - what the applier applied last time and omits now is removed, unless another manager owns it;
//! - a change to a field another manager owns is a conflict (none when the value is the same:
//!   the field becomes shared); `force` takes the field over;
//! - a non-apply write (`record_update`) gives the changed fields to the writer's `Update` entry
//!   and takes them from everyone else.
//!
//! Known simplifications: items of associative lists keep the live order (new ones are appended);
//! one entry per (manager, operation, subresource) regardless of apiVersion; no conversion between
//! versions; list types of built-in kinds come from [`super::patchmeta`]'s table.
use super::patchmeta;
use super::schema::{json_equal, property_schema};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::rc::Rc;
use std::sync::LazyLock;

/// How a list is merged, from `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` (CRDs) or
/// from the built-in kinds' patch metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Type information that drives merging: for CRDs built from the version's schema, for built-in
/// kinds from a table of their associative lists.
#[derive(Debug, Clone, Default)]
pub struct TypeInfo {
    /// The CRD schema, when the kind is a custom resource.
    pub schema: Option<std::sync::Arc<Value>>,
    pub api_version: String,
    pub kind: String,
}

/// A conflict: another manager owns a field the applier sets to a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// e.g. `.spec.replicas`
    pub field: String,
}

/// Server-side apply of `applied` by `manager` onto `live` (None when creating). `subresource` is
/// `Some("status")` for the status endpoint. Returns the merged object with updated
/// `metadata.managedFields`, or the conflicts (409) when `force` is false.
///
/// A no-op apply (nothing changes, ownership included) returns `live` unchanged, so the caller
/// can skip the write as kube-apiserver does.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    types: &TypeInfo,
) -> Result<Value, Vec<Conflict>> {
    let t = Types { info: types };
    let empty = Value::Object(Map::new());
    // The object before the apply, whose managedFields every comparison below skips.
    let before = live.unwrap_or(&empty);
    let original_entries = live.map(parse_entries).unwrap_or_default();
    // Shares the field sets of `original_entries` until one of them changes.
    let mut entries = original_entries.clone();
    if let Some(live) = live
        && entries.is_empty()
    {
        // Objects written before any field manager: everything belongs to one Update manager.
        let mut all = FieldSet::new();
        collect_all(&without_managed_fields(live), &t, &mut Vec::new(), &mut Path::default(), &mut all);
        strip(&mut all);
        if !all.is_empty() {
            entries.push(Entry::new("before-first-apply", "Update", api_version_of(live, types), None, all));
        }
    }

    // `status_only` never keeps managedFields, so it needs no copy without them first.
    let config = if subresource == Some("status") { status_only(applied) } else { without_managed_fields(applied) };
    let mut merged = live.map(without_managed_fields).unwrap_or_else(|| empty.clone());
    merge_into(&mut merged, &config, &t, &mut Vec::new());
    let mut new_set = FieldSet::new();
    collect_apply(&config, &t, &mut Vec::new(), &mut Path::default(), &mut new_set);
    strip(&mut new_set);

    let me = entries.iter().position(|e| e.is(manager, "Apply", subresource));
    let last_set = me.map(|i| Rc::clone(&entries[i].set)).unwrap_or_default();

    // Remove what this manager applied before and no longer applies, unless someone else owns it.
    let dropped: Vec<&Path> = last_set.iter().filter(|p| !new_set.contains(*p)).collect();
    if !dropped.is_empty() {
        let mut owned_by_others = FieldSet::new();
        for (i, e) in entries.iter().enumerate() {
            if Some(i) != me {
                owned_by_others.extend(e.set.iter().cloned());
            }
        }
        let mut to_remove: Vec<Vec<PE>> = dropped
            .into_iter()
            .filter(|p| !owns_path_or_below(&owned_by_others, p) && !owns_path_or_below(&new_set, p))
            .map(|p| p.elements().collect())
            .collect();
        // Shallow first: removing an item before its fields keeps its key findable.
        to_remove.sort_by_key(Vec::len);
        for p in to_remove {
            if remove_path(&mut merged, &p, &t, &mut Vec::new()) {
                remove_empty_ancestors(&mut merged, &p, &t, &owned_by_others, &new_set);
            }
        }
    }

    // Conflicts: fields other managers own that this apply changes.
    let cmp = compare(before, &merged, &t);
    let changed = |p: &Path| cmp.added.contains(p) || cmp.modified.contains(p);
    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, FieldSet)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == me {
            continue;
        }
        let c: FieldSet = e.set.iter().filter(|p| changed(p)).cloned().collect();
        if !c.is_empty() {
            conflicts.extend(c.iter().map(|p| Conflict { manager: e.manager.clone(), field: path_string(p) }));
            taken.push((i, c));
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
        return Err(conflicts);
    }
    for (i, c) in taken {
        entries[i].retain(|p| !c.contains(p));
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != me {
            e.retain(|p| !cmp.removed.contains(p));
        }
    }

    let object_changed = !equal_without_managed_fields(&merged, before);
    let api_version = api_version_of(applied, types);
    match me {
        Some(i) => {
            let e = &mut entries[i];
            if object_changed || *e.set != new_set {
                e.time = Some(now());
            }
            e.set = Rc::new(new_set);
            e.encoded = None;
            e.api_version = api_version;
        }
        None => {
            let mut e = Entry::new(manager, "Apply", api_version, subresource, new_set);
            e.time = Some(now());
            entries.push(e);
        }
    }
    entries.retain(|e| !e.set.is_empty());

    if let Some(live) = live
        && !object_changed
        && same_entries(&entries, &original_entries)
    {
        return Ok(live.clone());
    }
    set_managed_fields(&mut merged, &entries);
    Ok(merged)
}

/// Records a non-apply write (create, update, patch) by `manager` in `new.metadata.managedFields`:
/// the manager's `Update` entry owns the fields it changed, which other managers lose.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, subresource: Option<&str>, types: &TypeInfo) {
    let t = Types { info: types };
    // Managed fields: the ones the client sent, if any (`[{}]` resets them), else the old ones.
    let mut entries = match new.pointer("/metadata/managedFields") {
        Some(Value::Array(a)) if a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty) => Vec::new(),
        // The client's own spelling of its fields is not kept: they are written as the server
        // spells them.
        Some(Value::Array(a)) if !a.is_empty() => parse_entries(new).into_iter().map(Entry::without_encoding).collect(),
        _ => old.map(parse_entries).unwrap_or_default(),
    };
    let empty = Value::Object(Map::new());
    let mut cmp = compare(old.unwrap_or(&empty), new, &t);
    strip(&mut cmp.added);
    strip(&mut cmp.modified);
    strip(&mut cmp.removed);
    let mut touched = cmp.added;
    touched.append(&mut cmp.modified);

    let me = entries.iter().position(|e| e.is(manager, "Update", subresource));
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != me {
            e.retain(|p| !touched.contains(p) && !cmp.removed.contains(p));
        }
    }
    if !touched.is_empty() {
        let api_version = api_version_of(new, types);
        match me {
            Some(i) => {
                let e = &mut entries[i];
                e.retain(|p| !cmp.removed.contains(p));
                Rc::make_mut(&mut e.set).extend(touched);
                e.encoded = None;
                e.time = Some(now());
                e.api_version = api_version;
            }
            None => {
                let mut e = Entry::new(manager, "Update", api_version, subresource, touched);
                e.time = Some(now());
                entries.push(e);
            }
        }
    } else if let Some(i) = me {
        entries[i].retain(|p| !cmp.removed.contains(p));
    }
    entries.retain(|e| !e.set.is_empty());
    set_managed_fields(new, &entries);
}

// ---------------------------------------------------------------------------------------------
// Paths and field sets
// ---------------------------------------------------------------------------------------------

/// One step of a field path, as FieldsV1 spells it: `f:name`, `k:{"type":"Ready"}`, `v:"x"`, `i:0`.
/// Keys and values are kept as canonical JSON text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum PE {
    Field(String),
    Key(String),
    Val(String),
    Index(usize),
}

type FieldSet = BTreeSet<Path>;

fn field(name: &str) -> PE {
    PE::Field(name.to_string())
}

/// A field path, kept as one byte string whose byte order is the order of the paths compared
/// element by element (`PE`'s derived order, which is also the order of `fieldsV1`): a set of paths
/// then compares, copies and frees one buffer per path rather than a string per element.
///
/// Each element is a tag byte (`FIELD` < `KEY` < `VAL` < `INDEX`, the order of `PE`'s variants)
/// followed by
/// - for a field, key or value: its text with the bytes 0 and 1 escaped (0 as 1 1, 1 as 1 2), then
///   a 0. The escapes keep the order of texts and leave 0 only at the end, where it sorts before
///   any byte a longer text goes on with ("a" before "a\0" before "ab") and ends the element;
/// - for an index: the number as 8 bytes, big-endian (byte order is number order).
///
/// No element's encoding is a prefix of another's, so comparing two paths byte by byte compares
/// their first differing elements, and a shorter path sorts before the longer ones it begins.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Path {
    bytes: Vec<u8>,
}

const FIELD: u8 = 1;
const KEY: u8 = 2;
const VAL: u8 = 3;
const INDEX: u8 = 4;

impl Path {
    fn from_elements<'a>(elements: impl IntoIterator<Item = &'a PE>) -> Path {
        let mut p = Path::default();
        for pe in elements {
            p.push(pe);
        }
        p
    }

    fn of_fields(names: &[&str]) -> Path {
        let mut p = Path::default();
        for n in names {
            p.push_field(n);
        }
        p
    }

    /// Appends `pe`; returns the length to `truncate` to, to take it off again.
    fn push(&mut self, pe: &PE) -> usize {
        let mark = self.bytes.len();
        match pe {
            PE::Field(text) => self.push_text(FIELD, text),
            PE::Key(text) => self.push_text(KEY, text),
            PE::Val(text) => self.push_text(VAL, text),
            PE::Index(i) => {
                self.bytes.push(INDEX);
                self.bytes.extend_from_slice(&(*i as u64).to_be_bytes());
            }
        }
        mark
    }

    /// `push(&PE::Field(name))` without making the `PE`.
    fn push_field(&mut self, name: &str) -> usize {
        let mark = self.bytes.len();
        self.push_text(FIELD, name);
        mark
    }

    fn push_text(&mut self, tag: u8, text: &str) {
        self.bytes.push(tag);
        for &b in text.as_bytes() {
            match b {
                0 => self.bytes.extend_from_slice(&[1, 1]),
                1 => self.bytes.extend_from_slice(&[1, 2]),
                b => self.bytes.push(b),
            }
        }
        self.bytes.push(0);
    }

    fn truncate(&mut self, mark: usize) {
        self.bytes.truncate(mark);
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether `prefix`'s elements are this path's first ones.
    fn starts_with(&self, prefix: &Path) -> bool {
        self.bytes.starts_with(&prefix.bytes)
    }

    /// Where the element that starts at byte `at` ends. (Escapes are 1 1 and 1 2: the first 0
    /// after the tag ends a text.)
    fn element_end(&self, at: usize) -> usize {
        if self.bytes[at] == INDEX {
            return at + 9;
        }
        at + 1 + self.bytes[at + 1..].iter().position(|&b| b == 0).expect("a text ends with 0") + 1
    }

    /// The element that starts at byte `at`, and where the next one starts.
    fn element_at(&self, at: usize) -> (PE, usize) {
        let end = self.element_end(at);
        let body = &self.bytes[at + 1..end];
        if self.bytes[at] == INDEX {
            let n = u64::from_be_bytes(body.try_into().expect("an index is 8 bytes"));
            return (PE::Index(n as usize), end);
        }
        let mut text = Vec::with_capacity(body.len() - 1);
        let mut bytes = body[..body.len() - 1].iter();
        while let Some(&b) = bytes.next() {
            text.push(if b == 1 { bytes.next().expect("an escape is two bytes") - 1 } else { b });
        }
        let text = String::from_utf8(text).expect("the text of a str");
        let pe = match self.bytes[at] {
            FIELD => PE::Field(text),
            KEY => PE::Key(text),
            VAL => PE::Val(text),
            tag => unreachable!("path element tag {tag}"),
        };
        (pe, end)
    }

    fn elements(&self) -> impl Iterator<Item = PE> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < self.bytes.len()).then(|| {
                let (pe, next) = self.element_at(at);
                at = next;
                pe
            })
        })
    }
}

impl std::fmt::Debug for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.elements()).finish()
    }
}

/// Paths kube-apiserver never records in managed fields: `apiVersion`, `kind`, `metadata` itself,
/// the metadata the server sets (`metadata.name`, ...) and `metadata.managedFields` and below.
fn strip(set: &mut FieldSet) {
    /// The paths removed themselves, and the one removed with everything below it.
    static NEVER_OWNED: LazyLock<(Vec<Path>, Path)> = LazyLock::new(|| {
        let mut exact: Vec<Path> = ["apiVersion", "kind", "metadata"].iter().map(|n| Path::of_fields(&[n])).collect();
        exact.extend(
            [
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "resourceVersion",
            ]
            .iter()
            .map(|n| Path::of_fields(&["metadata", n])),
        );
        (exact, Path::of_fields(&["metadata", "managedFields"]))
    });
    let (exact, managed_fields) = &*NEVER_OWNED;
    set.retain(|p| !exact.contains(p) && !p.starts_with(managed_fields));
}

fn owns_path_or_below(set: &FieldSet, p: &Path) -> bool {
    set.range::<Path, _>((Bound::Included(p), Bound::Unbounded)).next().is_some_and(|q| q.starts_with(p))
}

/// `.spec.containers[name="app"].image`, as structured-merge-diff prints paths in conflicts.
fn path_string(p: &Path) -> String {
    let mut s = String::new();
    for pe in p.elements() {
        match pe {
            PE::Field(n) => {
                s.push('.');
                s.push_str(&n);
            }
            PE::Key(k) => {
                let parts: Vec<String> = match serde_json::from_str::<Value>(&k) {
                    Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    _ => vec![k],
                };
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            PE::Val(v) => s.push_str(&format!("[={v}]")),
            PE::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn pe_to_key(pe: &PE) -> String {
    match pe {
        PE::Field(n) => format!("f:{n}"),
        PE::Key(k) => format!("k:{k}"),
        PE::Val(v) => format!("v:{v}"),
        PE::Index(i) => format!("i:{i}"),
    }
}

/// The `k:` text of a map-list item's key `fields`: the JSON object of them sorted by name, each
/// once, written straight away as `Value::Object(..).to_string()` would write it. Item keys and
/// keys read back from `fieldsV1` must give the same bytes, so both come here. None when there
/// are no fields.
fn key_text(mut fields: Vec<(&str, &Value)>) -> Option<String> {
    fields.sort_by(|a, b| a.0.cmp(b.0));
    fields.dedup_by(|a, b| a.0 == b.0);
    let mut text = Vec::new();
    for (k, v) in fields {
        text.push(if text.is_empty() { b'{' } else { b',' });
        serde_json::to_writer(&mut text, k).expect("JSON is written to memory");
        text.push(b':');
        text.extend_from_slice(value_text(v).as_bytes());
    }
    if text.is_empty() {
        return None;
    }
    text.push(b'}');
    Some(String::from_utf8(text).expect("JSON is UTF-8"))
}

/// A list item's value (or a map-list key's field) as it is written in a path element: JSON, with
/// a number that is whole written as Go's encoding/json writes the float64 kube-apiserver decodes
/// it to when it is not an int64 (`1.0` as `1`, `-0.0` as `0`, `1.2345678901234567e20` as
/// `123456789012345670000`, a u64 beyond int64 as its float64). structured-merge-diff compares
/// numbers by value (`value.Compare`), so `1` and `1.0` are one item, and one element.
fn value_text(v: &Value) -> String {
    let Value::Number(n) = v else { return v.to_string() };
    if n.is_i64() {
        return v.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => whole_float_text(f),
        _ => v.to_string(),
    }
}

/// A whole float64 below 1e21 as Go's `strconv.FormatFloat(f, 'f', -1, 64)` writes it: its
/// shortest digits, then zeros.
fn whole_float_text(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let scientific = format!("{f:e}"); // shortest digits, e.g. "-1.2345e20"
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: usize = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let zeros = (exponent + 1).saturating_sub(digits.len());
    format!("{sign}{digits}{}", "0".repeat(zeros))
}

fn pe_from_key(k: &str) -> Option<PE> {
    let (kind, rest) = k.split_at_checked(2)?;
    match kind {
        "f:" => Some(PE::Field(rest.to_string())),
        "k:" => {
            let v: Value = serde_json::from_str(rest).ok()?;
            let fields = v.as_object()?.iter().map(|(k, v)| (k.as_str(), v)).collect();
            Some(PE::Key(key_text(fields).unwrap_or_else(|| "{}".into())))
        }
        "v:" => serde_json::from_str::<Value>(rest).ok().map(|v| PE::Val(value_text(&v))),
        "i:" => rest.parse().ok().map(PE::Index),
        _ => None,
    }
}

fn fields_v1_to_set(v: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, prefix: &mut Path, out: &mut FieldSet) {
        for (k, child) in node {
            if k == "." {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
                continue;
            }
            let mark = match k.strip_prefix("f:") {
                Some(name) => prefix.push_field(name),
                None => match pe_from_key(k) {
                    Some(pe) => prefix.push(&pe),
                    None => continue,
                },
            };
            match child.as_object() {
                Some(m) if !m.is_empty() => walk(m, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.truncate(mark);
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        walk(m, &mut Path::default(), &mut out);
    }
    out
}

fn set_to_fields_v1(set: &FieldSet) -> Value {
    let paths: Vec<&Path> = set.iter().collect();
    encode_fields_v1(&paths, 0)
}

/// The `fieldsV1` node for `paths`, sorted and sharing their first `at` bytes (whole elements):
/// its children in the order of their path elements, and `"."` when the node is itself a member
/// and has children. A path that ends at the node sorts first among them.
fn encode_fields_v1(paths: &[&Path], at: usize) -> Value {
    let mut m = Map::new();
    let mut rest = match paths.split_first() {
        Some((p, rest)) if p.bytes.len() == at => {
            if !rest.is_empty() {
                m.insert(".".to_string(), Value::Object(Map::new()));
            }
            rest
        }
        _ => paths,
    };
    while let Some(first) = rest.first() {
        let end = first.element_end(at);
        let element = &first.bytes[at..end];
        // No element's encoding begins another's: the same bytes are the same element.
        let n = rest.iter().take_while(|p| p.bytes.get(at..end) == Some(element)).count();
        m.insert(pe_to_key(&first.element_at(at).0), encode_fields_v1(&rest[..n], end));
        rest = &rest[n..];
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------------

/// One entry of `managedFields`; `'a` is the object it was read from.
#[derive(Debug, Clone)]
struct Entry<'a> {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    /// Shared (copy on write, `Rc::make_mut`) so that copying the entries as read, to tell at the
    /// end whether they changed, copies no field set.
    set: Rc<FieldSet>,
    /// `fieldsV1` as the stored object has it, while `set` is what it was read as: written back
    /// as it is instead of encoded again. Cleared by every change of `set`.
    encoded: Option<&'a Value>,
}

/// Entries are the same when they say the same; how `fieldsV1` was come by does not count.
impl PartialEq for Entry<'_> {
    fn eq(&self, other: &Self) -> bool {
        (&self.manager, &self.operation, &self.api_version, &self.time, &self.subresource, &self.set)
            == (&other.manager, &other.operation, &other.api_version, &other.time, &other.subresource, &other.set)
    }
}

impl Entry<'_> {
    fn new(manager: &str, operation: &str, api_version: String, subresource: Option<&str>, set: FieldSet) -> Self {
        Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version,
            time: None,
            subresource: subresource.filter(|s| !s.is_empty()).map(str::to_string),
            set: Rc::new(set),
            encoded: None,
        }
    }

    /// The entry with its fields to be encoded again when written, no longer tied to the object
    /// it was read from.
    fn without_encoding<'b>(self) -> Entry<'b> {
        let Entry { manager, operation, api_version, time, subresource, set, encoded: _ } = self;
        Entry { manager, operation, api_version, time, subresource, set, encoded: None }
    }

    /// Keeps the paths `keep` says to keep (`BTreeSet::retain`, which only removes). The set is
    /// copied (when shared) only if some path goes; `keep` must answer the same both times.
    fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        if self.set.iter().all(&mut keep) {
            return;
        }
        Rc::make_mut(&mut self.set).retain(keep);
        self.encoded = None;
    }

    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref().unwrap_or("") == subresource.unwrap_or("")
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        let fields = self.encoded.cloned().unwrap_or_else(|| set_to_fields_v1(&self.set));
        m.insert("fieldsV1".into(), fields);
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), Value::String(s.clone()));
        }
        Value::Object(m)
    }
}

fn parse_entries(obj: &Value) -> Vec<Entry<'_>> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let manager = e.get("manager").and_then(Value::as_str).unwrap_or("").to_string();
            let operation = e.get("operation").and_then(Value::as_str)?.to_string();
            Some(Entry {
                manager,
                operation,
                api_version: e.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string(),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
                subresource: e.get("subresource").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
                set: Rc::new(e.get("fieldsV1").map(fields_v1_to_set).unwrap_or_default()),
                encoded: e.get("fieldsV1"),
            })
        })
        .collect()
}

fn same_entries(a: &[Entry], b: &[Entry]) -> bool {
    a.len() == b.len() && a.iter().all(|e| b.contains(e))
}

/// Writes the entries, in kube-apiserver's order: Apply before Update, then by time, manager,
/// apiVersion and subresource.
fn set_managed_fields(obj: &mut Value, entries: &[Entry]) {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|p, q| {
        (&p.operation, &p.time, &p.manager, &p.api_version, &p.subresource).cmp(&(
            &q.operation,
            &q.time,
            &q.manager,
            &q.api_version,
            &q.subresource,
        ))
    });
    let list: Vec<Value> = sorted.iter().map(|e| e.to_json()).collect();
    if !obj.is_object() {
        return;
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    let meta = obj["metadata"].as_object_mut().expect("metadata is an object");
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// A copy of `v` without `metadata.managedFields`, which are not copied first. The keys keep the
/// order `Map::remove` leaves (it moves the last key into the removed one's place): `metadata` is
/// copied with a null in place of the managed fields, which are then removed.
fn without_managed_fields(v: &Value) -> Value {
    let Value::Object(root) = v else {
        return v.clone();
    };
    let out = root
        .iter()
        .map(|(k, child)| {
            let child = match child {
                Value::Object(meta) if k == "metadata" => {
                    let mut meta: Map<String, Value> = meta
                        .iter()
                        .map(|(mk, mv)| (mk.clone(), if mk == "managedFields" { Value::Null } else { mv.clone() }))
                        .collect();
                    meta.remove("managedFields");
                    Value::Object(meta)
                }
                _ => child.clone(),
            };
            (k.clone(), child)
        })
        .collect();
    Value::Object(out)
}

/// The `metadata` of an object as `without_managed_fields` leaves it: copied (without the managed
/// fields) only when it has them.
fn metadata_without_managed_fields(meta: Option<&Value>) -> Option<Cow<'_, Value>> {
    match meta? {
        Value::Object(m) if m.contains_key("managedFields") => Some(Cow::Owned(Value::Object(
            m.iter().filter(|(k, _)| *k != "managedFields").map(|(k, v)| (k.clone(), v.clone())).collect(),
        ))),
        v => Some(Cow::Borrowed(v)),
    }
}

/// The members of metadata `meta` but `managedFields` (none when it is not an object).
fn metadata_members(meta: Option<&Value>) -> impl Iterator<Item = (&String, &Value)> {
    meta.and_then(Value::as_object).into_iter().flatten().filter(|(k, _)| *k != "managedFields")
}

/// Two `metadata` values equal but for their `managedFields`, without copying either.
fn metadata_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            metadata_members(Some(a)).count() == metadata_members(Some(b)).count()
                && x.iter().all(|(k, v)| k == "managedFields" || y.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// `without_managed_fields(a) == without_managed_fields(b)`, without copying either.
fn equal_without_managed_fields(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| match y.get(k) {
                    Some(w) if k == "metadata" => metadata_equal(v, w),
                    Some(w) => v == w,
                    None => false,
                })
        }
        _ => a == b,
    }
}

fn status_only(config: &Value) -> Value {
    let mut out = Map::new();
    for k in ["apiVersion", "kind"] {
        if let Some(v) = config.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let mut meta = Map::new();
    for k in ["name", "namespace"] {
        if let Some(v) = config.pointer(&format!("/metadata/{k}")) {
            meta.insert(k.into(), v.clone());
        }
    }
    out.insert("metadata".into(), Value::Object(meta));
    if let Some(s) = config.get("status") {
        out.insert("status".into(), s.clone());
    }
    Value::Object(out)
}

fn api_version_of(obj: &Value, types: &TypeInfo) -> String {
    obj.get("apiVersion").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| types.api_version.clone())
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ---------------------------------------------------------------------------------------------
// Types: list types and atomic maps by path
// ---------------------------------------------------------------------------------------------

struct Types<'a> {
    info: &'a TypeInfo,
}

impl Types<'_> {
    fn builtin_rules(&self, names: &[String]) -> bool {
        self.info.schema.is_none() || names.first().map(String::as_str) == Some("metadata")
    }

    fn schema_at(&self, names: &[String]) -> Option<&Value> {
        let mut cur = self.info.schema.as_deref()?;
        for n in names {
            while let Some(items) = cur.get("items").filter(|i| i.is_object()) {
                cur = items;
            }
            cur = property_schema(cur, n)?;
        }
        Some(cur)
    }

    fn list_type(&self, names: &[String]) -> ListType {
        if self.builtin_rules(names) {
            let path: Vec<&str> = names.iter().map(String::as_str).collect();
            let m = patchmeta::list_meta(&self.info.api_version, &self.info.kind, &path);
            return if m.set {
                ListType::Set
            } else if !m.map_keys.is_empty() {
                ListType::Map(m.map_keys.iter().map(|s| s.to_string()).collect())
            } else {
                ListType::Atomic
            };
        }
        let Some(s) = self.schema_at(names) else {
            return ListType::Atomic;
        };
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                s.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default(),
            ),
            _ => ListType::Atomic,
        }
    }

    fn atomic_map(&self, names: &[String]) -> bool {
        if names.is_empty() {
            return false;
        }
        if self.builtin_rules(names) {
            let path: Vec<&str> = names.iter().map(String::as_str).collect();
            return patchmeta::atomic_map(&self.info.api_version, &self.info.kind, &path);
        }
        self.schema_at(names).and_then(|s| s.get("x-kubernetes-map-type")).and_then(Value::as_str) == Some("atomic")
    }

    /// The default of a list-map key field, used when an item omits it (Kubernetes defaults
    /// `protocol` to `TCP` before apply's merge sees ports).
    fn key_default(&self, names: &[String], key: &str) -> Option<Value> {
        if self.builtin_rules(names) {
            return (key == "protocol").then(|| Value::String("TCP".into()));
        }
        self.schema_at(names)?.get("items")?.get("properties")?.get(key)?.get("default").cloned()
    }

    /// The `k:` text of an item of a map list: its key fields (defaulted where missing) as JSON
    /// with sorted names (`key_text`).
    fn item_key(&self, names: &[String], keys: &[String], item: &Value) -> Option<String> {
        let obj = item.as_object()?;
        let defaults: Vec<(&String, Value)> = keys
            .iter()
            .filter(|k| !obj.contains_key(*k))
            .filter_map(|k| Some((k, self.key_default(names, k)?)))
            .collect();
        let given = keys.iter().filter_map(|k| obj.get(k).map(|v| (k.as_str(), v)));
        key_text(given.chain(defaults.iter().map(|(k, v)| (k.as_str(), v))).collect())
    }
}

/// The path element of item `i` of the list at `names`.
fn item_pe(t: &Types, names: &[String], lt: &ListType, i: usize, item: &Value) -> PE {
    match lt {
        ListType::Set => PE::Val(value_text(item)),
        ListType::Map(keys) => t.item_key(names, keys, item).map(PE::Key).unwrap_or(PE::Index(i)),
        ListType::Atomic => PE::Index(i),
    }
}

// ---------------------------------------------------------------------------------------------
// Merge, field sets, comparison, removal
// ---------------------------------------------------------------------------------------------

/// Merges the configuration `cfg` into `live`, in place: maps key by key (a null removes the key)
/// unless atomic, lists by their list type (atomic lists replaced, sets united, map lists merged
/// item by item by key, new items appended), anything else replaced by `cfg`.
fn merge_into(live: &mut Value, cfg: &Value, t: &Types, names: &mut Vec<String>) {
    match (&mut *live, cfg) {
        (Value::Object(l), Value::Object(c)) if !t.atomic_map(names) => {
            for (k, v) in c {
                if v.is_null() {
                    l.remove(k);
                    continue;
                }
                match l.get_mut(k) {
                    Some(slot) => {
                        names.push(k.clone());
                        merge_into(slot, v, t, names);
                        names.pop();
                    }
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
            return;
        }
        (Value::Array(l), Value::Array(c)) => match t.list_type(names) {
            ListType::Atomic => {}
            ListType::Set => {
                for item in c {
                    if !l.iter().any(|o| json_equal(o, item)) {
                        l.push(item.clone());
                    }
                }
                return;
            }
            ListType::Map(keys) => {
                // The key of each item of `l`, kept up to date as items are merged or added.
                let mut item_keys: Vec<Option<String>> = l.iter().map(|o| t.item_key(names, &keys, o)).collect();
                for item in c {
                    let k = t.item_key(names, &keys, item);
                    let pos = k.as_ref().and_then(|k| item_keys.iter().position(|o| o.as_ref() == Some(k)));
                    match pos {
                        Some(p) => {
                            merge_into(&mut l[p], item, t, names);
                            item_keys[p] = t.item_key(names, &keys, &l[p]);
                        }
                        None => {
                            l.push(item.clone());
                            item_keys.push(k);
                        }
                    }
                }
                return;
            }
        },
        _ => {}
    }
    *live = cfg.clone();
}

/// The set an applier gets from its configuration: leaves, empty maps, list items.
fn collect_apply(v: &Value, t: &Types, names: &mut Vec<String>, path: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Null => {}
        Value::Object(m) if !m.is_empty() && !t.atomic_map(names) => {
            for (k, c) in m {
                if c.is_null() {
                    continue;
                }
                names.push(k.clone());
                let mark = path.push_field(k);
                collect_apply(c, t, names, path, out);
                path.truncate(mark);
                names.pop();
            }
        }
        Value::Array(items) => {
            let lt = t.list_type(names);
            if lt == ListType::Atomic {
                out.insert(path.clone());
                return;
            }
            collect_items(items, &lt, t, names, path, out, collect_apply);
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// Every path of a value, intermediate nodes included (what an Update that adds it owns).
fn collect_all(v: &Value, t: &Types, names: &mut Vec<String>, path: &mut Path, out: &mut FieldSet) {
    if !path.is_empty() {
        out.insert(path.clone());
    }
    match v {
        Value::Object(m) if !t.atomic_map(names) => {
            for (k, c) in m {
                names.push(k.clone());
                let mark = path.push_field(k);
                collect_all(c, t, names, path, out);
                path.truncate(mark);
                names.pop();
            }
        }
        Value::Array(items) => {
            let lt = t.list_type(names);
            if lt == ListType::Atomic {
                return;
            }
            collect_items(items, &lt, t, names, path, out, collect_all);
        }
        _ => {}
    }
}

/// The items of a set or map list: each item's own path, and for a map list the fields inside
/// each item, collected by `recurse`.
fn collect_items(
    items: &[Value],
    lt: &ListType,
    t: &Types,
    names: &mut Vec<String>,
    path: &mut Path,
    out: &mut FieldSet,
    recurse: fn(&Value, &Types, &mut Vec<String>, &mut Path, &mut FieldSet),
) {
    for (i, item) in items.iter().enumerate() {
        let mark = path.push(&item_pe(t, names, lt, i, item));
        out.insert(path.clone());
        if let (ListType::Map(_), Value::Object(m)) = (lt, item) {
            for (k, c) in m {
                names.push(k.clone());
                let mark = path.push_field(k);
                recurse(c, t, names, path, out);
                path.truncate(mark);
                names.pop();
            }
        }
        path.truncate(mark);
    }
}

#[derive(Default, Debug)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

/// What changed from `old` to `new`, both seen without `metadata.managedFields` (as
/// `without_managed_fields` leaves them, but without copying them).
fn compare(old: &Value, new: &Value, t: &Types) -> Comparison {
    let mut c = Comparison::default();
    let (mut names, mut path) = (Vec::new(), Path::default());
    match (old, new) {
        // The map branch of `compare_at` at the root (which is never an atomic map).
        (Value::Object(o), Value::Object(n)) => {
            for k in union_keys(o, n) {
                names.push(k.clone());
                let mark = path.push_field(k);
                if let (Some(Value::Object(om)), Some(Value::Object(nm))) = (o.get(k), n.get(k))
                    && k == "metadata"
                {
                    // `compare_at` of the two without their managedFields, without copying them.
                    for mk in union_keys(om, nm).filter(|mk| *mk != "managedFields") {
                        names.push(mk.clone());
                        let mark = path.push_field(mk);
                        compare_at(om.get(mk), nm.get(mk), t, &mut names, &mut path, &mut c);
                        path.truncate(mark);
                        names.pop();
                    }
                } else if k == "metadata" {
                    let om = metadata_without_managed_fields(o.get(k));
                    let nm = metadata_without_managed_fields(n.get(k));
                    compare_at(om.as_deref(), nm.as_deref(), t, &mut names, &mut path, &mut c);
                } else {
                    compare_at(o.get(k), n.get(k), t, &mut names, &mut path, &mut c);
                }
                path.truncate(mark);
                names.pop();
            }
        }
        _ => compare_at(Some(old), Some(new), t, &mut names, &mut path, &mut c),
    }
    c
}

/// The keys of `a`, then those of `b` that `a` does not have.
fn union_keys<'a>(a: &'a Map<String, Value>, b: &'a Map<String, Value>) -> impl Iterator<Item = &'a String> {
    a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)))
}

fn compare_at(
    old: Option<&Value>,
    new: Option<&Value>,
    t: &Types,
    names: &mut Vec<String>,
    path: &mut Path,
    c: &mut Comparison,
) {
    // Equal values (strictly: `1` and `1.0` differ here, though not to `json_equal`) have no
    // differences to find, however big they are: most of an object is unchanged by a write.
    if let (Some(o), Some(n)) = (old, new)
        && o == n
    {
        return;
    }
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => collect_all(n, t, names, path, &mut c.added),
        (Some(o), None) => collect_all(o, t, names, path, &mut c.removed),
        (Some(Value::Object(o)), Some(Value::Object(n))) if !t.atomic_map(names) => {
            for k in union_keys(o, n) {
                names.push(k.clone());
                let mark = path.push_field(k);
                compare_at(o.get(k), n.get(k), t, names, path, c);
                path.truncate(mark);
                names.pop();
            }
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) if t.list_type(names) != ListType::Atomic => {
            let lt = t.list_type(names);
            let index = |items: &[Value]| -> BTreeMap<PE, usize> {
                items.iter().enumerate().map(|(i, item)| (item_pe(t, names, &lt, i, item), i)).collect()
            };
            let oi = index(o);
            let ni = index(n);
            let pes: BTreeSet<&PE> = oi.keys().chain(ni.keys()).collect();
            for pe in pes {
                let ov = oi.get(pe).map(|&i| &o[i]);
                let nv = ni.get(pe).map(|&i| &n[i]);
                let mark = path.push(pe);
                match (ov, nv, &lt) {
                    (Some(ov), Some(nv), ListType::Map(_)) => {
                        // Compare the item's fields (the item itself is unchanged).
                        if let (Value::Object(om), Value::Object(nm)) = (ov, nv) {
                            for k in union_keys(om, nm) {
                                names.push(k.clone());
                                let mark = path.push_field(k);
                                compare_at(om.get(k), nm.get(k), t, names, path, c);
                                path.truncate(mark);
                                names.pop();
                            }
                        } else if !json_equal(ov, nv) {
                            c.modified.insert(path.clone());
                        }
                    }
                    (Some(_), Some(_), _) => {}
                    (None, Some(nv), ListType::Map(_)) => collect_item(nv, t, names, path, &mut c.added),
                    (Some(ov), None, ListType::Map(_)) => collect_item(ov, t, names, path, &mut c.removed),
                    (None, Some(_), _) => {
                        c.added.insert(path.clone());
                    }
                    (Some(_), None, _) => {
                        c.removed.insert(path.clone());
                    }
                    (None, None, _) => {}
                }
                path.truncate(mark);
            }
        }
        (Some(o), Some(n)) => {
            if !json_equal(o, n) {
                if !path.is_empty() {
                    c.modified.insert(path.clone());
                }
                // Anything below the old value that the new one no longer has is gone.
                let mut below = FieldSet::new();
                collect_all(o, t, names, path, &mut below);
                below.remove(&*path);
                c.removed.extend(below);
            }
        }
    }
}

/// A map-list item and all of its fields.
fn collect_item(item: &Value, t: &Types, names: &mut Vec<String>, path: &mut Path, out: &mut FieldSet) {
    out.insert(path.clone());
    if let Value::Object(m) = item {
        for (k, c) in m {
            names.push(k.clone());
            let mark = path.push_field(k);
            collect_all(c, t, names, path, out);
            path.truncate(mark);
            names.pop();
        }
    }
}

/// Finds the container of the value at `path` and the position there; the callback gets the
/// parent value and the last path element.
fn with_parent<R>(
    obj: &mut Value,
    path: &[PE],
    t: &Types,
    names: &mut Vec<String>,
    f: &mut dyn FnMut(&mut Value, &PE, &[String]) -> R,
) -> Option<R> {
    let (first, rest) = path.split_first()?;
    if rest.is_empty() {
        return Some(f(obj, first, names));
    }
    let child: &mut Value = match first {
        PE::Field(n) => {
            names.push(n.clone());
            let r = obj.get_mut(n.as_str());
            match r {
                Some(c) => c,
                None => {
                    names.pop();
                    return None;
                }
            }
        }
        pe => {
            let idx = find_item(obj, pe, t, names)?;
            &mut obj.as_array_mut()?[idx]
        }
    };
    let pushed = matches!(first, PE::Field(_));
    let r = with_parent(child, rest, t, names, f);
    if pushed {
        names.pop();
    }
    r
}

fn find_item(list: &Value, pe: &PE, t: &Types, names: &[String]) -> Option<usize> {
    let items = list.as_array()?;
    let lt = t.list_type(names);
    match pe {
        PE::Index(i) => (*i < items.len()).then_some(*i),
        _ => items.iter().enumerate().position(|(i, item)| &item_pe(t, names, &lt, i, item) == pe),
    }
}

fn remove_path(obj: &mut Value, path: &[PE], t: &Types, names: &mut Vec<String>) -> bool {
    with_parent(obj, path, t, names, &mut |parent, last, names| match last {
        PE::Field(n) => parent.as_object_mut().and_then(|m| m.remove(n)).is_some(),
        pe => match find_item(parent, pe, t, names) {
            Some(i) => {
                parent.as_array_mut().map(|a| a.remove(i));
                true
            }
            None => false,
        },
    })
    .unwrap_or(false)
}

fn value_at<'a>(obj: &'a Value, path: &[PE], t: &Types, names: &mut Vec<String>) -> Option<&'a Value> {
    let mut cur = obj;
    let depth = names.len();
    for pe in path {
        cur = match pe {
            PE::Field(n) => {
                names.push(n.clone());
                cur.get(n.as_str())?
            }
            pe => {
                let i = find_item(cur, pe, t, names)?;
                cur.get(i)?
            }
        };
    }
    names.truncate(depth);
    Some(cur)
}

/// After pruning `removed`, drops the maps and lists above it that became empty and that no one
/// owns (the applier had them only because of what it removed).
fn remove_empty_ancestors(obj: &mut Value, removed: &[PE], t: &Types, others: &FieldSet, mine: &FieldSet) {
    for n in (1..removed.len()).rev() {
        let prefix = &removed[..n];
        if prefix.len() == 1 && prefix[0] == field("metadata") {
            return;
        }
        let prefix_path = Path::from_elements(prefix);
        if owns_path_or_below(others, &prefix_path) || owns_path_or_below(mine, &prefix_path) {
            return;
        }
        let mut names = Vec::new();
        let empty = match value_at(obj, prefix, t, &mut names) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if !empty || !remove_path(obj, prefix, t, &mut Vec::new()) {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
