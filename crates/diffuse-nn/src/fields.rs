//! The rule both diffusers config readers follow for fields beyond the ones they map: a field
//! whose feature diffuse does not implement is accepted only at the value that switches it off,
//! and a field it does not know is an error naming it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::NnError;

/// Checks `other` (the fields a config struct did not map): `_`-prefixed metadata and `inert`
/// fields pass; a field `only_value` names must hold that value; anything else is an error.
/// `note` is appended to the message for a wrong value; `class` names the config in the message
/// for an unknown field.
pub fn check_unmapped_fields(
    other: &BTreeMap<String, Value>,
    class: &str,
    only_value: impl Fn(&str) -> Option<Value>,
    inert: &[&str],
    note: &str,
) -> Result<(), NnError> {
    for (key, value) in other {
        if key.starts_with('_') || inert.contains(&key.as_str()) {
            continue;
        }
        let reason = match only_value(key) {
            Some(allowed) if *value == allowed => continue,
            Some(allowed) => format!("is {value}; diffuse supports only {allowed}{note}"),
            None => format!("is not a {class} field diffuse knows"),
        };
        return Err(NnError::UnsupportedField {
            field: key.clone(),
            reason,
        });
    }
    Ok(())
}
