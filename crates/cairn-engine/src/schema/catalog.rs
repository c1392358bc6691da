//! The types this cairn knows, portable and target-specific, and how a
//! kind finds its schema and its target.

use super::aws::AWS;
use super::definition::ResourceSchema;
use super::portable::PORTABLE;

/// Target-specific types, by target. A type's kind starts with its
/// target's name and a dot.
const TARGET_SPECIFIC: &[(&str, &[ResourceSchema])] = &[("aws", AWS)];

/// The schema of a portable type.
pub fn portable(kind: &str) -> Option<&'static ResourceSchema> {
    PORTABLE.iter().find(|s| s.kind == kind)
}

pub fn portable_kinds() -> Vec<&'static str> {
    PORTABLE.iter().map(|s| s.kind).collect()
}

/// The schema of any type this cairn knows: portable or target-specific.
/// Use this wherever "this kind's schema" is meant; [`portable`] only where
/// the portable types alone are meant.
pub fn lookup(kind: &str) -> Option<&'static ResourceSchema> {
    portable(kind).or_else(|| {
        TARGET_SPECIFIC
            .iter()
            .flat_map(|(_, schemas)| schemas.iter())
            .find(|s| s.kind == kind)
    })
}

/// The one target a target-specific type deploys to (`aws` for
/// `aws.iam_role`); `None` for a portable type or one this cairn does not know.
pub fn target_of(kind: &str) -> Option<&'static str> {
    TARGET_SPECIFIC
        .iter()
        .find(|(_, schemas)| schemas.iter().any(|s| s.kind == kind))
        .map(|(target, _)| *target)
}

/// Every target-specific type, `aws.iam_role` style.
pub fn target_kinds() -> Vec<&'static str> {
    TARGET_SPECIFIC
        .iter()
        .flat_map(|(_, schemas)| schemas.iter().map(|s| s.kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_type_has_a_schema_with_an_id() {
        for kind in [
            "network",
            "subnet",
            "firewall",
            "server",
            "ip_address",
            "load_balancer",
            "dns_zone",
            "dns_record",
            "database",
            "bucket",
            "secret",
            "key_pair",
            "volume",
            "snapshot",
            "image",
        ] {
            let s = portable(kind).unwrap_or_else(|| panic!("{kind} has no schema"));
            assert!(s.attribute("id").is_some(), "{kind} has no id");
            for p in s.properties {
                if let Some(d) = p.default {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(d).is_ok(),
                        "{kind}.{} default",
                        p.name
                    );
                }
            }
        }
    }

    #[test]
    fn computed_attributes_match_across_targets() {
        assert!(portable("server").unwrap().attribute("address").is_some());
        assert!(
            portable("server")
                .unwrap()
                .attribute("private_ip")
                .is_some()
        );
        for a in ["address", "port", "dns_name"] {
            assert!(portable("load_balancer").unwrap().attribute(a).is_some());
        }
        for a in ["endpoint", "port"] {
            assert!(portable("database").unwrap().attribute(a).is_some());
        }
        assert!(portable("dns_record").unwrap().attribute("fqdn").is_some());
    }

    #[test]
    fn data_holding_types() {
        let holding: Vec<_> = PORTABLE
            .iter()
            .filter(|s| s.data_holding)
            .map(|s| s.kind)
            .collect();
        assert_eq!(holding, ["database", "bucket", "secret", "volume"]);
    }

    #[test]
    fn lookup_knows_portable_and_target_specific_types() {
        assert_eq!(lookup("server").map(|s| s.kind), Some("server"));
        for kind in ["aws.iam_role", "aws.iam_instance_profile"] {
            let s = lookup(kind).unwrap_or_else(|| panic!("{kind} has no schema"));
            assert_eq!(s.kind, kind);
            assert!(s.attribute("id").is_some() && s.attribute("arn").is_some());
            assert!(portable(kind).is_none(), "{kind} is not portable");
            for p in s.properties {
                if let Some(d) = p.default {
                    assert!(serde_json::from_str::<serde_json::Value>(d).is_ok());
                }
            }
        }
        assert!(lookup("aws.route_table").is_none());
        assert!(lookup("sever").is_none());
        assert_eq!(target_kinds(), ["aws.iam_role", "aws.iam_instance_profile"]);
    }

    #[test]
    fn target_of_names_the_one_target_of_a_specific_type() {
        assert_eq!(target_of("aws.iam_role"), Some("aws"));
        assert_eq!(target_of("aws.iam_instance_profile"), Some("aws"));
        assert_eq!(target_of("server"), None);
        assert_eq!(target_of("aws.nothing"), None);
        assert!(
            target_kinds()
                .iter()
                .all(|k| k.starts_with(&format!("{}.", target_of(k).unwrap())))
        );
    }
}
