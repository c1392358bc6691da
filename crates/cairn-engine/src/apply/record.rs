//! Between a template's instance, a provider's request and the state's
//! record: which values are public and which are secret.

use std::collections::BTreeMap;

use cairn_template::Value;

use crate::evaluate::Instance;
use crate::provider::Json;
use crate::schema::ResourceSchema;
use crate::store::ResourceRecord;

/// Splits an instance's values into public JSON and secrets by dotted path.
pub fn record_for(
    instance: &Instance,
    schema: &ResourceSchema,
    id: &str,
    attributes: &Json,
    depends_on: &[String],
) -> ResourceRecord {
    let mut properties = serde_json::Map::new();
    let mut secrets = BTreeMap::new();
    for (name, v) in &instance.properties {
        let json = v.to_json_revealed().unwrap_or(Json::Null);
        let secret = v.is_sensitive() || schema.property(name).is_some_and(|p| p.sensitive);
        if secret {
            secrets.insert(format!("properties.{name}"), json);
        } else {
            properties.insert(name.clone(), json);
        }
    }
    let mut attrs = serde_json::Map::new();
    if let Json::Object(a) = attributes {
        for (name, v) in a {
            if schema.attribute(name).is_some_and(|x| x.sensitive) {
                secrets.insert(format!("attributes.{name}"), v.clone());
            } else {
                attrs.insert(name.clone(), v.clone());
            }
        }
    }
    ResourceRecord {
        address: instance.address.clone(),
        kind: instance.kind.to_string(),
        id: id.to_string(),
        properties: Json::Object(properties),
        attributes: Json::Object(attrs),
        secrets,
        tags: tags_of(instance),
        depends_on: depends_on.to_vec(),
        data_holding: schema.data_holding,
        prevent_destroy: instance.lifecycle.prevent_destroy,
        create_before_destroy: instance.lifecycle.create_before_destroy,
    }
}

pub(super) fn tags_of(instance: &Instance) -> BTreeMap<String, String> {
    instance
        .tags
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// The record's properties kept as secrets.
pub(super) fn secret_property_names(r: &ResourceRecord) -> Vec<String> {
    r.secrets
        .keys()
        .filter_map(|path| path.strip_prefix("properties."))
        .map(str::to_string)
        .collect()
}

/// A record's properties with its secret ones put back, for a provider.
pub fn revealed_properties(r: &ResourceRecord) -> Json {
    let mut p = match &r.properties {
        Json::Object(o) => o.clone(),
        _ => serde_json::Map::new(),
    };
    for (path, v) in &r.secrets {
        if let Some(name) = path.strip_prefix("properties.") {
            p.insert(name.to_string(), v.clone());
        }
    }
    Json::Object(p)
}

pub(super) fn instance_properties(i: &Instance) -> Result<Json, String> {
    Value::Map(i.properties.clone())
        .to_json_revealed()
        .ok_or_else(|| {
            format!(
                "{}: a property is still unknown when it should be known",
                i.address
            )
        })
}
