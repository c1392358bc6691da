//! The zone model and the hickory catalog built from it.
//!
//! Invariant: `State::catalog` always answers exactly what `State::zones`
//! holds. A new zone (or a restore) builds its zone handler on the side and
//! commits zone, handler and catalog together under the write lock. A
//! record set's change is checked first, then applied to the zone's live
//! handler in place (that record set and the SOA, swapped under the
//! handler's own lock): its cost does not grow with the zone, where
//! rebuilding the handler made 10,000 records cost minutes. A failed edit
//! changes nothing and the next query sees a successful one.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use hickory_server::{
    net::runtime::TokioRuntimeProvider,
    proto::rr::{
        LowerName, Name, RData, Record, RecordSet as HickorySet, RecordType as HickoryType, RrKey,
        rdata::NS, rdata::SOA,
    },
    store::in_memory::InMemoryZoneHandler,
    zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType},
};

use super::error::DnsError;
use super::model::{
    DEFAULT_NS_TTL, MAX_TTL, NEGATIVE_TTL, RecordSet, RecordType, ZoneSnapshot, ZonesSnapshot,
};
use super::value::{display_name, owner_name, parse_value, zone_origin};

/// The zones the local DNS server is authoritative for. A cheap handle:
/// clones share the same zones, so the daemon keeps one and gives one to
/// [`serve`](super::serve).
#[derive(Clone, Default)]
pub struct Zones {
    state: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    zones: BTreeMap<Name, Zone>,
    /// What the server answers from; replaced whole on every change.
    catalog: Arc<Catalog>,
}

#[derive(Clone)]
struct Zone {
    origin: Name,
    serial: u32,
    rrsets: Rrsets,
    handler: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
}

/// A zone's record sets by owner name (lowercase, absolute) and type.
type Rrsets = BTreeMap<(Name, RecordType), Rrset>;

/// A record set as given (for snapshots and reads) and as parsed.
#[derive(Clone)]
struct Rrset {
    spec: RecordSet,
    owner: Name,
    data: Vec<RData>,
}

impl std::fmt::Debug for Zones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zones")
            .field("zones", &self.zone_names())
            .finish_non_exhaustive()
    }
}

impl Zones {
    pub fn new() -> Self {
        Self::default()
    }

    /// A model holding exactly what `snapshot` holds.
    pub fn from_snapshot(snapshot: &ZonesSnapshot) -> Result<Self, DnsError> {
        let zones = Self::new();
        zones.restore(snapshot)?;
        Ok(zones)
    }

    /// Creates the zone if it does not exist; an existing zone keeps its
    /// records. Accepts `example.test` and `example.test.`.
    pub fn upsert_zone(&self, zone: &str) -> Result<(), DnsError> {
        let origin = zone_origin(zone)?;
        let mut state = self.write();
        if state.zones.contains_key(&origin) {
            return Ok(());
        }
        let zone = Zone::build(origin.clone(), 1, BTreeMap::new())?;
        tracing::info!(zone = %display_name(&origin), "DNS zone created");
        state.zones.insert(origin, zone);
        state.rebuild_catalog();
        Ok(())
    }

    /// Removes the zone and its records; its names are REFUSED from the next
    /// query on. Returns whether the zone existed.
    pub fn remove_zone(&self, zone: &str) -> Result<bool, DnsError> {
        let origin = zone_origin(zone)?;
        let mut state = self.write();
        if state.zones.remove(&origin).is_none() {
            return Ok(false);
        }
        state.rebuild_catalog();
        tracing::info!(zone = %display_name(&origin), "DNS zone removed");
        Ok(true)
    }

    /// Creates or replaces the record set `record.name`/`record.rtype` in the
    /// zone with exactly `record.values` (Route 53's UPSERT). Setting what is
    /// already there changes nothing, not even the SOA serial.
    pub fn upsert_record(&self, zone: &str, record: RecordSet) -> Result<(), DnsError> {
        let origin = zone_origin(zone)?;
        let mut state = self.write();
        let current = state.zone(&origin)?;
        let rrset = Rrset::parse(&origin, record)?;
        let key = (rrset.owner.clone(), rrset.spec.rtype);
        if current
            .rrsets
            .get(&key)
            .is_some_and(|old| old.spec == rrset.spec)
        {
            return Ok(());
        }
        check_cname_rules(&current.rrsets, &rrset)?;
        state.change(&origin, key, Some(rrset))
    }

