//! The cloud's `dns_zone` and `dns_record` resources as the zones the
//! daemon serves take them.

use cairn_engine::provider::{Json, ProviderResult};
use cairn_engine::schema::dns::DnsRecord as DnsRecordProps;

use super::base::Cloud;
use super::props::{permanent, prop_str};
use crate::dns::{RecordSet, RecordType, record_fqdn};

impl Cloud {
    /// The zone name of a `dns_record`'s `zone` (an id).
    pub(super) fn zone_name(&self, p: &Json) -> ProviderResult<String> {
        let record = DnsRecordProps::read(p).map_err(|e| permanent(format!("dns record {e}")))?;
        let zone = self.get(&record.zone, "dns_zone")?;
        Ok(prop_str(&zone.properties, "name")
            .unwrap_or_default()
            .to_string())
    }

    /// The record set a `dns_record`'s properties describe, read in the
    /// engine's typed model (the one the aws target reads too).
    pub(super) fn record_set(p: &Json) -> ProviderResult<RecordSet> {
        use cairn_engine::schema::dns::RecordType as Portable;
        let record = DnsRecordProps::read(p).map_err(|e| permanent(format!("dns record {e}")))?;
        Ok(RecordSet {
            name: record.name,
            rtype: match record.rtype {
                Portable::A => RecordType::A,
                Portable::Aaaa => RecordType::Aaaa,
                Portable::Cname => RecordType::Cname,
                Portable::Txt => RecordType::Txt,
                Portable::Mx => RecordType::Mx,
                Portable::Ns => RecordType::Ns,
                Portable::Srv => RecordType::Srv,
                Portable::Caa => RecordType::Caa,
            },
            ttl: record.ttl,
            values: record.values,
        })
    }

    pub(super) fn put_record(&self, p: &Json) -> ProviderResult<String> {
        let zone = self.zone_name(p)?;
        let set = Self::record_set(p)?;
        let fqdn = record_fqdn(&zone, &set.name).map_err(|e| permanent(e.to_string()))?;
        self.zones
            .upsert_record(&zone, set)
            .map_err(|e| permanent(e.to_string()))?;
        Ok(fqdn)
    }
}
