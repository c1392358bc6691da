//! The resources that run something besides a server's process: load
//! balancers (a proxy task each), databases (a PostgreSQL cluster each),
//! and key pairs (generated ed25519 keys).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use cairn_engine::provider::{Json, ProviderError, ProviderResult};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::balancer::{RunningLb, is_root, lb_config};
use super::base::Cloud;
use super::dirs::remove_dir;
use super::firewall;
use super::model::{CloudState, LocalResource};
use super::props::{permanent, prop_str};
use crate::lb::{LbConfig, LoadBalancer};
use crate::postgres::{Cluster, ClusterSpec};

/// PostgreSQL's port.
pub const DB_PORT: u16 = 5432;

impl Cloud {
    /// Binds the listener and starts proxying; returns where it listens.
    /// A port below 1024 maps to a free high port when cairn is not root
    /// (the `port` attribute says which). With `process` isolation it
    /// listens at `at`, its loopback address. With `runc` isolation it
    /// listens at its address on the cloud's link (`at`, the one recorded,
    /// when still free there; see `Hosts::lb_address`), which servers
    /// reach too, and connects to backends from it.
    pub(super) async fn start_lb(
        &self,
        id: &str,
        at: Option<Ipv4Addr>,
        wanted: u16,
        p: &Json,
    ) -> ProviderResult<(Ipv4Addr, u16)> {
        let config = lb_config(p)?;
        let ip = match &self.hosts {
            // Added to the link before the bind below.
            Some(hosts) => hosts.lb_address(id, at).await?,
            None => at.ok_or_else(|| permanent(format!("load balancer {id} has no address")))?,
        };
        let listening = self.listen_lb(id, ip, wanted, config, p).await;
        if listening.is_err()
            && let Some(hosts) = &self.hosts
        {
            hosts.release_lb_address(id).await;
        }
        listening.map(|port| (ip, port))
    }