    /// Removes the record set `name`/`rtype` from the zone. Returns whether it
    /// existed.
    pub fn remove_record(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
    ) -> Result<bool, DnsError> {
        let origin = zone_origin(zone)?;
        let owner = owner_name(&origin, name)?;
        let mut state = self.write();
        let current = state.zone(&origin)?;
        let key = (owner, rtype);
        if !current.rrsets.contains_key(&key) {
            return Ok(false);
        }
        state.change(&origin, key, None)?;
        Ok(true)
    }

    /// The names of all zones (`example.test`), sorted.
    pub fn zone_names(&self) -> Vec<String> {
        let state = self.read();
        state
            .zones
            .values()
            .map(|z| display_name(&z.origin))
            .collect()
    }

    /// The record sets of a zone, as they were given.
    pub fn records(&self, zone: &str) -> Result<Vec<RecordSet>, DnsError> {
        let origin = zone_origin(zone)?;
        let state = self.read();
        let zone = state.zone(&origin)?;
        Ok(zone.rrsets.values().map(|r| r.spec.clone()).collect())
    }

    /// One record set of a zone, as it was given; `None` if it does not exist.
    pub fn record(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
    ) -> Result<Option<RecordSet>, DnsError> {
        let origin = zone_origin(zone)?;
        let owner = owner_name(&origin, name)?;
        let state = self.read();
        let zone = state.zone(&origin)?;
        Ok(zone.rrsets.get(&(owner, rtype)).map(|r| r.spec.clone()))
    }

    /// Everything the server serves, in a stable order.
    pub fn snapshot(&self) -> ZonesSnapshot {
        let state = self.read();
        ZonesSnapshot {
            zones: state
                .zones
                .values()
                .map(|zone| ZoneSnapshot {
                    name: display_name(&zone.origin),
                    serial: zone.serial,
                    records: zone.rrsets.values().map(|r| r.spec.clone()).collect(),
                })
                .collect(),
        }
    }

    /// Replaces everything with the contents of `snapshot`, SOA serials
    /// included. All or nothing: on error the current zones stay.
    pub fn restore(&self, snapshot: &ZonesSnapshot) -> Result<(), DnsError> {
        let mut zones = BTreeMap::new();
        for zone in &snapshot.zones {
            let origin = zone_origin(&zone.name)?;
            // Validate through the same rules as edits, record by record.
            let mut rrsets = BTreeMap::new();
            for record in &zone.records {
                let rrset = Rrset::parse(&origin, record.clone())?;
                check_cname_rules(&rrsets, &rrset)?;
                let key = (rrset.owner.clone(), rrset.spec.rtype);
                if rrsets.insert(key, rrset).is_some() {
                    return Err(DnsError::InvalidRecord {
                        record: record_label(&origin, record),
                        reason: "listed twice in the snapshot".into(),
                    });
                }
            }
            let built = Zone::build(origin.clone(), zone.serial, rrsets)?;
            match zones.entry(origin) {
                Entry::Vacant(slot) => {
                    slot.insert(built);
                }
                Entry::Occupied(_) => {
                    return Err(DnsError::InvalidZoneName {
                        zone: zone.name.clone(),
                        reason: "listed twice in the snapshot".into(),
                    });
                }
            }
        }
        let mut state = self.write();
        state.zones = zones;
        state.rebuild_catalog();
        Ok(())
    }

    /// The catalog current at this instant, for one query.
    pub(super) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.read().catalog)
    }

    // A panic while the lock is held cannot leave `State` half-edited
    // (edits are built aside and committed by assignment), so a poisoned
    // lock still guards consistent data.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The absolute name of record `name` in `zone`, without the final dot
/// (`www.example.test`): the `fqdn` attribute of a `dns_record`.
pub fn record_fqdn(zone: &str, name: &str) -> Result<String, DnsError> {
    let origin = zone_origin(zone)?;
    Ok(display_name(&owner_name(&origin, name)?))
}

impl State {
    fn zone(&self, origin: &Name) -> Result<&Zone, DnsError> {
        self.zones.get(origin).ok_or_else(|| DnsError::UnknownZone {
            zone: display_name(origin),
        })
    }

