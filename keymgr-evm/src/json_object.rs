//! A JSON object whose keys are unique: serde_json keeps the last of repeated keys
//! silently, which would sign a value the reviewer may not have seen.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::RequestError;

/// Parses `text` as one JSON object, refusing repeated keys at its top level.
pub(crate) fn parse_unique(text: &str) -> Result<Map<String, Value>, RequestError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de.deserialize_map(UniqueVisitor);
    let map = match parsed {
        Ok(Ok(map)) => map,
        Ok(Err(duplicate)) => return Err(RequestError::DuplicateField { field: duplicate }),
        Err(e) => {
            return Err(RequestError::NotJson {
                reason: e.to_string(),
            });
        }
    };
    de.end().map_err(|e| RequestError::NotJson {
        reason: e.to_string(),
    })?;
    Ok(map)
}

/// Visits the top-level map; the inner `Err` carries the first repeated key.
struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Result<Map<String, Value>, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        let mut duplicate = None;
        // Read to the end either way, so the parser's own checks still run.
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            if map.contains_key(&key) {
                duplicate.get_or_insert(key);
            } else {
                map.insert(key, value);
            }
        }
        Ok(duplicate.map_or(Ok(map), Err))
    }
}
