//! Whether a live object still holds what the operator applied. The API server adds defaults, status
//! and metadata, drops zero values, and rewrites quantities in canonical form ("1000m" comes back as
//! "1"); none of that is drift. A field the operator sets that someone changed or removed (`kubectl
//! edit`, a stray apply) is.
//!
//! A difference an apply cannot remove (a list element another field manager owns, a normalisation
//! this module does not know) is bounded by `apply`, which tries once per generation of the object.

use serde_json::Value;

/// The path of the first field `desired` sets that `live` does not hold with the same value, if any.
/// Lists must match element by element (the operator owns whole lists: containers, ports, env); an
/// empty list or map the operator sets may be absent, since the API server drops them.
pub fn first_difference(live: &Value, desired: &Value) -> Option<String> {
    difference(live, desired, false)
}

/// Keys under which strings are Kubernetes quantities (resource requests and limits, HPA targets).
const QUANTITY_KEYS: &[&str] = &["resources", "limits", "requests", "averageValue"];

fn difference(live: &Value, desired: &Value, quantities: bool) -> Option<String> {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, w)| match have.get(key) {
            Some(h) => difference(h, w, quantities || QUANTITY_KEYS.contains(&key.as_str()))
                .map(|inner| join(key, &inner)),
            None => (!is_empty(w)).then(|| key.clone()),
        }),
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            want.iter().zip(have).enumerate().find_map(|(i, (w, h))| {
                difference(h, w, quantities).map(|inner| join(&format!("[{i}]"), &inner))
            })
        }
        (want, Value::Null) if is_empty(want) => None,
        (Value::String(want), Value::String(have))
            if want == have || (quantities && same_quantity(want, have)) =>
        {
            None
        }
        (want, have) => (want != have).then(String::new),
    }
}

fn join(head: &str, rest: &str) -> String {
    match rest.chars().next() {
        None => head.to_string(),
        Some('[') => format!("{head}{rest}"),
        Some(_) => format!("{head}.{rest}"),
    }
}

/// What the API server stores as absent: null, false, zero and empty strings, lists and maps.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
    }
}

/// Whether two strings are the same Kubernetes quantity written differently ("1000m" and "1",
/// "1024Mi" and "1Gi"). Strings that are not quantities never match this way.
fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity(a), quantity(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * 16.0 * x.abs().max(y.abs()),
        _ => false,
    }
}

/// The value of a quantity in base units: a decimal number with an optional binary (Ki..Ei), decimal
/// (n, u, m, k, M..E) or exponent (e3) suffix.
fn quantity(s: &str) -> Option<f64> {
    let split =
        s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    if split == 0 {
        return None;
    }
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "" => 1.0,
        exponent => 10f64.powi(exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_the_api_server_adds_are_not_drift() {
        let desired =
            json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "s", "args": []}]}}});
        let live = json!({
            "spec": {"replicas": 2, "progressDeadlineSeconds": 600,
                     "template": {"containers": [{"name": "s", "imagePullPolicy": "IfNotPresent"}]}},
            "status": {"readyReplicas": 2}
        });
        assert_eq!(first_difference(&live, &desired), None);
    }

    #[test]
    fn a_changed_or_removed_field_is_drift() {
        let desired = json!({"spec": {"replicas": 2, "template": {"containers": [{"image": "a:1"}]}}});
        let edited = json!({"spec": {"replicas": 2, "template": {"containers": [{"image": "a:2"}]}}});
        assert_eq!(first_difference(&edited, &desired).as_deref(), Some("spec.template.containers[0].image"));
        let removed = json!({"spec": {"template": {"containers": [{"image": "a:1"}]}}});
        assert_eq!(first_difference(&removed, &desired).as_deref(), Some("spec.replicas"));
        let extra =
            json!({"spec": {"replicas": 2, "template": {"containers": [{"image": "a:1"}, {"image": "b"}]}}});
        assert_eq!(first_difference(&extra, &desired).as_deref(), Some("spec.template.containers"));
    }

    #[test]
    fn zero_values_the_api_server_drops_are_not_drift() {
        let desired =
            json!({"volumeMounts": [{"name": "m", "readOnly": false, "subPath": ""}], "hostPort": 0});
        assert_eq!(first_difference(&json!({"volumeMounts": [{"name": "m"}]}), &desired), None);
    }

    #[test]
    fn quantities_in_canonical_form_are_the_same_value() {
        let limits = |v: Value| json!({"resources": {"limits": v}});
        let same = |live: Value, desired: Value| first_difference(&limits(live), &limits(desired)).is_none();
        assert!(same(json!({"cpu": "1"}), json!({"cpu": "1000m"})));
        assert!(same(json!({"memory": "1Gi"}), json!({"memory": "1024Mi"})));
        assert!(same(json!({"memory": "1k"}), json!({"memory": "1e3"})));
        assert!(!same(json!({"cpu": "2"}), json!({"cpu": "1000m"})));
        assert!(!same(json!({"image": "m1"}), json!({"image": "1m"})));
    }

    #[test]
    fn outside_resources_a_number_written_differently_is_drift() {
        let env = |v: &str| json!({"env": [{"name": "BATCH", "value": v}]});
        assert_eq!(first_difference(&env("1000"), &env("1k")).as_deref(), Some("env[0].value"));
    }
}
