//! DNS zones and records as the cloud's resources.

use std::collections::BTreeMap;

use cairn_engine::provider::*;
use cairn_engine::schema::Kind;
use serde_json::json;

use crate::cloud::*;
use crate::dns::RecordType;

use super::support::*;

#[tokio::test]
async fn zones_and_records_follow_the_resources_and_come_back_after_a_restart() {
    let (f, cloud) = fixture("dns");
    let zone = cloud
        .create(req("dns_zone", "zone", json!({"name": "example.test"})))
        .await
        .unwrap();
    let www = cloud
        .create(req(
            "dns_record",
            "www",
            json!({"zone": zone.id, "name": "www", "type": "A", "ttl": 60, "values": ["127.42.0.9"]}),
        ))
        .await
        .unwrap();
    assert_eq!(www.attributes["fqdn"], "www.example.test");
    let got = cloud
        .zones()
        .record("example.test", "www", RecordType::A)
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.ttl, got.values.clone()),
        (60, vec!["127.42.0.9".to_string()])
    );
    let bad = cloud
        .create(req(
            "dns_record",
            "bad",
            json!({"zone": zone.id, "name": "mx", "type": "MX", "values": ["mail.example.test."]}),
        ))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("PREFERENCE"), "{bad}");
    let dup = cloud
        .create(req("dns_zone", "zone2", json!({"name": "example.test."})))
        .await
        .unwrap_err();
    assert!(matches!(dup, ProviderError::Conflict(_)));

    // Update in place: the next answer has the new value.
    cloud
        .update(UpdateRequest {
            deployment: "d".into(),
            address: "www".into(),
            kind: Kind::DnsRecord,
            id: www.id.clone(),
            prior: json!({}),
            properties: json!({"zone": zone.id, "name": "www", "type": "A", "ttl": 60, "values": ["127.42.0.10"]}),
            tags: BTreeMap::new(),
            changed: vec!["values".into()],
            token: "u".into(),
            sensitive: Vec::new(),
        })
        .await
        .unwrap();
    drop(cloud);
    let cloud = Cloud::open(LocalDirs::new(&f.root), vec![]).unwrap();
    assert!(!has_www(&cloud));
    assert!(cloud.restore().await.is_empty());
    let back = cloud
        .zones()
        .record("example.test", "www", RecordType::A)
        .unwrap()
        .unwrap();
    assert_eq!(back.values, ["127.42.0.10"]);
    remove(&cloud, "dns_record", www.id).await;
    assert!(!has_www(&cloud));
}

/// Whether the cloud's DNS holds an A record for www.example.test.
fn has_www(cloud: &Cloud) -> bool {
    cloud
        .zones()
        .record("example.test", "www", RecordType::A)
        .ok()
        .flatten()
        .is_some()
}
