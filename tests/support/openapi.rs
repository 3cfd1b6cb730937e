//! A small validator for request bodies against the schemas of E2B's published OpenAPI spec
//! (tests/data/e2b/openapi.yml): types, required fields, integer formats and minimums, and — stricter
//! than the spec — no properties the schema does not name, so a renamed or mistyped field fails.

use std::path::Path;

use serde_json::Value;

pub struct Spec {
    doc: Value,
}

impl Spec {
    pub fn e2b() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/e2b/openapi.yml");
        let text = std::fs::read_to_string(path).unwrap();
        let doc: Value = serde_norway::from_str(&text).expect("openapi.yml parses");
        Self { doc }
    }

    /// The JSON schema of the request body of `method path` (path as written in the spec).
    pub fn request_schema(&self, method: &str, path: &str) -> Value {
        let operation = &self.doc["paths"][path][method.to_lowercase()];
        assert!(!operation.is_null(), "the spec has no {method} {path}");
        operation["requestBody"]["content"]["application/json"]["schema"].clone()
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap();
                self.resolve(&self.doc["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    /// Every way `value` breaks `schema`, as readable lines (empty when it conforms).
    pub fn violations(&self, schema: &Value, value: &Value, at: &str) -> Vec<String> {
        let schema = self.resolve(schema);
        let mut out = Vec::new();
        if let Some(all) = schema["allOf"].as_array() {
            for part in all {
                out.extend(self.violations(part, value, at));
            }
            return out;
        }
        if value.is_null() {
            if schema["nullable"] != true {
                out.push(format!("{at}: null is not allowed"));
            }
            return out;
        }
        let ty = schema["type"]
            .as_str()
            .unwrap_or(if schema["properties"].is_object() {
                "object"
            } else {
                ""
            });
        let ok = match ty {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        if !ok {
            out.push(format!("{at}: expected {ty}, got {value}"));
            return out;
        }
        if ty == "integer" {
            let n = value.as_i64().unwrap_or(i64::MAX);
            if schema["format"] == "int32" && !(i32::MIN as i64..=i32::MAX as i64).contains(&n) {
                out.push(format!("{at}: {n} does not fit int32"));
            }
            if let Some(min) = schema["minimum"].as_i64() {
                if n < min {
                    out.push(format!("{at}: {n} is below the minimum {min}"));
                }
            }
        }
        if let Some(choices) = schema["enum"].as_array() {
            if !choices.contains(value) {
                out.push(format!("{at}: {value} is not one of {choices:?}"));
            }
        }
        if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
            for (i, v) in values.iter().enumerate() {
                out.extend(self.violations(items, v, &format!("{at}[{i}]")));
            }
        }
        if let Some(fields) = value.as_object() {
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                if !fields.contains_key(name) {
                    out.push(format!("{at}: required field {name} is missing"));
                }
            }
            let properties = schema["properties"].as_object();
            for (name, v) in fields {
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => {
                        out.extend(self.violations(property, v, &format!("{at}.{name}")))
                    }
                    None => match schema.get("additionalProperties") {
                        Some(extra) if extra.is_object() => {
                            out.extend(self.violations(extra, v, &format!("{at}.{name}")))
                        }
                        Some(Value::Bool(true)) => {}
                        _ => out.push(format!("{at}: the schema has no field {name}")),
                    },
                }
            }
        }
        out
    }
}
