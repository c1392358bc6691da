//! firewall → security group. Rules go both ways between the template's
//! shape (`{protocol, port|ports, from|to, description}`) and EC2's
//! permissions, so `read` reports rules exactly as a template writes them
//! and a rule added behind cairn's back shows as a property difference.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, ResourceType, UserIdGroupPair};
use cairn_engine::provider::*;
use serde_json::json;

use crate::ec2::{retag, spec, tag_map, with_name};
use crate::error::{classify, gone};
use crate::model::*;
use crate::network::dependency_is_transient;
use crate::provider::AwsProvider;

/// Which way a rule goes; the engine reads rules the same way for every
/// target (`cairn_engine::schema::firewall`).
pub use cairn_engine::schema::firewall::Direction;

/// One rule, one peer: the unit both sides agree on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    pub ports: Option<(i32, i32)>,
    /// A CIDR block or a security group id.
    pub peer: String,
    pub description: Option<String>,
}

impl Rule {
    /// The rule as the engine reads it (and checked when the template was
    /// evaluated), in EC2's terms: a TCP or UDP rule naming no port opens
    /// every port.
    pub fn from_template(v: &Json, dir: Direction) -> ProviderResult<Rule> {
        let rule = cairn_engine::schema::firewall::read_rule(dir, v)
            .map_err(|e| permanent(format!("a firewall rule: {e}")))?;
        let ports = match rule.ports {
            Some(r) => Some((i32::from(r.first), i32::from(r.last))),
            None if rule.protocol.has_ports() => Some((0, 65535)),
            None => None,
        };
        Ok(Rule {
            protocol: rule.protocol.as_str().to_string(),
            ports,
            peer: rule.peer,
            description: rule.description,
        })
    }

    /// The template's shape, every key present as after defaults.
    pub fn to_template(&self, dir: Direction) -> Json {
        let (port, ports) = match self.ports {
            Some((a, b)) if a == b => (json!(a), Json::Null),
            Some((a, b)) => (Json::Null, json!(format!("{a}-{b}"))),
            None => (Json::Null, Json::Null),
        };
        let (from, to) = match dir {
            Direction::Ingress => (json!(self.peer), Json::Null),
            Direction::Egress => (Json::Null, json!(self.peer)),
        };
        json!({
            "protocol": self.protocol,
            "port": port,
            "ports": ports,
            "from": from,
            "to": to,
            "description": self.description,
        })
    }

    fn to_permission(&self) -> IpPermission {
        let proto = match self.protocol.as_str() {
            "all" => "-1",
            other => other,
        };
        let mut b = IpPermission::builder().ip_protocol(proto);
        match (self.protocol.as_str(), self.ports) {
            ("all", _) => {}
            (_, Some((from, to))) => b = b.from_port(from).to_port(to),
            // ICMP with no port: every type and code.
            (_, None) => b = b.from_port(-1).to_port(-1),
        }
        let desc = self.description.clone();
        if self.peer.starts_with("sg-") {
            b = b.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(&self.peer)
                    .set_description(desc)
                    .build(),
            );
        } else if self.peer.contains(':') {
            b = b.ipv6_ranges(
                Ipv6Range::builder()
                    .cidr_ipv6(&self.peer)
                    .set_description(desc)
                    .build(),
            );
        } else {
            b = b.ip_ranges(
                IpRange::builder()
                    .cidr_ip(&self.peer)
                    .set_description(desc)
                    .build(),
            );
        }
        b.build()
    }

    /// One EC2 permission holds many peers: one rule each.
    pub fn from_permission(perm: &IpPermission) -> Vec<Rule> {
        let protocol = match perm.ip_protocol().unwrap_or("-1") {
            "-1" => "all".to_string(),
            "6" => "tcp".to_string(),
            "17" => "udp".to_string(),
            "1" => "icmp".to_string(),
            other => other.to_string(),
        };
        let ports = match (protocol.as_str(), perm.from_port(), perm.to_port()) {
            ("all", ..) => None,
            (_, Some(-1), _) | (_, None, _) => None,
            (_, Some(a), Some(b)) => Some((a, b)),
            (_, Some(a), None) => Some((a, a)),
        };
        let rule = |peer: &str, description: Option<&str>| Rule {
            protocol: protocol.clone(),
            ports,
            peer: peer.to_string(),
            description: description.filter(|d| !d.is_empty()).map(str::to_string),
        };
        let mut out = Vec::new();
        for r in perm.ip_ranges() {
            out.push(rule(r.cidr_ip().unwrap_or_default(), r.description()));
        }
        for r in perm.ipv6_ranges() {
            out.push(rule(r.cidr_ipv6().unwrap_or_default(), r.description()));
        }
        for g in perm.user_id_group_pairs() {
            out.push(rule(g.group_id().unwrap_or_default(), g.description()));
        }
        out
    }
}