    async fn listen_lb(
        &self,
        id: &str,
        ip: Ipv4Addr,
        wanted: u16,
        config: LbConfig,
        p: &Json,
    ) -> ProviderResult<u16> {
        let port = if wanted < 1024 && !is_root() {
            0
        } else {
            wanted
        };
        // tokio's bind sets SO_REUSEADDR: a daemon started again within a
        // minute of traffic finds the last one's connections in TIME-WAIT
        // on this address and port, which a socket without it (or one whose
        // accepted connections lacked it) cannot bind past.
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, port)))
            .await
            .map_err(|e| {
                ProviderError::Conflict(format!("load balancer cannot listen on {ip}:{port}: {e}"))
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| permanent(e.to_string()))?
            .port();
        let lb = LoadBalancer::new(config);
        if self.hosts.is_some() {
            lb.set_source(Some(ip));
        }
        // Set before the first accept: a restored balancer is never open
        // for a moment to sources its firewalls refuse.
        let (access, problems) = firewall::lb_access(&self.lock(), p);
        for problem in problems {
            tracing::warn!("load balancer {id}: {problem}");
        }
        lb.set_access(access);
        let cancel = CancellationToken::new();
        let (lb2, stop) = (lb.clone(), cancel.clone());
        let task = tokio::spawn(async move { lb2.serve(listener, stop).await });
        self.lbs
            .lock()
            .expect("lbs lock")
            .insert(id.to_string(), RunningLb { lb, cancel, task });
        Ok(port)
    }

    /// Applies new settings. Backends change make-before-break: when some
    /// leave and others join, the newcomers are added first and those
    /// leaving stay in until every newcomer passes its health check (or a
    /// few intervals pass), so replacing every server behind a balancer
    /// never leaves it with no healthy backend for a moment.
    pub(super) async fn update_lb(&self, id: &str, p: &Json) -> ProviderResult<()> {
        let config = lb_config(p)?;
        let access = Self::check_access(&self.lock(), p)?;
        let Some(lb) = self
            .lbs
            .lock()
            .expect("lbs lock")
            .get(id)
            .map(|r| r.lb.clone())
        else {
            return Ok(());
        };
        lb.set_access(access);
        let current = lb.config();
        let has = |list: &[crate::lb::Backend], b: &crate::lb::Backend| {
            list.iter().any(|x| x.addr == b.addr)
        };
        let joining: Vec<SocketAddr> = config
            .backends
            .iter()
            .filter(|b| !has(&current.backends, b))
            .map(|b| b.addr)
            .collect();
        let leaving: Vec<crate::lb::Backend> = current
            .backends
            .iter()
            .filter(|b| !has(&config.backends, b))
            .cloned()
            .collect();
        if !joining.is_empty() && !leaving.is_empty() && config.health.enabled() {
            let mut bridge = config.clone();
            bridge.backends.extend(leaving);
            lb.update(bridge);
            let h = &config.health;
            let patience = (h.interval * 2 + h.timeout).min(Duration::from_secs(30));
            let deadline = tokio::time::Instant::now() + patience;
            while tokio::time::Instant::now() < deadline {
                let status = lb.status();
                let ready = joining
                    .iter()
                    .all(|a| status.iter().any(|s| s.addr == *a && s.healthy));
                if ready {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        lb.update(config);
        Ok(())
    }

    /// The sources a load balancer being made or changed lets in; a
    /// firewall it names that does not resolve is the caller's mistake.
    pub(super) fn check_access(state: &CloudState, p: &Json) -> ProviderResult<crate::lb::Access> {
        let (access, problems) = firewall::lb_access(state, p);
        if problems.is_empty() {
            Ok(access)
        } else {
            Err(permanent(format!(
                "load balancer firewalls: {}",
                problems.join("; ")
            )))
        }
    }

    /// Brings every running balancer's access in line with the state: a
    /// firewall's rules changed, or a server joined or left a firewall that
    /// a rule names as its source. Both locks are held (state, then
    /// balancers: the only nesting of the two) so that of two changes
    /// racing, the later state is the one applied.
    pub(super) fn refresh_access(&self) {
        let state = self.lock();
        let lbs = self.lbs.lock().expect("lbs lock");
        for (id, running) in lbs.iter() {
            if let Some(r) = state.resources.get(id) {
                let (access, _) = firewall::lb_access(&state, &r.properties);
                running.lb.set_access(access);
            }
        }
        drop(lbs);
        self.refresh_public_access(&state);
    }

    pub(super) async fn stop_lb(&self, id: &str) {
        let running = self.lbs.lock().expect("lbs lock").remove(id);
        if let Some(r) = running {
            r.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), r.task).await;
        }
        if let Some(hosts) = &self.hosts {
            hosts.release_lb_address(id).await;
        }
    }

    pub(super) fn lb_status(&self, id: &str) -> Option<Json> {
        self.lbs
            .lock()
            .expect("lbs lock")
            .get(id)
            .map(|r| serde_json::to_value(r.lb.status()).unwrap_or_default())
    }

    /// The backends' health of a load balancer, for `cairn local status`.
    pub fn load_balancer_status(&self, id: &str) -> Option<Json> {
        self.lb_status(id)
    }

    fn cluster_spec(&self, id: &str, ip: Ipv4Addr, p: &Json) -> ClusterSpec {
        ClusterSpec {
            data_dir: self.dirs.of("database", id).join("data"),
            socket_dir: self.dirs.of("database", id).join("socket"),
            address: ip,
            port: DB_PORT,
            owner: prop_str(p, "owner").unwrap_or("app").to_string(),
            password: prop_str(p, "owner_password")
                .unwrap_or_default()
                .to_string(),
            database: prop_str(p, "database").unwrap_or("app").to_string(),
        }
    }

    /// initdb (first time) and start; ready when the owner can log in.
    pub(super) async fn start_database(
        &self,
        id: &str,
        ip: Ipv4Addr,
        p: &Json,
    ) -> ProviderResult<()> {
        let mut cluster =
            Cluster::new(self.cluster_spec(id, ip, p)).map_err(|e| permanent(e.to_string()))?;
        cluster.init().await.map_err(|e| permanent(e.to_string()))?;
        cluster
            .start()
            .await
            .map_err(|e| permanent(e.to_string()))?;
        Ok(())
    }

    /// With `runc` isolation, makes database `id` (PostgreSQL on `ip`)
    /// answer at an address of its own in the cloud namespace, which
    /// servers and the machine reach (see `isolation::databases`), and
    /// returns it: `wanted` when it is free (its address before a restart).
    /// Its firewall rules are in place before it listens, so it is never
    /// open for a moment to a source they refuse. Without `runc`, `ip`.
    pub(super) async fn reach_database(
        &self,
        id: &str,
        ip: Ipv4Addr,
        p: &Json,
        wanted: Option<Ipv4Addr>,
    ) -> ProviderResult<Ipv4Addr> {
        let Some(hosts) = &self.hosts else {
            return Ok(ip);
        };
        let address = hosts.reserve_database_address(id, wanted).await?;
        hosts.stage_database(database_record(id, ip, p));
        let ruled = hosts.apply_firewall(|| self.snapshot()).await;
        let served = match ruled {
            Ok(()) => {
                hosts
                    .serve_database(id, SocketAddr::from((ip, DB_PORT)))
                    .await
            }
            Err(e) => {
                hosts.stop_serving_database(id).await;
                Err(e)
            }
        };
        served.map(|()| address)
    }

    pub(super) async fn stop_database(
        &self,
        r: &LocalResource,
        destroy: bool,
    ) -> ProviderResult<()> {
        if let Some(hosts) = &self.hosts {
            hosts.stop_serving_database(&r.id).await;
        }
        let ip = r.ip.unwrap_or(Ipv4Addr::LOCALHOST);
        let mut cluster = Cluster::new(self.cluster_spec(&r.id, ip, &r.properties))
            .map_err(|e| permanent(e.to_string()))?;
        if destroy {
            cluster
                .destroy()
                .await
                .map_err(|e| ProviderError::Transient(e.to_string()))?;
            remove_dir(&self.dirs.of("database", &r.id))
        } else {
            cluster
                .stop()
                .await
                .map(|_| ())
                .map_err(|e| ProviderError::Transient(e.to_string()))
        }
    }
}

