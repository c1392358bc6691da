//! One attempt of each kind of test: ask, compare with what is expected,
//! and say how it went in words a person reads (expected vs got).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::spec::{
    CommandExpect, CommandRun, DnsExpect, DnsQuery, HttpExpect, HttpRequest, SqlExpect, SqlQuery,
};

/// How one attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    /// What was expected and what came instead.
    Fail(String),
    /// The test cannot run here (says why); never counted as passed.
    Skip(String),
}

/// A body shown in a message: its start, on one line.
fn excerpt(s: &str) -> String {
    const MAX: usize = 200;
    let one_line = s.trim().replace('\n', "\\n");
    match one_line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

pub async fn http(req: &HttpRequest, exp: &HttpExpect, limit: Duration) -> Outcome {
    let (status, body) = match tokio::time::timeout(limit, get(req)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Outcome::Fail(format!("no answer from {}: {e}", req.authority)),
        Err(_) => {
            return Outcome::Fail(format!(
                "no answer from {} within {} ms",
                req.authority,
                limit.as_millis()
            ));
        }
    };
    if let Some(want) = exp.status
        && status != want
    {
        return Outcome::Fail(format!(
            "expected status {want}, got {status} (body: {:?})",
            excerpt(&body)
        ));
    }
    if let Some(want) = &exp.body_contains
        && !body.contains(want.as_str())
    {
        return Outcome::Fail(format!(
            "expected a body containing {want:?}, got {:?}",
            excerpt(&body)
        ));
    }
    if let Some(want) = &exp.body_equals
        && body.trim_end() != want.trim_end()
    {
        return Outcome::Fail(format!(
            "expected the body {want:?}, got {:?}",
            excerpt(&body)
        ));
    }
    if let Some(re) = &exp.body_regex
        && !re.is_match(&body)
    {
        return Outcome::Fail(format!(
            "expected a body matching /{}/, got {:?}",
            re.as_str(),
            excerpt(&body)
        ));
    }
    Outcome::Pass
}

async fn get(req: &HttpRequest) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(&req.authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // The connection's task ends with this function: dropped with the
    // sender, or aborted here when the attempt is given up.
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(req.path.as_str())
        .header(
            hyper::header::HOST,
            req.host.as_deref().unwrap_or(req.authority.as_str()),
        )
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
    .await;
    conn.abort();
    answer
}

pub async fn dns(
    q: &DnsQuery,
    exp: &DnsExpect,
    default_server: Option<SocketAddr>,
    limit: Duration,
) -> Outcome {
    let server: SocketAddr = match q.server.as_deref().map(str::parse).transpose() {
        Ok(Some(s)) => s,
        Ok(None) => match default_server {
            Some(s) => s,
            None => {
                return Outcome::Fail(
                    "`dns` needs a `server` (address:port): this deployment has no DNS server of its own".into(),
                );
            }
        },
        Err(_) => {
            return Outcome::Fail(format!(
                "`dns.server` {:?} is not an address:port",
                q.server.as_deref().unwrap_or_default()
            ));
        }
    };
    let got = match tokio::time::timeout(limit, resolve(q, server)).await {
        Ok(Ok(values)) => values,
        Ok(Err(e)) => return Outcome::Fail(format!("{} {} @{server}: {e}", q.name, q.rtype)),
        Err(_) => {
            return Outcome::Fail(format!(
                "{} {} @{server}: no answer within {} ms",
                q.name,
                q.rtype,
                limit.as_millis()
            ));
        }
    };
    // Names compare without their final dot (`www.example.test.`).
    let norm = |v: &str| v.trim().trim_end_matches('.').to_ascii_lowercase();
    let mut got_n: Vec<String> = got.iter().map(|v| norm(v)).collect();
    got_n.sort();
    if let Some(want) = &exp.values {
        let mut want_n: Vec<String> = want.iter().map(|v| norm(v)).collect();
        want_n.sort();
        if want_n != got_n {
            return Outcome::Fail(format!(
                "{} {}: expected {want:?}, got {got:?}",
                q.name, q.rtype
            ));
        }
    }
    if let Some(want) = &exp.contains {
        let missing: Vec<&String> = want.iter().filter(|w| !got_n.contains(&norm(w))).collect();
        if !missing.is_empty() {
            return Outcome::Fail(format!(
                "{} {}: expected answers containing {missing:?}, got {got:?}",
                q.name, q.rtype
            ));
        }
    }
    Outcome::Pass
}

/// One query over UDP; the answers' data in presentation form.
async fn resolve(q: &DnsQuery, server: SocketAddr) -> Result<Vec<String>, String> {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    let name = Name::from_ascii(&q.name).map_err(|e| format!("bad name: {e}"))?;
    let rtype: RecordType = q
        .rtype
        .parse()
        .map_err(|_| format!("unknown record type {}", q.rtype))?;
    let mut msg = Message::query();
    msg.add_query(Query::query(name, rtype));
    msg.metadata.recursion_desired = true;
    let id = msg.metadata.id;
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "no address".to_string())?
    } else {
        "[::]:0".parse().map_err(|_| "no address".to_string())?
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(&bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    // Bounded: a stray datagram with another id is skipped, a few times.
    for _ in 0..8 {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        let Ok(answer) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if answer.metadata.id != id {
            continue;
        }
        return match answer.metadata.response_code {
            ResponseCode::NoError => Ok(answer
                .answers
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.to_string())
                .collect()),
            code => Err(format!("the server answered {code}")),
        };
    }
    Err("no answer with our query's id".into())
}