    /// Replaces the zone's records, bumping its serial, and publishes it.
    fn commit(&mut self, origin: Name, rrsets: Rrsets) -> Result<(), DnsError> {
        let serial = self.zone(&origin)?.serial.wrapping_add(1).max(1);
        let zone = Zone::build(origin.clone(), serial, rrsets)?;
        self.zones.insert(origin, zone);
        self.rebuild_catalog();
        Ok(())
    }

    /// Sets (or, with `None`, removes) one record set of the zone and bumps
    /// its serial, in the live handler.
    fn change(
        &mut self,
        origin: &Name,
        key: (Name, RecordType),
        new: Option<Rrset>,
    ) -> Result<(), DnsError> {
        // The apex NS decides whether the zone's default NS is there: a
        // change to it rebuilds the zone.
        if key == (origin.clone(), RecordType::Ns) {
            let mut rrsets = self.zone(origin)?.rrsets.clone();
            match new {
                Some(rrset) => rrsets.insert(key, rrset),
                None => rrsets.remove(&key),
            };
            return self.commit(origin.clone(), rrsets);
        }
        let zone = self.zone(origin)?;
        let serial = zone.serial.wrapping_add(1).max(1);
        let old_type = zone
            .rrsets
            .get(&key)
            .and_then(|r| r.data.first())
            .map(RData::record_type);
        let new_set = new.as_ref().map(|r| r.hickory(serial)).transpose()?;
        let soa = soa_record(origin, serial);
        let mut soa_set = HickorySet::new(origin.clone(), HickoryType::SOA, serial);
        soa_set.insert(soa, serial);
        {
            let mut records = block_on(zone.handler.records_mut());
            let owner = LowerName::from(&key.0);
            if let Some(t) = old_type {
                records.remove(&RrKey::new(owner.clone(), t));
            }
            if let Some(set) = new_set {
                records.insert(RrKey::new(owner, set.record_type()), Arc::new(set));
            }
            records.insert(
                RrKey::new(LowerName::from(origin), HickoryType::SOA),
                Arc::new(soa_set),
            );
        }
        let zone = self.zones.get_mut(origin).expect("looked up above");
        zone.serial = serial;
        match new {
            Some(rrset) => zone.rrsets.insert(key, rrset),
            None => zone.rrsets.remove(&key),
        };
        Ok(())
    }

    fn rebuild_catalog(&mut self) {
        let mut catalog = Catalog::new();
        for zone in self.zones.values() {
            let handler: Arc<dyn ZoneHandler> = zone.handler.clone();
            catalog.upsert(zone.origin.clone().into(), vec![handler]);
        }
        self.catalog = Arc::new(catalog);
    }
}

impl Zone {
    /// The zone with its synthetic SOA (and apex NS unless the zone has its
    /// own), loaded into a fresh hickory zone handler.
    fn build(origin: Name, serial: u32, rrsets: Rrsets) -> Result<Self, DnsError> {
        let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        // The server runs on loopback, so it names itself `localhost.`.
        let localhost = Name::from_ascii("localhost.").expect("a valid name");
        let mut records = vec![soa_record(&origin, serial)];
        if !rrsets.contains_key(&(origin.clone(), RecordType::Ns)) {
            records.push(Record::from_rdata(
                origin.clone(),
                DEFAULT_NS_TTL,
                RData::NS(NS(localhost)),
            ));
        }
        for record in records {
            if !handler.upsert_mut(record, serial) {
                return Err(DnsError::InvalidZoneName {
                    zone: display_name(&origin),
                    reason: "the DNS server could not create the zone's SOA and NS records".into(),
                });
            }
        }
        for rrset in rrsets.values() {
            for data in &rrset.data {
                let record = Record::from_rdata(rrset.owner.clone(), rrset.spec.ttl, data.clone());
                // `check_cname_rules` already refused what hickory refuses.
                if !handler.upsert_mut(record, serial) {
                    return Err(DnsError::InvalidRecord {
                        record: format!("{} {}", display_name(&rrset.owner), rrset.spec.rtype),
                        reason: "the DNS server refused this record".into(),
                    });
                }
            }
        }
        Ok(Self {
            origin,
            serial,
            rrsets,
            handler: Arc::new(handler),
        })
    }
}