/// A database's record before it is made (its properties and loopback
/// address, what its rules and its cluster need).
pub fn database_record(id: &str, ip: Ipv4Addr, p: &Json) -> LocalResource {
    LocalResource {
        id: id.to_string(),
        kind: "database".into(),
        deployment: String::new(),
        address: String::new(),
        token: String::new(),
        properties: p.clone(),
        attributes: json!({}),
        tags: Default::default(),
        ip: Some(ip),
        sensitive: Vec::new(),
    }
}

/// A new ed25519 key pair (or an imported public key): attributes with the
/// OpenSSH public key, its fingerprint, and the private key (secret).
pub fn key_pair(p: &Json) -> ProviderResult<Json> {
    use ssh_key::private::{Ed25519Keypair, KeypairData};
    use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};
    if let Some(given) = prop_str(p, "public_key") {
        let public = PublicKey::from_openssh(given)
            .map_err(|e| permanent(format!("`public_key` is not an OpenSSH public key: {e}")))?;
        return Ok(json!({
            "public_key": given.trim(),
            "fingerprint": public.fingerprint(HashAlg::Sha256).to_string(),
            "private_key": Json::Null,
        }));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| permanent(format!("no randomness for a key: {e}")))?;
    let pair = Ed25519Keypair::from_seed(&seed);
    let comment = prop_str(p, "name").unwrap_or("cairn");
    let private = PrivateKey::new(KeypairData::Ed25519(pair), comment)
        .map_err(|e| permanent(e.to_string()))?;
    let public = private.public_key();
    Ok(json!({
        "public_key": public.to_openssh().map_err(|e| permanent(e.to_string()))?,
        "fingerprint": public.fingerprint(HashAlg::Sha256).to_string(),
        "private_key": private.to_openssh(LineEnding::LF).map_err(|e| permanent(e.to_string()))?.to_string(),
    }))
}