pub async fn sql(q: &SqlQuery, exp: &SqlExpect, limit: Duration) -> Outcome {
    let rows = match query(q.clone(), limit).await {
        Ok(rows) => rows,
        Err(e) => {
            return Outcome::Fail(format!(
                "{:?} on {}:{} as {}: {e}",
                q.query, q.host, q.port, q.user
            ));
        }
    };
    if let Some(want) = &exp.rows
        && *want != rows
    {
        return Outcome::Fail(format!(
            "expected the rows {}, got {}",
            show_rows(want),
            show_rows(&rows)
        ));
    }
    if let Some(want) = &exp.first_value {
        match rows.first().and_then(|r| r.first()) {
            Some(got) if got == want => {}
            Some(got) => {
                return Outcome::Fail(format!(
                    "expected the first value {}, got {}",
                    show_sql(want),
                    show_sql(got)
                ));
            }
            None => {
                return Outcome::Fail(format!(
                    "expected the first value {}, got no rows",
                    show_sql(want)
                ));
            }
        }
    }
    Outcome::Pass
}

/// A value as SQL people read it: quoted text, or NULL.
fn show_sql(v: &Option<String>) -> String {
    v.as_ref().map_or("NULL".to_string(), |t| format!("{t:?}"))
}

fn show_rows(rows: &[Vec<Option<String>>]) -> String {
    let row = |r: &Vec<Option<String>>| {
        format!(
            "[{}]",
            r.iter().map(show_sql).collect::<Vec<_>>().join(", ")
        )
    };
    format!("[{}]", rows.iter().map(row).collect::<Vec<_>>().join(", "))
}