fn rules_of(p: &Json, key: &str, dir: Direction) -> ProviderResult<Vec<Rule>> {
    prop(p, key)
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|r| Rule::from_template(r, dir))
        .collect()
}

impl AwsProvider {
    pub(crate) async fn create_firewall(&self, req: &CreateRequest) -> ProviderResult<Json> {
        let p = &req.properties;
        let name = name_or_derived(req, 255);
        let description = prop_str(p, "description")
            .map(str::to_string)
            .unwrap_or_else(|| format!("cairn firewall {}", req.address));
        let tags = with_name(&create_tags(&req.tags, &req.token), prop_str(p, "name"));
        let out = self
            .c
            .ec2
            .create_security_group()
            .group_name(&name)
            .description(description)
            .vpc_id(required(p, "network")?)
            .tag_specifications(spec(ResourceType::SecurityGroup, &tags))
            .send()
            .await
            .map_err(|e| classify("CreateSecurityGroup", e))?;
        let id = out
            .group_id()
            .ok_or_else(|| permanent("CreateSecurityGroup returned no id"))?
            .to_string();
        // A new VPC security group has no ingress rule and one egress rule
        // (everything, to 0.0.0.0/0), as EC2 documents: no need to ask.
        let egress = Rule::from_template(
            &json!({"protocol": "all", "to": "0.0.0.0/0"}),
            Direction::Egress,
        )?;
        self.set_rules_from(&id, p, Vec::new(), vec![egress])
            .await?;
        Ok(json!({"id": id}))
    }

    /// The group's rules as EC2 holds them now.
    async fn current_rules(
        &self,
        id: &str,
    ) -> ProviderResult<Option<(Vec<Rule>, Vec<Rule>, Json)>> {
        // Groups read together (a refresh) share one call.
        let Some(g) = self.shared.security_groups.get(id).await? else {
            return Ok(None);
        };
        let ingress = g
            .ip_permissions()
            .iter()
            .flat_map(Rule::from_permission)
            .collect();
        let egress = g
            .ip_permissions_egress()
            .iter()
            .flat_map(Rule::from_permission)
            .collect();
        let info = json!({
            "name": g.group_name(),
            "network": g.vpc_id(),
            "description": g.description(),
            "tags": tag_map(g.tags()),
        });
        Ok(Some((ingress, egress, info)))
    }

    /// Makes the group's rules the template's: revokes what is not wanted
    /// (a rule added by hand included), authorises what is missing.
    async fn set_rules(&self, id: &str, p: &Json) -> ProviderResult<()> {
        let (cur_in, cur_out, _) = self
            .current_rules(id)
            .await?
            .ok_or_else(|| ProviderError::NotFound(format!("security group {id}")))?;
        self.set_rules_from(id, p, cur_in, cur_out).await
    }

