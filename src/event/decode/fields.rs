//! Typed extraction from a JSON object for the general decoding path: each getter removes its key
//! and, when the value has the wrong type, returns a [`Rejection`] naming the key path (`error.type`)
//! and what was expected. Absent and `null` are the same.

use super::{reject, truncate_utf8};
use crate::event::{Reason, Rejection};
use serde_json::{Map, Value};

/// How a JSON value's type is named in messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed extraction from a JSON object, with the key path in every message.
pub(super) struct Fields<'a> {
    pub(super) m: &'a mut Map<String, Value>,
    /// Prefix of every key in messages (`"error."` for the nested `error` object).
    pub(super) path: &'static str,
}

impl Fields<'_> {
    fn bad_type(&self, key: &str, expected: &str, got: &Value) -> Rejection {
        let shown = match got {
            Value::String(s) => format!("{s:?}"),
            other => {
                let mut t = other.to_string();
                truncate_utf8(&mut t, 80);
                t
            }
        };
        reject(Reason::BadType, format!("field \"{}{key}\": expected {expected}, got {shown}", self.path))
    }

    pub(super) fn req(&mut self, key: &str) -> Result<Value, Rejection> {
        match self.m.remove(key) {
            None | Some(Value::Null) => {
                Err(reject(Reason::MissingField, format!("field \"{}{key}\" is required", self.path)))
            }
            Some(v) => Ok(v),
        }
    }

    fn opt(&mut self, key: &str) -> Option<Value> {
        match self.m.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn string(&self, key: &str, v: Value) -> Result<String, Rejection> {
        match v {
            Value::String(s) => Ok(s),
            other => Err(self.bad_type(key, "a string", &other)),
        }
    }

    pub(super) fn req_str(&mut self, key: &str) -> Result<String, Rejection> {
        let v = self.req(key)?;
        self.string(key, v)
    }

    pub(super) fn opt_str(&mut self, key: &str) -> Result<Option<String>, Rejection> {
        self.opt(key).map(|v| self.string(key, v)).transpose()
    }

    fn u64(&self, key: &str, v: Value) -> Result<u64, Rejection> {
        match &v {
            Value::Number(n) => n.as_u64().ok_or_else(|| self.bad_type(key, "an integer >= 0", &v)),
            _ => Err(self.bad_type(key, "an integer >= 0", &v)),
        }
    }

    pub(super) fn req_u64(&mut self, key: &str) -> Result<u64, Rejection> {
        let v = self.req(key)?;
        self.u64(key, v)
    }

    pub(super) fn opt_u64(&mut self, key: &str) -> Result<Option<u64>, Rejection> {
        self.opt(key).map(|v| self.u64(key, v)).transpose()
    }

    pub(super) fn opt_i64(&mut self, key: &str) -> Result<Option<i64>, Rejection> {
        match self.opt(key) {
            None => Ok(None),
            Some(v) => match &v {
                Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64()),
                _ => Err(self.bad_type(key, "an integer >= -1", &v)),
            },
        }
    }

    pub(super) fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, Rejection> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.bad_type(key, "true or false", &other)),
        }
    }

    pub(super) fn opt_str_list(&mut self, key: &str) -> Result<Option<Vec<String>>, Rejection> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    other => Err(self.bad_type(key, "an array of strings", &other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.bad_type(key, "an array of strings", &other)),
        }
    }

    pub(super) fn opt_object(&mut self, key: &str) -> Result<Option<Map<String, Value>>, Rejection> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(self.bad_type(key, "an object", &other)),
        }
    }

    pub(super) fn deny_rest(&self) -> Result<(), Rejection> {
        match self.m.keys().next() {
            None => Ok(()),
            Some(k) => Err(reject(
                Reason::UnknownField,
                format!("field \"{}{k}\" is not part of schema v1 (see docs/events.md)", self.path),
            )),
        }
    }
}
