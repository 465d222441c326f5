//! Interning of parameter descriptions made at run time (control thread only).
//!
//! Node types list their parameters as `&'static [ParamSpec]`, so that the audio thread, the
//! OSC address space and MIDI learn share one description without copies. A node whose
//! parameters come from a file (the `onnx` node reads them from its model's manifest) makes
//! them once here: each distinct string and each distinct list is leaked once and reused after,
//! so reloading a patch a thousand times costs nothing more than loading it once.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::param::ParamSpec;

static STRINGS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
static OPTION_LISTS: Mutex<Vec<&'static [&'static str]>> = Mutex::new(Vec::new());
static SPEC_LISTS: Mutex<Vec<&'static [ParamSpec]>> = Mutex::new(Vec::new());

/// `s` as a `&'static str`, the same one for equal strings.
pub fn intern_str(s: &str) -> &'static str {
    let mut set = STRINGS.lock().unwrap_or_else(|e| e.into_inner());
    let set = set.get_or_insert_with(HashSet::new);
    if let Some(&found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// A list of choices (an `Enum` parameter's options) as a static slice.
pub fn intern_options(options: &[&str]) -> &'static [&'static str] {
    let mut lists = OPTION_LISTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&found) = lists
        .iter()
        .find(|l| l.len() == options.len() && l.iter().zip(options).all(|(a, b)| a == b))
    {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(options.iter().map(|s| intern_str(s)).collect::<Vec<_>>().into_boxed_slice());
    lists.push(leaked);
    leaked
}

/// A parameter list as a static slice, the same one for equal lists.
pub fn intern_specs(specs: Vec<ParamSpec>) -> &'static [ParamSpec] {
    let mut lists = SPEC_LISTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&found) = lists.iter().find(|l| ***l == specs[..]) {
        return found;
    }
    let leaked: &'static [ParamSpec] = Box::leak(specs.into_boxed_slice());
    lists.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_inputs_give_the_same_static_values() {
        let a = intern_str(&format!("drive{}", 1));
        let b = intern_str("drive1");
        assert!(std::ptr::eq(a, b));
        let specs = || vec![ParamSpec::float(intern_str("x"), 0.0, 1.0, 0.5, "", "")];
        let (s1, s2) = (intern_specs(specs()), intern_specs(specs()));
        assert!(std::ptr::eq(s1, s2));
        let other = intern_specs(vec![ParamSpec::float(intern_str("x"), 0.0, 2.0, 0.5, "", "")]);
        assert!(!std::ptr::eq(s1, other));
        let o = intern_options(&["a", "b"]);
        assert!(std::ptr::eq(o, intern_options(&["a", "b"])));
        assert_eq!(o, &["a", "b"]);
    }
}