/// Runs the query with the synchronous client on a thread of its own (it
/// drives its own runtime, which cannot run inside ours). Values come in
/// PostgreSQL's text form, so any column type compares.
async fn query(q: SqlQuery, limit: Duration) -> Result<Vec<Vec<Option<String>>>, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cairn-test-sql".into())
        .spawn(move || {
            let result = (|| {
                let mut client = postgres::Config::new()
                    .host(&q.host)
                    .port(q.port)
                    .user(&q.user)
                    .password(&q.password)
                    .dbname(&q.dbname)
                    .connect_timeout(limit)
                    .connect(postgres::NoTls)
                    .map_err(|e| e.to_string())?;
                let messages = client.simple_query(&q.query).map_err(|e| e.to_string())?;
                Ok(messages
                    .iter()
                    .filter_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_string))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect())
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the query's thread ended without an answer".into()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

pub async fn command(
    remotes: &[Arc<dyn cairn_orch::Remote>],
    run: &CommandRun,
    exp: &CommandExpect,
    limit: Duration,
) -> Outcome {
    if remotes.is_empty() {
        return Outcome::Fail(format!("no host matches `{}`", run.hosts));
    }
    let mut set = tokio::task::JoinSet::new();
    for r in remotes {
        let (r, script) = (r.clone(), run.script.clone());
        set.spawn(async move {
            let exec = cairn_orch::Exec {
                timeout: Some(limit),
                ..cairn_orch::Exec::new(script)
            };
            let out = r.exec(exec).await;
            (r.name().to_string(), out)
        });
    }
    let mut problems = Vec::new();
    while let Some(joined) = set.join_next().await {
        let Ok((host, out)) = joined else {
            problems.push("a host's task failed".to_string());
            continue;
        };
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                problems.push(format!("{host}: {e}"));
                continue;
            }
        };
        let stdout = out.stdout_str();
        let want_code = exp.exit_code.unwrap_or(0);
        if out.status != Some(want_code) {
            problems.push(format!(
                "{host}: expected exit code {want_code}, got {} (stderr: {:?})",
                out.status.map_or("a signal".to_string(), |c| c.to_string()),
                excerpt(&String::from_utf8_lossy(&out.stderr))
            ));
            continue;
        }
        if let Some(want) = &exp.stdout_contains
            && !stdout.contains(want.as_str())
        {
            problems.push(format!(
                "{host}: expected stdout containing {want:?}, got {:?}",
                excerpt(&stdout)
            ));
            continue;
        }
        if let Some(want) = &exp.stdout_equals
            && stdout.trim_end() != want.trim_end()
        {
            problems.push(format!(
                "{host}: expected stdout {want:?}, got {:?}",
                excerpt(&stdout)
            ));
        }
    }
    if problems.is_empty() {
        Outcome::Pass
    } else {
        problems.sort();
        Outcome::Fail(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_values_read_as_sql() {
        assert_eq!(show_sql(&Some("1".into())), "\"1\"");
        assert_eq!(show_sql(&None), "NULL");
        assert_eq!(
            show_rows(&[vec![Some("a".into()), None], vec![]]),
            "[[\"a\", NULL], []]"
        );
    }

    #[test]
    fn long_bodies_are_cut_to_one_line() {
        let body = format!("line one\nline two {}", "x".repeat(300));
        let e = excerpt(&body);
        assert!(e.starts_with("line one\\nline two"), "{e}");
        assert!(e.ends_with("...") && e.chars().count() == 203, "{e}");
    }

    /// A DNS server on loopback that answers every A query with one
    /// address, so the comparison (order, final dots, case) is checked
    /// without a cloud; stopped by aborting its task.
    #[tokio::test]
    async fn dns_answers_are_compared_as_sets() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::{RData, Record, rdata::A};
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // Bounded: the test asks a few questions.
            for _ in 0..10 {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let q = Message::from_vec(&buf[..n]).unwrap();
                let mut a = Message::response(q.metadata.id, q.metadata.op_code);
                let name = q.queries[0].name().clone();
                a.add_queries(q.queries.clone());
                for ip in [[127, 0, 0, 9], [127, 0, 0, 8]] {
                    a.add_answer(Record::from_rdata(
                        name.clone(),
                        60,
                        RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
                    ));
                }
                let _ = socket.send_to(&a.to_vec().unwrap(), from).await;
            }
        });
        let q = DnsQuery {
            name: "www.example.test".into(),
            rtype: "A".into(),
            server: None,
        };
        let limit = Duration::from_secs(2);
        let exact = DnsExpect {
            values: Some(vec!["127.0.0.8".into(), "127.0.0.9".into()]),
            contains: None,
        };
        assert_eq!(dns(&q, &exact, Some(server), limit).await, Outcome::Pass);
        let some = DnsExpect {
            values: None,
            contains: Some(vec!["127.0.0.9".into()]),
        };
        assert_eq!(dns(&q, &some, Some(server), limit).await, Outcome::Pass);
        let wrong = DnsExpect {
            values: Some(vec!["127.0.0.9".into()]),
            contains: None,
        };
        let Outcome::Fail(why) = dns(&q, &wrong, Some(server), limit).await else {
            panic!("a missing answer passed");
        };
        assert!(why.contains("expected [\"127.0.0.9\"], got"), "{why}");
        // No server named and none given: said, not guessed.
        let Outcome::Fail(why) = dns(&q, &exact, None, limit).await else {
            panic!()
        };
        assert!(why.contains("needs a `server`"), "{why}");
        task.abort();
    }
}
