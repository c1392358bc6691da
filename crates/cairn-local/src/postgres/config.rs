//! Pure text: the configuration cairn writes into a cluster, the bootstrap
//! SQL, quoting, and reading `postmaster.pid`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The include line cairn appends to `postgresql.conf` once.
pub(crate) const INCLUDE_LINE: &str = "include_if_exists = 'cairn.conf'";

/// A SQL string literal: `it's` -> `'it''s'`. Correct for any text without
/// NUL under `standard_conforming_strings = on` (the default since 9.1), where
/// a backslash is an ordinary character.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A SQL identifier: `my "db"` -> `"my ""db"""`.
pub(crate) fn quote_ident(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// A value in postgresql.conf: single-quoted, quotes doubled, backslashes
/// escaped (the configuration file treats `\` as an escape).
pub(crate) fn quote_conf(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The name PostgreSQL shows in `ps` for the cluster's processes
/// (`postgres: cairn-127.0.0.7-5433: checkpointer`).
pub(crate) fn cluster_name(address: Ipv4Addr, port: u16) -> String {
    format!("cairn-{address}-{port}")
}

/// `cairn.conf`, included at the end of `postgresql.conf` (so it wins).
pub(crate) fn cairn_conf(address: Ipv4Addr, port: u16, socket_dir: &Path) -> String {
    format!(
        "# Written by cairn on every init: change the database resource, not this file.\n\
         listen_addresses = '{address}'\n\
         port = {port}\n\
         unix_socket_directories = {socket}\n\
         password_encryption = 'scram-sha-256'\n\
         cluster_name = '{name}'\n\
         logging_collector = off\n\
         log_destination = 'stderr'\n",
        socket = quote_conf(&socket_dir.to_string_lossy()),
        name = cluster_name(address, port),
    )
}

/// `pg_hba.conf`: passwords (SCRAM) for everyone, on the socket and from
/// loopback only. All of 127.0.0.0/8, not just 127.0.0.1: a client that
/// reaches 127.0.0.7 may come from any loopback address (a server sandbox
/// binds its own).
pub(crate) const PG_HBA: &str = "\
# Written by cairn: password (SCRAM) authentication, loopback only.
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 scram-sha-256
host    all          all   127.0.0.0/8   scram-sha-256
local   replication  all                 scram-sha-256
host    replication  all   127.0.0.0/8   scram-sha-256
";

/// The psql script that makes the owner role (with its password) and the
/// database owned by it. Idempotent: run on every init and start, it also
/// resets a password changed behind cairn's back.
pub(crate) fn bootstrap_sql(
    owner: &str,
    password: &str,
    database: &str,
    superuser: &str,
) -> String {
    let (o, d) = (quote_literal(owner), quote_literal(database));
    let mut sql = String::from("\\set ON_ERROR_STOP on\n");
    if owner != superuser {
        sql.push_str(&format!(
            "SELECT format('CREATE ROLE %I LOGIN', {o}) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {o}) \\gexec\n"
        ));
    }
    sql.push_str(&format!(
        "ALTER ROLE {} WITH LOGIN PASSWORD {};\n",
        quote_ident(owner),
        quote_literal(password)
    ));
    sql.push_str(&format!(
        "SELECT format('CREATE DATABASE %I OWNER %I', {d}, {o}) \
         WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {d}) \\gexec\n"
    ));
    sql.push_str(&format!(
        "ALTER DATABASE {} OWNER TO {};\n",
        quote_ident(database),
        quote_ident(owner)
    ));
    sql
}

/// What a running server writes into `postmaster.pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PostmasterPid {
    pub pid: u32,
    pub data_dir: PathBuf,
    pub port: Option<u16>,
    pub socket_dir: Option<PathBuf>,
    /// First listen address; empty when it listens on no TCP address.
    pub listen: Option<String>,
    /// `starting`, `ready`, `stopping` or `standby` (PostgreSQL 10+).
    pub status: Option<String>,
}

/// Parses `postmaster.pid` (one value a line: pid, data directory, start
/// time, port, socket directory, listen address, shared memory key, status).
pub(crate) fn parse_postmaster_pid(text: &str) -> Option<PostmasterPid> {
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines.first()?.trim().parse().ok()?;
    let data_dir = PathBuf::from(lines.get(1)?.trim_end());
    let get = |i: usize| lines.get(i).map(|l| l.trim()).filter(|l| !l.is_empty());
    Some(PostmasterPid {
        pid,
        data_dir,
        port: get(3).and_then(|p| p.parse().ok()),
        socket_dir: get(4).map(PathBuf::from),
        listen: lines.get(5).map(|l| l.trim().to_string()),
        status: get(7).map(str::to_string),
    })
}

/// The last `n` lines of a log text.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
