//! `postgres://` state URLs: parsing, the password kept apart and never
//! shown, and `~/.pgpass` lines matched as libpq matches them.
//!
//! The library reads no environment variable and no file: the CLI fills in
//! what the URL leaves out (`PGPASSWORD`, `~/.pgpass`, the user name) with
//! [`PgUrl::set_password`] and [`PgUrl::set_user`].

use std::fmt;

/// What `sslmode=` asks for, as in libpq. `prefer` uses TLS when the
/// server offers it and plain TCP otherwise; `require` insists on TLS;
/// neither checks the server's certificate. `verify-full` checks it against
/// the CA in `sslrootcert=PATH`, host name included (see `pg::tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A PostgreSQL connection target. `Display` and `Debug` never show the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    pub user: Option<String>,
    password: Option<String>,
    pub host: String,
    pub port: u16,
    /// Defaults to the user name, as in libpq.
    pub dbname: Option<String>,
    pub sslmode: SslMode,
    /// `sslrootcert=PATH`: the CA certificates (PEM) `verify-full` trusts.
    pub sslrootcert: Option<std::path::PathBuf>,
}

impl PgUrl {
    /// Parses `postgres://[USER[:PASSWORD]@][HOST][:PORT][/DB][?sslmode=MODE]`
    /// (or `postgresql://`). The error never repeats the password.
    pub fn parse(url: &str) -> Result<PgUrl, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                "a PostgreSQL state URL starts with postgres:// or postgresql://".to_string()
            })?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((name, pw)) => (Some(decode(name, "user")?), Some(decode(pw, "password")?)),
                None => (Some(decode(u, "user")?), None),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        let dbname = match path {
            Some(p) if !p.is_empty() => Some(decode(p, "database name")?),
            _ => None,
        };
        let mut sslmode = SslMode::Prefer;
        let mut sslrootcert = None;
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    sslmode = match value {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-full" => SslMode::VerifyFull,
                        "verify-ca" => {
                            return Err(
                                "sslmode=verify-ca is not supported: use sslmode=verify-full \
                                 (the CA and the host name both checked)"
                                    .to_string(),
                            );
                        }
                        other => {
                            return Err(format!(
                                "unknown sslmode `{other}` (disable, allow, prefer, require, verify-ca, verify-full)"
                            ));
                        }
                    }
                }
                "sslrootcert" => {
                    sslrootcert = Some(std::path::PathBuf::from(decode(value, "sslrootcert")?));
                }
                other => {
                    return Err(format!(
                        "unknown URL parameter `{other}` (sslmode and sslrootcert are understood)"
                    ));
                }
            }
        }
        if sslmode == SslMode::VerifyFull && sslrootcert.is_none() {
            return Err(
                "sslmode=verify-full needs sslrootcert=PATH: the CA certificate (PEM) that signed \
                 the server's"
                    .to_string(),
            );
        }
        Ok(PgUrl {
            user: user.filter(|u| !u.is_empty()),
            password,
            host: host.unwrap_or_else(|| "localhost".into()),
            port: port.unwrap_or(5432),
            dbname,
            sslmode,
            sslrootcert,
        })
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn set_password(&mut self, password: Option<String>) {
        self.password = password;
    }

    pub fn set_user(&mut self, user: String) {
        self.user = Some(user);
    }

    /// The database name connected to: the one named, else the user's.
    pub fn database(&self) -> &str {
        self.dbname
            .as_deref()
            .or(self.user.as_deref())
            .unwrap_or("postgres")
    }

    pub(crate) fn config(&self) -> postgres::Config {
        let mut config = postgres::Config::new();
        if self.host.starts_with('/') {
            config.host_path(&self.host);
        } else {
            config.host(&self.host);
        }
        config
            .port(self.port)
            .dbname(self.database())
            .application_name("cairn")
            .connect_timeout(std::time::Duration::from_secs(10))
            .keepalives(true)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => postgres::config::SslMode::Disable,
                SslMode::Prefer => postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyFull => postgres::config::SslMode::Require,
            });
        if let Some(user) = &self.user {
            config.user(user);
        }
        if let Some(password) = &self.password {
            config.password(password);
        }
        config
    }
}

