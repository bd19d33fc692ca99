//! Patch metadata of built-in kinds, shared by strategic merge patch ([`super::smp`]) and
//! server-side apply ([`super::ssa`]): which lists merge by which keys (Kubernetes'
//! `patchStrategy`/`patchMergeKey` and `listType`/`listMapKey` tags), and which maps are atomic.
//!
//! The table is keyed by the field names on the way from the object's root (list items are
//! transparent: `["spec", "template", "spec", "containers", "ports"]`), so that a pod spec is
//! recognised wherever it is embedded (Pod, Deployment, StatefulSet, DaemonSet, Job, CronJob, ...).
//! Lists it does not know are atomic (replaced as a whole), as most lists of the built-in kinds are.

/// How a list is merged by a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// The patch's list replaces the original (the default).
    Replace,
    /// Items merge by `merge_key` (or, for lists of primitives, by value).
    Merge,
}

/// Patch metadata of one list field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMeta {
    pub strategy: PatchStrategy,
    /// `patchMergeKey` for strategic merge patch (None for lists of primitives).
    pub merge_key: Option<&'static str>,
    /// `listMapKey`s for server-side apply; empty for atomic lists; `["."]`-free: a set of
    /// primitives is flagged by `set`.
    pub map_keys: Vec<&'static str>,
    /// A list of primitives with set semantics (`listType=set`).
    pub set: bool,
}

impl ListMeta {
    fn atomic() -> Self {
        ListMeta { strategy: PatchStrategy::Replace, merge_key: None, map_keys: Vec::new(), set: false }
    }
    fn keyed(merge_key: &'static str, map_keys: &[&'static str]) -> Self {
        ListMeta { strategy: PatchStrategy::Merge, merge_key: Some(merge_key), map_keys: map_keys.to_vec(), set: false }
    }
    fn primitive_set() -> Self {
        ListMeta { strategy: PatchStrategy::Merge, merge_key: None, map_keys: Vec::new(), set: true }
    }
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// Patch metadata of the list at `path` (field names from the root) of a built-in kind.
pub fn list_meta(_api_version: &str, kind: &str, path: &[&str]) -> ListMeta {
    let Some((&last, parents)) = path.split_last() else {
        return ListMeta::atomic();
    };
    let parent = parents.last().copied().unwrap_or("");
    let in_container = CONTAINER_LISTS.contains(&parent);
    match (parents, last) {
        ([], _) => {}
        (["metadata"], "ownerReferences") => return ListMeta::keyed("uid", &["uid"]),
        (["metadata"], "finalizers") => return ListMeta::primitive_set(),
        _ => {}
    }
    if path.first() == Some(&"metadata") {
        return ListMeta::atomic();
    }
    match last {
        l if CONTAINER_LISTS.contains(&l) && parent == "spec" => ListMeta::keyed("name", &["name"]),
        "ports" if in_container => ListMeta::keyed("containerPort", &["containerPort", "protocol"]),
        "ports" if kind == "Service" && path == ["spec", "ports"] => ListMeta::keyed("port", &["port", "protocol"]),
        "env" if in_container => ListMeta::keyed("name", &["name"]),
        "volumeMounts" if in_container => ListMeta::keyed("mountPath", &["mountPath"]),
        "volumeDevices" if in_container => ListMeta::keyed("devicePath", &["devicePath"]),
        "resizePolicy" if in_container => ListMeta::atomic(),
        "volumes" if parent == "spec" => ListMeta::keyed("name", &["name"]),
        "imagePullSecrets" if parent == "spec" => ListMeta::keyed("name", &["name"]),
        "hostAliases" if parent == "spec" => ListMeta::keyed("ip", &["ip"]),
        "topologySpreadConstraints" if parent == "spec" => {
            ListMeta::keyed("topologyKey", &["topologyKey", "whenUnsatisfiable"])
        }
        "resourceClaims" if parent == "spec" => ListMeta::keyed("name", &["name"]),
        "schedulingGates" if parent == "spec" => ListMeta::keyed("name", &["name"]),
        "secrets" if kind == "ServiceAccount" && parents.is_empty() => ListMeta::keyed("name", &["name"]),
        "conditions" if parent == "status" => ListMeta::keyed("type", &["type"]),
        "taints" if kind == "Node" => ListMeta::keyed("key", &["key", "effect"]),
        _ => ListMeta::atomic(),
    }
}

