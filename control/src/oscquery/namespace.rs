//! The OSCQuery namespace as JSON (control thread builds it; the connection threads look paths
//! up in it): every parameter of the running patch with its type, range, value and doc, its
//! `/norm` form, and the fixed commands.

use std::collections::HashMap;

use serde_json::{json, Value};
use stagebox_engine::param::{ParamKind, ParamValue};

use crate::osc::{ParamAddr, COMMANDS};

fn json_value(v: &ParamValue) -> Value {
    match v {
        ParamValue::Float(f) => json!(f),
        ParamValue::Int(i) => json!(i),
        ParamValue::Bool(b) => json!(b),
        ParamValue::Str(s) => json!(s),
    }
}

/// The namespace as OSCQuery JSON (control thread): every parameter of the running patch with
/// its type, range, value and doc, its `/norm` form, and the fixed commands.
pub fn namespace(params: &[ParamAddr], values: &HashMap<String, ParamValue>) -> Value {
    let mut root = json!({"FULL_PATH": "/", "ACCESS": 0, "CONTENTS": {}});
    let mut insert = |path: &str, leaf: Value| {
        let mut node = &mut root;
        let mut full = String::new();
        for part in path.trim_start_matches('/').split('/') {
            full.push('/');
            full.push_str(part);
            let contents = node.as_object_mut().unwrap().entry("CONTENTS").or_insert_with(|| json!({}));
            node = contents
                .as_object_mut()
                .unwrap()
                .entry(part.to_string())
                .or_insert_with(|| json!({"FULL_PATH": full.clone(), "ACCESS": 0}));
        }
        let obj = node.as_object_mut().unwrap();
        for (k, v) in leaf.as_object().unwrap() {
            obj.insert(k.clone(), v.clone());
        }
    };
    for p in params {
        let v = values.get(&p.address).cloned().unwrap_or_else(|| p.spec.default_value());
        let (ty, range, unit) = match p.spec.kind {
            ParamKind::Float { min, max, unit, .. } => ("f", json!([{"MIN": min, "MAX": max}]), unit),
            ParamKind::Int { min, max, .. } => ("i", json!([{"MIN": min, "MAX": max}]), ""),
            ParamKind::Bool { .. } => ("T", json!([{"MIN": 0, "MAX": 1}]), ""),
            ParamKind::Enum { options, .. } => (
                "i",
                json!([{"MIN": 0, "MAX": options.len().saturating_sub(1), "VALS": (0..options.len()).collect::<Vec<_>>()}]),
                "",
            ),
            ParamKind::Str { .. } => ("s", json!([null]), ""),
        };
        let mut desc = p.spec.doc.to_string();
        if let ParamKind::Enum { options, .. } = p.spec.kind {
            desc.push_str(&format!(
                " ({})",
                options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| format!("{i} = {o}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !p.spec.is_runtime() {
            desc.push_str(" [fixed when the node is built: setting it rebuilds the node]");
        }
        let mut leaf = json!({
            "TYPE": ty,
            "RANGE": range,
            "VALUE": [json_value(&v)],
            "ACCESS": 3,
            "DESCRIPTION": desc,
        });
        if !unit.is_empty() {
            leaf["UNIT"] = json!([unit]);
        }
        insert(&p.address, leaf);
        insert(
            &format!("/stagebox/node/{}", p.node),
            json!({"DESCRIPTION": format!("`{}` node of the running patch", p.kind)}),
        );
        if !matches!(p.spec.kind, ParamKind::Str { .. }) {
            insert(
                &format!("{}/norm", p.address),
                json!({"TYPE": "f", "RANGE": [{"MIN": 0.0, "MAX": 1.0}], "ACCESS": 2,
                       "DESCRIPTION": format!("{} as 0..1 over its range", p.spec.name)}),
            );
        }
    }
    for (addr, args, doc) in COMMANDS {
        insert(
            addr,
            json!({"ACCESS": 2, "DESCRIPTION": format!("{args} {doc}").trim().to_string()}),
        );
    }
    root
}

pub fn find<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = root;
    for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
        node = node.get("CONTENTS")?.get(part)?;
    }
    Some(node)
}
