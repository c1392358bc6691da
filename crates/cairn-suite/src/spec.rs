//! A test's evaluated declaration, checked and typed.

use std::time::Duration;

use serde_json::{Map, Value as J};

/// Unless a test says otherwise: how long the deployment has to meet it,
/// and how long between attempts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct TestSpec {
    pub name: String,
    pub description: Option<String>,
    pub check: Check,
    pub timeout: Duration,
    pub interval: Duration,
}

impl TestSpec {
    pub fn kind(&self) -> &'static str {
        match self.check {
            Check::Http(..) => "http",
            Check::Dns(..) => "dns",
            Check::Sql(..) => "sql",
            Check::Command(..) => "command",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Check {
    Http(HttpRequest, HttpExpect),
    Dns(DnsQuery, DnsExpect),
    Sql(SqlQuery, SqlExpect),
    Command(CommandRun, CommandExpect),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// `host:port` to connect to.
    pub authority: String,
    pub path: String,
    /// The `Host` header (default: the authority).
    pub host: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct HttpExpect {
    pub status: Option<u16>,
    pub body_contains: Option<String>,
    pub body_equals: Option<String>,
    pub body_regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsQuery {
    pub name: String,
    pub rtype: String,
    /// `address:port`; `None`: the deployment's DNS server.
    pub server: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DnsExpect {
    /// Exactly these values, in any order.
    pub values: Option<Vec<String>>,
    /// At least these values.
    pub contains: Option<Vec<String>>,
}

#[derive(Clone, PartialEq)]
pub struct SqlQuery {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
    pub query: String,
}

// The password stays out of debug output (and so out of any log).
impl std::fmt::Debug for SqlQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlQuery")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlExpect {
    /// Every row, each a list of values as PostgreSQL's text form (`None`: NULL).
    pub rows: Option<Vec<Vec<Option<String>>>>,
    pub first_value: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandRun {
    /// A target expression (`G@role:web`, `web-*`).
    pub hosts: String,
    pub script: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommandExpect {
    pub exit_code: Option<i32>,
    pub stdout_contains: Option<String>,
    pub stdout_equals: Option<String>,
}

/// A test whose evaluated value cannot be run: a wrong type, a missing key.
/// Reported as that test's failure (the template parsed, so the keys were
/// right; this is about values only known after the deployment is up).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

/// Text as a test compares it: strings as they are, numbers and booleans
/// as written, null as none.
fn text(v: &J) -> Option<String> {
    match v {
        J::Null => None,
        J::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn string(m: &Map<String, J>, key: &str, what: &str) -> Result<Option<String>, SpecError> {
    match m.get(key) {
        None | Some(J::Null) => Ok(None),
        Some(J::String(s)) => Ok(Some(s.clone())),
        Some(J::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => err(format!("`{what}.{key}` must be a string, not {other}")),
    }
}

fn required(m: &Map<String, J>, key: &str, what: &str) -> Result<String, SpecError> {
    string(m, key, what)?.ok_or_else(|| SpecError(format!("`{what}` needs `{key}`")))
}

fn map<'a>(v: Option<&'a J>, what: &str) -> Result<&'a Map<String, J>, SpecError> {
    static EMPTY: std::sync::OnceLock<Map<String, J>> = std::sync::OnceLock::new();
    match v {
        None | Some(J::Null) => Ok(EMPTY.get_or_init(Map::new)),
        Some(J::Object(m)) => Ok(m),
        Some(other) => err(format!("`{what}` must be a map, not {other}")),
    }
}

fn list_of_text(v: &J, what: &str) -> Result<Vec<String>, SpecError> {
    match v {
        J::Array(items) => Ok(items.iter().filter_map(text).collect()),
        J::String(s) => Ok(vec![s.clone()]),
        other => err(format!("`{what}` must be a list, not {other}")),
    }
}

/// `30s`, `500ms`, `2m`, or a number of seconds.
pub fn duration(v: &J, what: &str) -> Result<Duration, SpecError> {
    let bad = || {
        SpecError(format!(
            "`{what}` must be a duration such as 30s, 500ms or 2m"
        ))
    };
    match v {
        J::Number(n) => n.as_f64().map(Duration::from_secs_f64).ok_or_else(bad),
        J::String(s) => {
            let s = s.trim();
            let (num, unit) = s
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .map_or((s, "s"), |i| s.split_at(i));
            let n: f64 = num.parse().map_err(|_| bad())?;
            let secs = match unit.trim() {
                "ms" => n / 1000.0,
                "s" => n,
                "m" => n * 60.0,
                _ => return Err(bad()),
            };
            // An hour is more than any test should wait: a typo, not a wish.
            if !(0.0..=3600.0).contains(&secs) {
                return Err(bad());
            }
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(bad()),
    }
}

/// Reads a test's evaluated body (secrets revealed: a `sql` test needs the
/// owner's password).
pub fn parse(name: &str, body: &J) -> Result<TestSpec, SpecError> {
    let m = map(Some(body), name)?;
    let expect = map(m.get("expect"), "expect")?;
    let check = if let Some(v) = m.get("http") {
        Check::Http(http_request(map(Some(v), "http")?)?, http_expect(expect)?)
    } else if let Some(v) = m.get("dns") {
        let q = map(Some(v), "dns")?;
        let query = DnsQuery {
            name: required(q, "name", "dns")?,
            rtype: string(q, "type", "dns")?
                .unwrap_or_else(|| "A".into())
                .to_ascii_uppercase(),
            server: string(q, "server", "dns")?,
        };
        let e = DnsExpect {
            values: expect
                .get("values")
                .map(|v| list_of_text(v, "expect.values"))
                .transpose()?,
            contains: expect
                .get("contains")
                .map(|v| list_of_text(v, "expect.contains"))
                .transpose()?,
        };
        Check::Dns(query, e)
    } else if let Some(v) = m.get("sql") {
        Check::Sql(sql_query(map(Some(v), "sql")?)?, sql_expect(expect)?)
    } else if let Some(v) = m.get("command") {
        let c = map(Some(v), "command")?;
        let run = CommandRun {
            hosts: required(c, "hosts", "command")?,
            script: required(c, "run", "command")?,
        };
        let e = CommandExpect {
            exit_code: match expect.get("exit_code") {
                None | Some(J::Null) => None,
                Some(J::Number(n)) => Some(
                    n.as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| {
                            SpecError(format!("`expect.exit_code` {n} is not an exit code"))
                        })?,
                ),
                Some(other) => {
                    return err(format!("`expect.exit_code` must be a number, not {other}"));
                }
            },
            stdout_contains: string(expect, "stdout_contains", "expect")?,
            stdout_equals: string(expect, "stdout_equals", "expect")?,
        };
        Check::Command(run, e)
    } else {
        return err("no `http`, `dns`, `sql` or `command` to check");
    };
    Ok(TestSpec {
        name: name.to_string(),
        description: string(m, "description", name)?,
        check,
        timeout: m
            .get("timeout")
            .map(|v| duration(v, "timeout"))
            .transpose()?
            .unwrap_or(DEFAULT_TIMEOUT),
        interval: m
            .get("interval")
            .map(|v| duration(v, "interval"))
            .transpose()?
            .unwrap_or(DEFAULT_INTERVAL)
            .max(Duration::from_millis(50)),
    })
}

fn http_request(h: &Map<String, J>) -> Result<HttpRequest, SpecError> {
    let host = string(h, "host", "http")?;
    if let Some(url) = string(h, "url", "http")? {
        if h.contains_key("lb") {
            return err("`http` takes `url` or `lb` (with `path`), not both");
        }
        let Some(rest) = url.strip_prefix("http://") else {
            return err(format!("`http.url` {url}: only http:// URLs are tested"));
        };
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        if authority.is_empty() {
            return err(format!("`http.url` {url} has no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        return Ok(HttpRequest {
            authority,
            path: path.to_string(),
            host,
        });
    }
    let lb = match h.get("lb") {
        Some(J::Object(lb)) => lb,
        Some(other) => {
            return err(format!(
                "`http.lb` must be a load balancer (`\"{{{{ lb }}}}\"`), not {other}"
            ));
        }
        None => return err("`http` needs `url`, or `lb` and `path`"),
    };
    let address = string(lb, "address", "http.lb")?
        .ok_or_else(|| SpecError("`http.lb` has no `address`: is it a load balancer?".into()))?;
    let port = lb.get("port").and_then(J::as_u64).unwrap_or(80);
    let path = string(h, "path", "http")?.unwrap_or_else(|| "/".into());
    Ok(HttpRequest {
        authority: format!("{address}:{port}"),
        path: if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        },
        host,
    })
}

fn http_expect(e: &Map<String, J>) -> Result<HttpExpect, SpecError> {
    let status = match e.get("status") {
        None | Some(J::Null) => None,
        Some(v) => Some(
            text(v)
                .and_then(|t| t.parse::<u16>().ok())
                .filter(|s| (100..600).contains(s))
                .ok_or_else(|| SpecError(format!("`expect.status` {v} is not an HTTP status")))?,
        ),
    };
    let body_regex = string(e, "body_regex", "expect")?
        .map(|r| {
            regex::Regex::new(&r)
                .map_err(|x| SpecError(format!("`expect.body_regex` is not a regex: {x}")))
        })
        .transpose()?;
    Ok(HttpExpect {
        // Nothing said: a page that answers 200.
        status: status.or(Some(200)),
        body_contains: string(e, "body_contains", "expect")?,
        body_equals: string(e, "body_equals", "expect")?,
        body_regex,
    })
}

fn sql_query(s: &Map<String, J>) -> Result<SqlQuery, SpecError> {
    // `database: "{{ db }}"` gives the endpoint, owner and password; keys
    // written beside it win.
    let db = map(s.get("database"), "sql.database")?;
    let pick = |key: &str, from_db: &str| -> Result<Option<String>, SpecError> {
        Ok(match string(s, key, "sql")? {
            Some(v) => Some(v),
            None => string(db, from_db, "sql.database")?,
        })
    };
    let endpoint = pick("endpoint", "endpoint")?
        .ok_or_else(|| SpecError("`sql` needs `database: \"{{ db }}\"` or an `endpoint`".into()))?;
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse()
                .map_err(|_| SpecError(format!("`sql` endpoint {endpoint}: bad port")))?,
        ),
        None => (endpoint.clone(), 5432),
    };
    Ok(SqlQuery {
        host,
        port,
        // The portable schema's defaults: a database `app` owned by `app`.
        user: pick("user", "owner")?.unwrap_or_else(|| "app".into()),
        password: pick("password", "owner_password")?.unwrap_or_default(),
        dbname: pick("dbname", "database")?.unwrap_or_else(|| "app".into()),
        query: required(s, "query", "sql")?,
    })
}

fn sql_expect(e: &Map<String, J>) -> Result<SqlExpect, SpecError> {
    let rows = match e.get("rows") {
        None | Some(J::Null) => None,
        Some(J::Array(rows)) => Some(
            rows.iter()
                .map(|r| match r {
                    J::Array(vals) => Ok(vals.iter().map(text).collect()),
                    // A one-column row may be written as its value.
                    other => Ok(vec![text(other)]),
                })
                .collect::<Result<Vec<_>, SpecError>>()?,
        ),
        Some(other) => return err(format!("`expect.rows` must be a list of rows, not {other}")),
    };
    Ok(SqlExpect {
        rows,
        first_value: e.get("first_value").map(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn http_through_a_load_balancer() {
        let t = parse(
            "web",
            &json!({"http": {"lb": {"address": "127.42.0.5", "port": 8080, "id": "lb-1"}, "path": "health", "host": "www.example.test"},
                    "expect": {"status": 200, "body_contains": "hello"}, "timeout": "45s"}),
        )
        .unwrap();
        assert_eq!(t.timeout, Duration::from_secs(45));
        let Check::Http(req, exp) = t.check else {
            panic!()
        };
        assert_eq!(req.authority, "127.42.0.5:8080");
        assert_eq!(req.path, "/health");
        assert_eq!(req.host.as_deref(), Some("www.example.test"));
        assert_eq!(exp.status, Some(200));
        assert_eq!(exp.body_contains.as_deref(), Some("hello"));
    }

    #[test]
    fn http_url() {
        let t = parse(
            "u",
            &json!({"http": {"url": "http://127.0.0.1:81/a?b"}, "expect": {}}),
        )
        .unwrap();
        let Check::Http(req, exp) = t.check else {
            panic!()
        };
        assert_eq!(
            (req.authority.as_str(), req.path.as_str()),
            ("127.0.0.1:81", "/a?b")
        );
        assert_eq!(exp.status, Some(200), "a bare expect means 200");
        let e = parse("u", &json!({"http": {"url": "https://x/"}, "expect": {}})).unwrap_err();
        assert!(e.0.contains("only http://"), "{e}");
    }

    #[test]
    fn sql_takes_the_database_and_lets_keys_win() {
        let t = parse(
            "db",
            &json!({"sql": {"database": {"endpoint": "127.0.0.7:5432", "owner": "app", "owner_password": "pw"}, "dbname": "other", "query": "select 1"},
                    "expect": {"first_value": 1, "rows": [[1, null]]}}),
        )
        .unwrap();
        let Check::Sql(q, e) = t.check else { panic!() };
        assert_eq!((q.host.as_str(), q.port), ("127.0.0.7", 5432));
        assert_eq!(
            (q.user.as_str(), q.password.as_str(), q.dbname.as_str()),
            ("app", "pw", "other")
        );
        assert!(
            !format!("{q:?}").contains("pw"),
            "the password is kept out of Debug"
        );
        assert_eq!(e.first_value, Some(Some("1".into())));
        assert_eq!(e.rows, Some(vec![vec![Some("1".into()), None]]));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let e = |v: J| parse("t", &v).unwrap_err().0;
        assert!(e(json!({"http": {"lb": "nope"}, "expect": {}})).contains("load balancer"));
        assert!(
            e(json!({"http": {"url": "http://a/"}, "expect": {"status": 999}}))
                .contains("not an HTTP status")
        );
        assert!(e(json!({"dns": {"type": "A"}, "expect": {}})).contains("needs `name`"));
        assert!(e(json!({"command": {"hosts": "web"}, "expect": {}})).contains("needs `run`"));
        assert!(
            e(json!({"http": {"url": "http://a/"}, "expect": {"body_regex": "("}}))
                .contains("not a regex")
        );
        assert!(
            e(json!({"http": {"url": "http://a/"}, "expect": {}, "timeout": "2h"}))
                .contains("duration")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration(&json!("500ms"), "t").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            duration(&json!("2m"), "t").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(duration(&json!(3), "t").unwrap(), Duration::from_secs(3));
        assert!(duration(&json!("3 weeks"), "t").is_err());
    }
}
