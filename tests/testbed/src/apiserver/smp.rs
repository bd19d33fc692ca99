//! Strategic merge patch (`application/strategic-merge-patch+json`) for built-in kinds, as
//! `kubectl apply` sends it on a second client-side apply.
//!
//! Maps merge recursively and `null` deletes a key; lists are replaced unless the built-in kinds'
//! patch metadata ([`super::patchmeta`]) gives them the merge strategy: lists of objects then
//! merge item by item on their merge key (containers by `name`, ports by `containerPort`, ...),
//! lists of primitives (finalizers) are united. Directives: `$patch: replace | delete | merge`
//! (on maps and on list items), `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
//! `$setElementOrder/<field>`.
//!
//! Simplification: with `$setElementOrder`, items the patch does not order (present only on the
//! server) are placed after the ordered ones, keeping their relative order.
use super::patchmeta::{self, PatchStrategy};
use super::schema::json_equal;
use serde_json::{Map, Value};

/// Applies `patch` to `original` with the patch strategies and merge keys of the built-in kind
/// `api_version`/`kind`. Errors are messages for a 422/400 answer.
pub fn strategic_merge_patch(original: &Value, patch: &Value, api_version: &str, kind: &str) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Err(format!("unable to strategic merge patch: the patch is not a JSON object: {patch}"));
    };
    let ctx = Ctx { api_version, kind };
    let orig = original.as_object();
    match merge_map(orig, p, &ctx, &mut Vec::new())? {
        Some(m) => Ok(Value::Object(m)),
        None => Ok(Value::Object(Map::new())),
    }
}

struct Ctx<'a> {
    api_version: &'a str,
    kind: &'a str,
}

impl Ctx<'_> {
    fn meta(&self, names: &[String]) -> patchmeta::ListMeta {
        let path: Vec<&str> = names.iter().map(String::as_str).collect();
        patchmeta::list_meta(self.api_version, self.kind, &path)
    }
}

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Merges a patch map into an original map. `None` means the map is deleted (`$patch: delete`).
fn merge_map(
    orig: Option<&Map<String, Value>>,
    patch: &Map<String, Value>,
    ctx: &Ctx,
    names: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(s)) if s == "merge" => {}
        Some(Value::String(s)) if s == "delete" => return Ok(None),
        Some(Value::String(s)) if s == "replace" => return Ok(Some(strip_directives(patch))),
        Some(other) => {
            return Err(format!("Unknown patch type: {} in map: {}", display(other), Value::Object(patch.clone())));
        }
    }
    let mut out = orig.cloned().unwrap_or_default();

    // Values to delete from lists of primitives, and orders, keyed by field.
    let mut deletions: Vec<(&str, &Value)> = Vec::new();
    let mut orders: Vec<(&str, &Value)> = Vec::new();
    for (k, v) in patch {
        if let Some(f) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((f, v));
        } else if let Some(f) = k.strip_prefix(SET_ELEMENT_ORDER) {
            orders.push((f, v));
        }
    }

    for (k, pv) in patch {
        if k.starts_with('$') {
            continue;
        }
        names.push(k.clone());
        let result = match pv {
            Value::Null => {
                out.remove(k);
                None
            }
            Value::Object(pm) => {
                let om = out.get(k).and_then(Value::as_object);
                match merge_map(om, pm, ctx, names)? {
                    Some(m) => Some(Value::Object(m)),
                    None => {
                        out.remove(k);
                        None
                    }
                }
            }
            Value::Array(pl) => Some(merge_list(out.get(k), pl, ctx, names)?),
            scalar => Some(scalar.clone()),
        };
        names.pop();
        if let Some(v) = result {
            out.insert(k.clone(), v);
        }
    }

    for (f, values) in deletions {
        let Value::Array(del) = values else {
            return Err(format!("invalid value for {DELETE_FROM_PRIMITIVE_LIST}{f}: expected a list, got {values}"));
        };
        if let Some(Value::Array(list)) = out.get_mut(f) {
            list.retain(|item| !del.iter().any(|d| json_equal(d, item)));
        }
    }

    for (f, order) in orders {
        let Value::Array(order) = order else {
            return Err(format!("invalid value for {SET_ELEMENT_ORDER}{f}: expected a list, got {order}"));
        };
        names.push(f.to_string());
        let key = ctx.meta(names).merge_key;
        names.pop();
        if let Some(Value::Array(list)) = out.get_mut(f) {
            reorder(list, order, key);
        }
    }

    if let Some(rk) = patch.get(RETAIN_KEYS) {
        let Value::Array(keys) = rk else {
            return Err(format!("invalid value for {RETAIN_KEYS}: expected a list, got {rk}"));
        };
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        if keep.len() != keys.len() {
            return Err(format!("invalid value for {RETAIN_KEYS}: expected a list of strings, got {rk}"));
        }
        for k in patch.keys().filter(|k| !k.starts_with('$')) {
            if !keep.contains(&k.as_str()) && !patch[k].is_null() {
                return Err(format!("The patch has field {k} which is not in {RETAIN_KEYS}: {rk}"));
            }
        }
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(out))
}