impl fmt::Display for PgUrl {
    /// `postgres://USER@HOST:PORT/DB?sslmode=MODE`: no password, ever.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        write!(f, ":{}/{}", self.port, self.database())?;
        write!(f, "?sslmode={}", self.sslmode.as_str())?;
        if let Some(root) = &self.sslrootcert {
            write!(f, "&sslrootcert={}", root.display())?;
        }
        Ok(())
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

fn split_host_port(hostport: &str) -> Result<(Option<String>, Option<u16>), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in the host".to_string())?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("port `{p}` is not a number from 1 to 65535"))?,
        ),
    };
    let host = decode(&host, "host")?;
    Ok(((!host.is_empty()).then_some(host), port))
}

/// Percent-decoding; `what` names the part in an error (never its value,
/// which may be the password).
fn decode(text: &str, what: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("malformed %-escape in the {what}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {what} is not UTF-8 once %-decoded"))
}

/// The password `~/.pgpass` (its text given) holds for `url`, as libpq
/// reads it: `host:port:database:user:password` lines, `*` matching
/// anything, `\:` and `\\` escaped, the first matching line winning.
pub fn pgpass_lookup(text: &str, url: &PgUrl) -> Option<String> {
    let port = url.port.to_string();
    let wanted = [
        url.host.as_str(),
        port.as_str(),
        url.database(),
        url.user.as_deref().unwrap_or(""),
    ];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() < 5 {
            continue;
        }
        let host_matches = |f: &str| {
            f == "*" || f == wanted[0] || (f == "localhost" && wanted[0].starts_with('/'))
        };
        if host_matches(&fields[0])
            && wanted[1..]
                .iter()
                .zip(&fields[1..4])
                .all(|(w, f)| f == "*" || f == w)
        {
            return Some(fields[4..].join(":"));
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part_and_never_shows_the_password() {
        let url =
            PgUrl::parse("postgres://ann:s%3Acret@db.example:6543/state?sslmode=disable").unwrap();
        assert_eq!(url.user.as_deref(), Some("ann"));
        assert_eq!(url.password(), Some("s:cret"));
        assert_eq!((url.host.as_str(), url.port), ("db.example", 6543));
        assert_eq!(url.database(), "state");
        assert_eq!(url.sslmode, SslMode::Disable);
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("cret"), "{shown}");
        assert_eq!(
            url.to_string(),
            "postgres://ann@db.example:6543/state?sslmode=disable"
        );
    }

    #[test]
    fn defaults_like_libpq() {
        let url = PgUrl::parse("postgresql://bob@").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("localhost", 5432));
        assert_eq!(url.database(), "bob");
        assert_eq!(url.sslmode, SslMode::Prefer);
        assert_eq!(url.password(), None);
        let v6 = PgUrl::parse("postgres://u@[::1]:5433/d").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 5433));
        assert_eq!(v6.to_string(), "postgres://u@[::1]:5433/d?sslmode=prefer");
    }

    #[test]
    fn refuses_what_it_cannot_honour_without_echoing_the_password() {
        for (bad, expect) in [
            (
                "postgres://u:hunter2@h/d?sslmode=verify-full",
                "needs sslrootcert",
            ),
            (
                "postgres://u:hunter2@h/d?sslmode=verify-ca",
                "use sslmode=verify-full",
            ),
            ("postgres://u:hunter2@h/d?sslmode=bogus", "unknown sslmode"),
            ("postgres://u:hunter2@h/d?foo=1", "unknown URL parameter"),
            ("postgres://u:hunter2@h:99999/d", "port"),
            (
                "postgres://u:hun%zzter2@h/d",
                "malformed %-escape in the password",
            ),
            ("mysql://u@h/d", "starts with postgres://"),
        ] {
            let err = PgUrl::parse(bad).unwrap_err();
            assert!(err.contains(expect), "{bad}: {err}");
            assert!(!err.contains("hunter2") && !err.contains("hun%zz"), "{err}");
        }
    }

    #[test]
    fn pgpass_matches_like_libpq() {
        let text = "# comment\n\
                    other:5432:*:ann:wrong\n\
                    127.0.0.1:5433:state:ann:first\\:part\n\
                    *:*:*:ann:fallback\n";
        let mut url = PgUrl::parse("postgres://ann@127.0.0.1:5433/state").unwrap();
        assert_eq!(pgpass_lookup(text, &url).as_deref(), Some("first:part"));
        url.port = 1;
        assert_eq!(pgpass_lookup(text, &url).as_deref(), Some("fallback"));
        url.user = Some("bob".into());
        assert_eq!(pgpass_lookup(text, &url), None);
    }
}