/// The zone's synthetic SOA at `serial`. The server runs on loopback, so
/// it names itself `localhost.`.
fn soa_record(origin: &Name, serial: u32) -> Record {
    let localhost = Name::from_ascii("localhost.").expect("a valid name");
    let hostmaster = Name::from_ascii("hostmaster")
        .and_then(|n| n.append_domain(origin))
        .unwrap_or_else(|_| origin.clone());
    let soa = SOA::new(
        localhost,
        hostmaster,
        serial,
        3600,
        600,
        86400,
        NEGATIVE_TTL,
    );
    Record::from_rdata(origin.clone(), NEGATIVE_TTL, RData::SOA(soa))
}

/// Waits for a future that completes as soon as a lock is free: the zone
/// handler's write lock, which DNS queries hold for microseconds. The
/// zones are edited from synchronous code under their own lock, and the
/// handler offers its records only through an async lock. Unconstrained:
/// inside a Tokio task a lock answers Pending once the task's cooperative
/// budget is spent, and this loop never yields to the scheduler that
/// would refill it.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(tokio::task::unconstrained(f));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

impl Rrset {
    /// The record set as the zone handler holds it.
    fn hickory(&self, serial: u32) -> Result<HickorySet, DnsError> {
        let rtype = self
            .data
            .first()
            .map(RData::record_type)
            .unwrap_or(HickoryType::A);
        let mut set = HickorySet::new(self.owner.clone(), rtype, serial);
        for data in &self.data {
            let record = Record::from_rdata(self.owner.clone(), self.spec.ttl, data.clone());
            if !set.insert(record, serial) && set.is_empty() {
                return Err(DnsError::InvalidRecord {
                    record: format!("{} {}", display_name(&self.owner), self.spec.rtype),
                    reason: "the DNS server refused this record".into(),
                });
            }
        }
        Ok(set)
    }

    fn parse(origin: &Name, spec: RecordSet) -> Result<Self, DnsError> {
        let owner = owner_name(origin, &spec.name)?;
        let label = format!("{} {}", display_name(&owner), spec.rtype);
        let invalid = |reason: &str| DnsError::InvalidRecord {
            record: label.clone(),
            reason: reason.to_owned(),
        };
        if spec.ttl > MAX_TTL {
            return Err(invalid(&format!(
                "TTL {} is larger than the maximum {MAX_TTL}",
                spec.ttl
            )));
        }
        if spec.values.is_empty() {
            return Err(invalid("no values; a record set needs at least one"));
        }
        if spec.rtype == RecordType::Cname {
            if spec.values.len() > 1 {
                return Err(invalid(&format!(
                    "a CNAME has exactly one value, got {}",
                    spec.values.len()
                )));
            }
            if owner == *origin {
                return Err(invalid(
                    "a CNAME cannot be at the zone apex (\"@\"), which holds the zone's SOA and NS records",
                ));
            }
        }
        let data = spec
            .values
            .iter()
            .map(|value| parse_value(&label, spec.rtype, origin, value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { spec, owner, data })
    }
}

/// A CNAME must be the only record at its name (RFC 1034 section 3.6.2).
fn check_cname_rules(rrsets: &Rrsets, rrset: &Rrset) -> Result<(), DnsError> {
    let others: Vec<RecordType> = rrsets
        .keys()
        .filter(|(owner, rtype)| *owner == rrset.owner && *rtype != rrset.spec.rtype)
        .map(|(_, rtype)| *rtype)
        .collect();
    let conflict = if rrset.spec.rtype == RecordType::Cname {
        others.first().copied()
    } else {
        others.into_iter().find(|t| *t == RecordType::Cname)
    };
    match conflict {
        None => Ok(()),
        Some(other) => Err(DnsError::InvalidRecord {
            record: format!("{} {}", display_name(&rrset.owner), rrset.spec.rtype),
            reason: format!(
                "{} already has a {other} record, and a CNAME must be the only record at its name",
                display_name(&rrset.owner)
            ),
        }),
    }
}

/// `www.example.test MX` for a record set given in the zone at `origin`.
fn record_label(origin: &Name, record: &RecordSet) -> String {
    let name = owner_name(origin, &record.name)
        .map(|n| display_name(&n))
        .unwrap_or_else(|_| record.name.clone());
    format!("{name} {}", record.rtype)
}