    /// [`Self::set_rules`] from rules known to be the group's now.
    async fn set_rules_from(
        &self,
        id: &str,
        p: &Json,
        cur_in: Vec<Rule>,
        cur_out: Vec<Rule>,
    ) -> ProviderResult<()> {
        for (dir, key, current) in [
            (Direction::Ingress, "ingress", cur_in),
            (Direction::Egress, "egress", cur_out),
        ] {
            let want = rules_of(p, key, dir)?;
            let revoke: Vec<IpPermission> = current
                .iter()
                .filter(|r| !want.contains(r))
                .map(Rule::to_permission)
                .collect();
            let add: Vec<IpPermission> = want
                .iter()
                .filter(|r| !current.contains(r))
                .map(Rule::to_permission)
                .collect();
            tracing::debug!(
                id,
                ?dir,
                revoke = revoke.len(),
                add = add.len(),
                "firewall rules"
            );
            if !revoke.is_empty() {
                match dir {
                    Direction::Ingress => self
                        .c
                        .ec2
                        .revoke_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(revoke))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| classify("RevokeSecurityGroupIngress", e))?,
                    Direction::Egress => self
                        .c
                        .ec2
                        .revoke_security_group_egress()
                        .group_id(id)
                        .set_ip_permissions(Some(revoke))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| classify("RevokeSecurityGroupEgress", e))?,
                }
            }
            if !add.is_empty() {
                match dir {
                    Direction::Ingress => self
                        .c
                        .ec2
                        .authorize_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(add))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| classify("AuthorizeSecurityGroupIngress", e))?,
                    Direction::Egress => self
                        .c
                        .ec2
                        .authorize_security_group_egress()
                        .group_id(id)
                        .set_ip_permissions(Some(add))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| classify("AuthorizeSecurityGroupEgress", e))?,
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn read_firewall(&self, id: &str) -> ProviderResult<Option<Observed>> {
        let Some((ingress, egress, info)) = self.current_rules(id).await? else {
            return Ok(None);
        };
        let tags: BTreeMap<String, String> =
            serde_json::from_value(info["tags"].clone()).unwrap_or_default();
        let mut p = blank(Kind::Firewall);
        p.insert("name".into(), info["name"].clone());
        p.insert("network".into(), info["network"].clone());
        p.insert("description".into(), info["description"].clone());
        p.insert(
            "ingress".into(),
            Json::Array(
                ingress
                    .iter()
                    .map(|r| r.to_template(Direction::Ingress))
                    .collect(),
            ),
        );
        p.insert(
            "egress".into(),
            Json::Array(
                egress
                    .iter()
                    .map(|r| r.to_template(Direction::Egress))
                    .collect(),
            ),
        );
        Ok(Some(Observed {
            properties: Json::Object(p),
            attributes: json!({"id": id}),
            tags,
        }))
    }

    pub(crate) async fn update_firewall(&self, req: &UpdateRequest) -> ProviderResult<Json> {
        self.set_rules(&req.id, &req.properties).await?;
        retag(
            &self.c,
            &req.id,
            &with_name(&req.tags, prop_str(&req.properties, "name")),
        )
        .await?;
        Ok(json!({"id": req.id}))
    }

    pub(crate) async fn delete_firewall(&self, id: &str) -> ProviderResult<()> {
        let r = self
            .c
            .ec2
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .map_err(|e| classify("DeleteSecurityGroup", e));
        gone(r).map_err(dependency_is_transient)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_rules_survive_the_round_trip() {
        let filled = |r: Json| {
            let mut base = json!({"protocol": "tcp", "port": null, "ports": null, "from": null, "to": null, "description": null});
            for (k, v) in r.as_object().unwrap() {
                base[k] = v.clone();
            }
            base
        };
        for (dir, rule) in [
            (Direction::Ingress, json!({"port": 80, "from": "0.0.0.0/0"})),
            (
                Direction::Ingress,
                json!({"ports": "8000-8100", "from": "sg-123", "description": "app"}),
            ),
            (
                Direction::Ingress,
                json!({"protocol": "icmp", "from": "10.0.0.0/8"}),
            ),
            (
                Direction::Egress,
                json!({"protocol": "all", "to": "0.0.0.0/0"}),
            ),
            (
                Direction::Ingress,
                json!({"protocol": "udp", "port": 53, "from": "::/0"}),
            ),
        ] {
            let want = filled(rule);
            let r = Rule::from_template(&want, dir).unwrap();
            let back = Rule::from_permission(&r.to_permission());
            assert_eq!(back, vec![r.clone()]);
            assert_eq!(back[0].to_template(dir), want);
        }
    }

    #[test]
    fn a_rule_needs_its_peer() {
        assert!(Rule::from_template(&json!({"port": 22}), Direction::Ingress).is_err());
    }
}
