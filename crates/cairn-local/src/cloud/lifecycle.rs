//! The cloud over the daemon's life: what a start brings back from the
//! record, and what a stop takes down (the record stays).

use std::net::Ipv4Addr;
use std::time::Duration;

use cairn_engine::provider::Json;
use cairn_engine::schema::Kind;
use serde_json::json;

use super::base::Cloud;
use super::model::LocalResource;
use super::props::prop_str;
use super::services;

impl Cloud {
    /// Brings back what the recorded resources run: zones and their
    /// records, then the servers' processes (after a restart).
    pub async fn restore(&self) -> Vec<String> {
        let (zones, records, servers, lbs, databases, publics) = {
            let st = self.lock();
            let of = |k: &str| -> Vec<LocalResource> { st.of_kind(k).cloned().collect() };
            (
                of("dns_zone"),
                of("dns_record"),
                of("server"),
                of("load_balancer"),
                of("database"),
                of("ip_address"),
            )
        };
        let mut problems = Vec::new();
        for z in &zones {
            if let Err(e) = self
                .zones
                .upsert_zone(prop_str(&z.properties, "name").unwrap_or_default())
            {
                problems.push(format!("{}: {e}", z.id));
            }
        }
        for r in &records {
            if let Err(e) = self.put_record(&r.properties) {
                problems.push(format!("{}: {e}", r.id));
            }
        }
        if let Some(hosts) = &self.hosts {
            problems.extend(hosts.restore(&self.snapshot()).await);
        } else {
            for r in servers {
                if let Err(e) = self.servers.start(self.server_spec(&r)) {
                    problems.push(e.to_string());
                    continue;
                }
                let ip = r.ip.unwrap_or(Ipv4Addr::LOCALHOST);
                if let Err(e) = self.agents.start_process(&r.id, ip) {
                    problems.push(e);
                }
            }
        }
        for r in databases {
            let ip = r.ip.unwrap_or(Ipv4Addr::LOCALHOST);
            if let Err(e) = self.start_database(&r.id, ip, &r.properties).await {
                problems.push(format!("{}: {e}", r.id));
                continue;
            }
            if self.hosts.is_none() {
                continue;
            }
            let had = r
                .attributes
                .get("address")
                .and_then(Json::as_str)
                .and_then(|a| a.parse().ok());
            match self.reach_database(&r.id, ip, &r.properties, had).await {
                // The link moved (its block was taken while the cloud was
                // stopped): the endpoint the deployment knows is stale.
                Ok(now) if had != Some(now) => {
                    let endpoint = format!("{now}:{}", services::DB_PORT);
                    problems.push(format!(
                        "{}: the database now answers at {endpoint} (was {}): the cloud's link \
                         moved; the next `cairn up` reads the new endpoint",
                        r.id,
                        had.map_or("-".to_string(), |a| a.to_string())
                    ));
                    self.set_attributes(
                        &r.id,
                        json!({"endpoint": endpoint, "address": now.to_string()}),
                    );
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", r.id)),
            }
        }
        for r in lbs {
            let port = r.attributes.get("port").and_then(Json::as_u64).unwrap_or(0) as u16;
            let at = r.ip.or(Some(Ipv4Addr::LOCALHOST));
            match self.start_lb(&r.id, at, port, &r.properties).await {
                // A `runc` balancer whose link moved (its block was taken
                // while the cloud was stopped), or one an earlier cairn
                // put on loopback: the address the deployment knows is
                // stale.
                Ok((now, _)) if r.ip != Some(now) => {
                    problems.push(format!(
                        "{}: the load balancer now listens at {now} (was {}): the next `cairn                          up` reads the new address",
                        r.id,
                        r.ip.map_or("-".to_string(), |a| a.to_string())
                    ));
                    self.move_ip(&r.id, now);
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", r.id)),
            }
        }
        for r in publics {
            let ip = r.ip.unwrap_or(Ipv4Addr::LOCALHOST);
            if let Err(e) = self.associate(&r.id, ip, &r.properties).await {
                problems.push(format!("{}: {e}", r.id));
            }
        }
        // Again, now that the load balancers have their addresses.
        if let Err(e) = self.refresh_host_firewall(Kind::LoadBalancer).await {
            problems.push(e.to_string());
        }
        problems
    }

    /// Stops everything the cloud runs (the resources stay recorded).
    pub async fn shutdown(&self) {
        let publics: Vec<String> = self
            .publics
            .lock()
            .expect("publics lock")
            .keys()
            .cloned()
            .collect();
        for id in publics {
            self.disassociate(&id).await;
        }
        let lbs: Vec<String> = self.lbs.lock().expect("lbs lock").keys().cloned().collect();
        for id in lbs {
            self.stop_lb(&id).await;
        }
        let databases: Vec<LocalResource> = self.lock().of_kind("database").cloned().collect();
        for db in databases {
            if let Err(e) = self.stop_database(&db, false).await {
                tracing::warn!("stopping {}: {e}", db.id);
            }
        }
        self.servers.stop_all(Duration::from_secs(5)).await;
        if let Some(hosts) = &self.hosts {
            hosts.shutdown().await;
        }
        self.agents.shutdown().await;
    }
}
