//! The control API: `POST /v1/{create,read,update,delete,find,list}` with
//! the provider's request as JSON, `POST /v1/backend/{drain,restore,state}`
//! with a [`BackendCall`] (drain and restore of a load balancer's backend,
//! for releases), `GET /v1/status`. Every request must carry
//! `Authorization: Bearer <token>`; anything else is refused.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use cairn_engine::backend::BackendControl;
use cairn_engine::provider::{Provider, ProviderError, ProviderResult};

use super::wire::BackendCall;
use crate::cloud::Cloud;
use crate::http::serve_http1;

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Serialize) -> Reply {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("a JSON response is valid")
}

fn outcome<T: Serialize>(r: ProviderResult<T>) -> Reply {
    match r {
        Ok(v) => reply(StatusCode::OK, serde_json::json!({ "ok": v })),
        Err(e) => reply(StatusCode::OK, serde_json::json!({ "err": e })),
    }
}

async fn body<T: DeserializeOwned>(req: Request<hyper::body::Incoming>) -> Result<T, Reply> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| {
            reply(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| reply(StatusCode::BAD_REQUEST, format!("bad request: {e}")))
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    cloud: Arc<Cloud>,
    token: Arc<str>,
    stop: CancellationToken,
) -> Reply {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
    if !authorized {
        return reply(
            StatusCode::UNAUTHORIZED,
            "the local cloud needs the token from its directory",
        );
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    macro_rules! call {
        ($method:ident) => {
            match body(req).await {
                Ok(r) => outcome(cloud.$method(r).await),
                Err(e) => e,
            }
        };
    }
    match (method, path.as_str()) {
        (Method::GET, "/v1/status") => reply(StatusCode::OK, status(&cloud).await),
        (Method::POST, "/v1/create") => call!(create),
        (Method::POST, "/v1/read") => call!(read),
        (Method::POST, "/v1/update") => call!(update),
        (Method::POST, "/v1/delete") => call!(delete),
        (Method::POST, "/v1/find") => call!(find),
        (Method::POST, "/v1/list") => match body::<String>(req).await {
            Ok(d) => outcome(cloud.list(&d).await),
            Err(e) => e,
        },
        (Method::POST, "/v1/backend/drain") => match body::<BackendCall>(req).await {
            Ok(c) => {
                let timeout = c.timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT);
                // A drain may wait a while; a daemon told to stop answers
                // it at once rather than holding its shutdown up.
                tokio::select! {
                    r = BackendControl::drain(&*cloud, &c.lb_id, &c.backend, timeout) => outcome(r),
                    _ = stop.cancelled() => outcome::<()>(Err(ProviderError::Transient(
                        "the local cloud is stopping; the backend stays drained until it stops".into(),
                    ))),
                }
            }
            Err(e) => e,
        },
        (Method::POST, "/v1/backend/restore") => match body::<BackendCall>(req).await {
            Ok(c) => outcome(BackendControl::restore(&*cloud, &c.lb_id, &c.backend).await),
            Err(e) => e,
        },
        (Method::POST, "/v1/backend/state") => match body::<BackendCall>(req).await {
            Ok(c) => outcome(BackendControl::backend_state(&*cloud, &c.lb_id, &c.backend).await),
            Err(e) => e,
        },
        _ => reply(StatusCode::NOT_FOUND, format!("no such endpoint {path}")),
    }
}

/// A drain call that names no timeout waits this long at most (the
/// `load_balancer` schema's default `drain_timeout`).
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything `cairn local status` shows.
pub async fn status(cloud: &Cloud) -> serde_json::Value {
    let hosts = cloud.host_statuses().await;
    let state = cloud.snapshot();
    let servers = cloud.supervisor().status();
    let resources: Vec<serde_json::Value> = state
        .resources
        .values()
        .map(|r| {
            let server = servers.iter().find(|s| s.name == r.id);
            serde_json::json!({
                "id": r.id,
                "type": r.kind,
                "deployment": r.deployment,
                "address": r.address,
                "ip": reached_at(r),
                "health": match (r.kind.as_str(), server) {
                    ("server", _) if cloud.isolation() == crate::cloud::Isolation::Runc => hosts
                        .get(&r.id)
                        .cloned()
                        .unwrap_or_else(|| "not running".into())
                        .into(),
                    ("server", Some(s)) => serde_json::to_value(s.state).unwrap_or_default(),
                    ("server", None) => "not running".into(),
                    _ => "ok".into(),
                },
                "restarts": server.map(|s| s.restarts),
                "pid": server.and_then(|s| s.pid),
            })
        })
        .collect();
    serde_json::json!({
        "resources": resources,
        "servers": servers,
        "isolation": cloud.isolation().as_str(),
    })
}

/// Where a user reaches a resource: its `address` attribute when that is
/// an IP address (a `runc` database's endpoint on the cloud's link, not
/// the loopback address its PostgreSQL listens on), else the loopback
/// address it owns.
fn reached_at(r: &crate::cloud::LocalResource) -> Option<String> {
    r.attributes
        .get("address")
        .and_then(|a| a.as_str())
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .map(String::from)
        .or_else(|| r.ip.map(|ip| ip.to_string()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn serve(
    listener: TcpListener,
    cloud: Arc<Cloud>,
    token: String,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let token: Arc<str> = token.into();
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted.map_err(|e| e.to_string())?,
        };
        let (cloud, token, stop) = (cloud.clone(), token.clone(), shutdown.clone());
        conns.spawn(async move {
            let calls = stop.clone();
            let service = service_fn(move |req| {
                let (cloud, token, stop) = (cloud.clone(), token.clone(), calls.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(handle(req, cloud, token, stop).await)
                }
            });
            serve_http1(stream, service, stop).await;
        });
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::reached_at;
    use crate::cloud::LocalResource;

    fn resource(attributes: serde_json::Value, ip: Option<&str>) -> LocalResource {
        LocalResource {
            id: "database-00001".into(),
            kind: "database".into(),
            deployment: "d".into(),
            address: "db".into(),
            token: "t".into(),
            properties: json!({}),
            attributes,
            tags: Default::default(),
            ip: ip.map(|i| i.parse().unwrap()),
            sensitive: vec![],
        }
    }

    #[test]
    fn a_resource_is_shown_where_it_is_reached() {
        // A runc database: its endpoint on the link, not its loopback.
        let db = resource(json!({"address": "169.254.3.254"}), Some("127.42.0.2"));
        assert_eq!(reached_at(&db).as_deref(), Some("169.254.3.254"));
        // No address attribute (or not an IP): the loopback it owns.
        let lb = resource(json!({"port": 80}), Some("127.42.0.4"));
        assert_eq!(reached_at(&lb).as_deref(), Some("127.42.0.4"));
        let named = resource(json!({"address": "www.example.test"}), None);
        assert_eq!(reached_at(&named), None);
    }
}