fn merge_list(orig: Option<&Value>, patch: &[Value], ctx: &Ctx, names: &mut Vec<String>) -> Result<Value, String> {
    let meta = ctx.meta(names);
    let orig_list: Vec<Value> = orig.and_then(Value::as_array).cloned().unwrap_or_default();
    if meta.strategy == PatchStrategy::Replace {
        return Ok(Value::Array(patch.iter().map(strip_directives_value).collect()));
    }
    // `{"$patch": "replace"}` as an item: the other items replace the list.
    if patch.iter().any(|i| i.get(PATCH).and_then(Value::as_str) == Some("replace")) {
        let items = patch.iter().filter(|i| i.get(PATCH).is_none()).map(strip_directives_value).collect();
        return Ok(Value::Array(items));
    }
    let Some(key) = meta.merge_key else {
        // A list of primitives with the merge strategy: union, original order first.
        let mut out = orig_list;
        for item in patch {
            if item.is_object() {
                return Err(format!("merging a list of primitives: unexpected map item {item}"));
            }
            if !out.iter().any(|o| json_equal(o, item)) {
                out.push(item.clone());
            }
        }
        return Ok(Value::Array(out));
    };
    let mut out = orig_list;
    for item in patch {
        let Value::Object(pm) = item else {
            return Err(format!("merging a list of maps by \"{key}\": unexpected item {item}"));
        };
        let Some(kv) = pm.get(key) else {
            return Err(format!("map: {item} does not contain declared merge key: {key}"));
        };
        let pos = out.iter().position(|o| o.get(key).is_some_and(|ov| json_equal(ov, kv)));
        match pm.get(PATCH).and_then(Value::as_str) {
            Some("delete") => {
                out.retain(|o| !o.get(key).is_some_and(|ov| json_equal(ov, kv)));
                continue;
            }
            Some("merge") | Some("replace") | None => {}
            Some(other) => return Err(format!("Unknown patch type: {other} in map: {item}")),
        }
        match pos {
            Some(p) => {
                let merged = merge_map(out[p].as_object(), pm, ctx, names)?;
                match merged {
                    Some(m) => out[p] = Value::Object(m),
                    None => {
                        out.remove(p);
                    }
                }
            }
            None => {
                if let Some(m) = merge_map(None, pm, ctx, names)? {
                    out.push(Value::Object(m));
                }
            }
        }
    }
    Ok(Value::Array(out))
}

/// Orders `list` as `order` says (items matched by merge key, or by value for primitives);
/// items `order` does not name follow, in their current order.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let matches = |item: &Value, o: &Value| match key {
        Some(k) => match (item.get(k), o.get(k)) {
            (Some(a), Some(b)) => json_equal(a, b),
            _ => false,
        },
        None => json_equal(item, o),
    };
    let mut rest: Vec<Value> = std::mem::take(list);
    let mut ordered = Vec::with_capacity(rest.len());
    for o in order {
        if let Some(p) = rest.iter().position(|i| matches(i, o)) {
            ordered.push(rest.remove(p));
        }
    }
    ordered.extend(rest);
    *list = ordered;
}

fn strip_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives_value(v))).collect()
}

fn strip_directives_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m)),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives_value).collect()),
        other => other.clone(),
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