/// Whether the map (or struct) at `path` of a built-in kind is atomic for server-side apply:
/// label selectors and a Service's selector are.
pub fn atomic_map(_api_version: &str, kind: &str, path: &[&str]) -> bool {
    match path.last() {
        Some(&"selector") => {
            // Every `selector` of the built-in workload kinds is a LabelSelector (atomic struct);
            // a Service's is `mapType=atomic`.
            let _ = kind;
            true
        }
        Some(&"labelSelector") | Some(&"namespaceSelector") | Some(&"nodeSelectorTerms") => true,
        _ => false,
    }
}

/// Whether `$retainKeys` is expected for the struct at `path` (Deployment strategy, volumes).
pub fn retain_keys(_api_version: &str, kind: &str, path: &[&str]) -> bool {
    matches!((kind, path), ("Deployment", ["spec", "strategy"])) || path.last() == Some(&"volumes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_associative_lists() {
        // (kind, path, merge key, list-map keys, atomic)
        type Case<'a> = (&'a str, Vec<&'a str>, Option<&'a str>, Vec<&'a str>, bool);
        let cases: Vec<Case> = vec![
            ("Pod", vec!["spec", "containers"], Some("name"), vec!["name"], false),
            ("Deployment", vec!["spec", "template", "spec", "initContainers"], Some("name"), vec!["name"], false),
            ("Deployment", vec!["spec", "template", "spec", "containers", "env"], Some("name"), vec!["name"], false),
            (
                "Pod",
                vec!["spec", "containers", "ports"],
                Some("containerPort"),
                vec!["containerPort", "protocol"],
                false,
            ),
            ("Service", vec!["spec", "ports"], Some("port"), vec!["port", "protocol"], false),
            ("Pod", vec!["spec", "containers", "volumeMounts"], Some("mountPath"), vec!["mountPath"], false),
            ("Pod", vec!["spec", "volumes"], Some("name"), vec!["name"], false),
            ("ConfigMap", vec!["metadata", "ownerReferences"], Some("uid"), vec!["uid"], false),
            ("Deployment", vec!["status", "conditions"], Some("type"), vec!["type"], false),
            ("Secret", vec!["metadata", "finalizers"], None, vec![], true),
            ("Pod", vec!["spec", "tolerations"], None, vec![], false),
            ("ClusterRole", vec!["rules"], None, vec![], false),
            ("RoleBinding", vec!["subjects"], None, vec![], false),
            ("Ingress", vec!["spec", "rules"], None, vec![], false),
            ("Pod", vec!["spec", "containers", "args"], None, vec![], false),
            ("Service", vec!["status", "loadBalancer", "ingress"], None, vec![], false),
        ];
        for (kind, path, key, keys, set) in cases {
            let m = list_meta("v1", kind, &path);
            assert_eq!((m.merge_key, m.map_keys.clone(), m.set), (key, keys, set), "{kind} {path:?}");
            let merging = key.is_some() || set;
            assert_eq!(m.strategy == PatchStrategy::Merge, merging, "{kind} {path:?}");
        }
    }

    #[test]
    fn selectors_are_atomic_maps() {
        assert!(atomic_map("apps/v1", "Deployment", &["spec", "selector"]));
        assert!(atomic_map("v1", "Service", &["spec", "selector"]));
        assert!(!atomic_map("v1", "ConfigMap", &["data"]));
        assert!(!atomic_map("v1", "Pod", &["metadata", "labels"]));
    }
}
