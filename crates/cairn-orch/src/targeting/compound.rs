//! Salt's compound grammar, parsed by recursive descent over tokens that
//! keep their byte offsets. Salt rewrites the words into a Python expression
//! and calls `eval`; here a bad expression is an error at its column.

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;
use serde_json::Value as J;

use super::anchored::start_anchored;
use super::candidate::Candidate;
use super::error::TargetError;
use super::glob;

/// A compound expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A glob on the name.
    Glob {
        pattern: String,
        span: (usize, usize),
    },
    /// `E@`: a regex on the name.
    Regex {
        regex: Regex,
        span: (usize, usize),
    },
    /// `L@`: exact names.
    List {
        names: Vec<String>,
        span: (usize, usize),
    },
    /// `G@`: a grain path (`role`, `os:family`) and a value glob.
    Grain {
        key: String,
        value: String,
        span: (usize, usize),
    },
    /// `S@`: a network.
    Cidr {
        net: IpNet,
        span: (usize, usize),
    },
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    pub fn matches<C: Candidate>(&self, host: &C) -> bool {
        match self {
            Expr::Glob { pattern, .. } => glob::matches(pattern, host.name()),
            Expr::Regex { regex, .. } => regex.is_match(host.name()),
            Expr::List { names, .. } => names.iter().any(|n| n == host.name()),
            Expr::Grain { key, value, .. } => grain_matches(host, key, value),
            Expr::Cidr { net, .. } => host.addresses().iter().any(|a| net.contains(a)),
            Expr::Not(e) => !e.matches(host),
            Expr::And(a, b) => a.matches(host) && b.matches(host),
            Expr::Or(a, b) => a.matches(host) || b.matches(host),
        }
    }
}

/// `G@key:rest`: the grain `key`; while the value is a mapping and `rest`
/// has another `:`, the next segment is a key into it; what remains is a
/// glob on the scalar (or on any element of a list).
fn grain_matches<C: Candidate>(host: &C, key: &str, rest: &str) -> bool {
    let Some(mut value) = host.grain(key) else {
        return false;
    };
    let mut rest = rest;
    while let J::Object(map) = value {
        let Some((k, tail)) = rest.split_once(':') else {
            return false;
        };
        match map.get(k) {
            Some(v) => {
                value = v;
                rest = tail;
            }
            None => return false,
        }
    }
    scalar_matches(value, rest)
}

fn scalar_matches(value: &J, pattern: &str) -> bool {
    match value {
        J::Array(items) => items.iter().any(|v| scalar_matches(v, pattern)),
        J::String(s) => glob::matches(pattern, s),
        J::Null => glob::matches(pattern, "None"),
        J::Object(_) => false,
        other => glob::matches(pattern, &other.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Open,
    Close,
    And,
    Or,
    Not,
    Word(&'a str),
}

/// Words split on whitespace; `(` at a word's start and `)` at its end are
/// tokens of their own, except that a matcher's value keeps the `)` that
/// close its own `(` (`E@web-(a|b)`).
fn tokens(expr: &str) -> Vec<(Tok<'_>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    let bytes = expr.as_bytes();
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut word = &expr[start..i];
        let mut at = start;
        while let Some(rest) = word.strip_prefix('(') {
            out.push((Tok::Open, at));
            at += 1;
            word = rest;
        }
        let mut closes = 0;
        while let Some(rest) = word.strip_suffix(')') {
            let is_matcher = word.as_bytes().get(1) == Some(&b'@');
            if is_matcher {
                let opens = word.matches('(').count();
                let shut = word.matches(')').count();
                if shut <= opens {
                    break;
                }
            }
            word = rest;
            closes += 1;
        }
        if !word.is_empty() {
            let tok = match word {
                "and" => Tok::And,
                "or" => Tok::Or,
                "not" => Tok::Not,
                w => Tok::Word(w),
            };
            out.push((tok, at));
        }
        for k in 0..closes {
            out.push((Tok::Close, at + word.len() + k));
        }
    }
    out
}

struct Parser<'a> {
    expr: &'a str,
    toks: Vec<(Tok<'a>, usize)>,
    pos: usize,
}

pub fn parse(expr: &str) -> Result<Expr, TargetError> {
    let mut p = Parser {
        expr,
        toks: tokens(expr),
        pos: 0,
    };
    let e = p.or()?;
    match p.toks.get(p.pos) {
        None => Ok(e),
        Some((Tok::Close, at)) => Err(p.err(*at, 1, "unmatched `)`")),
        Some((tok, at)) => Err(p.err(
            *at,
            p.tok_len(*tok),
            format!("expected `and` or `or` before {}", p.describe(*tok)),
        )),
    }
}

impl<'a> Parser<'a> {
    fn err(&self, at: usize, len: usize, message: impl Into<String>) -> TargetError {
        TargetError::new(self.expr, at, len, message)
    }

    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos).map(|t| t.0)
    }

    fn tok_len(&self, tok: Tok<'_>) -> usize {
        match tok {
            Tok::Open | Tok::Close => 1,
            Tok::And | Tok::Not => 3,
            Tok::Or => 2,
            Tok::Word(w) => w.len(),
        }
    }

    fn describe(&self, tok: Tok<'_>) -> String {
        match tok {
            Tok::Open => "`(`".into(),
            Tok::Close => "`)`".into(),
            Tok::And => "`and`".into(),
            Tok::Or => "`or`".into(),
            Tok::Not => "`not`".into(),
            Tok::Word(w) => format!("`{w}`"),
        }
    }

    fn or(&mut self) -> Result<Expr, TargetError> {
        let mut left = self.and()?;
        while self.peek() == Some(Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, TargetError> {
        let mut left = self.not()?;
        while self.peek() == Some(Tok::And) {
            self.pos += 1;
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, TargetError> {
        if self.peek() == Some(Tok::Not) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, TargetError> {
        let Some(&(tok, at)) = self.toks.get(self.pos) else {
            let end = self.expr.trim_end().len();
            return Err(self.err(end, 0, "expected an expression at the end"));
        };
        self.pos += 1;
        match tok {
            Tok::Open => {
                let inner = self.or()?;
                if self.peek() == Some(Tok::Close) {
                    self.pos += 1;
                    Ok(inner)
                } else {
                    Err(self.err(at, 1, "unclosed `(`"))
                }
            }
            Tok::Close => Err(self.err(at, 1, "expected an expression before `)`")),
            Tok::And | Tok::Or => Err(self.err(
                at,
                self.tok_len(tok),
                format!("expected an expression before {}", self.describe(tok)),
            )),
            Tok::Not => Ok(Expr::Not(Box::new(self.not()?))),
            Tok::Word(w) => self.matcher(w, at),
        }
    }

    fn matcher(&self, word: &str, at: usize) -> Result<Expr, TargetError> {
        let span = (at, word.len());
        let b = word.as_bytes();
        if b.len() < 2 || b[1] != b'@' || !b[0].is_ascii_alphabetic() {
            return Ok(Expr::Glob {
                pattern: word.to_string(),
                span,
            });
        }
        let value = &word[2..];
        let vat = at + 2;
        match b[0] {
            b'E' => {
                if value.is_empty() {
                    return Err(self.err(vat, 0, "`E@` needs a regular expression"));
                }
                let regex = start_anchored(value).map_err(|m| {
                    self.err(vat, value.len(), format!("bad regular expression: {m}"))
                })?;
                Ok(Expr::Regex { regex, span })
            }
            b'L' => {
                let names: Vec<String> = value
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect();
                if names.is_empty() {
                    return Err(self.err(vat, 0, "`L@` needs names separated by `,`"));
                }
                Ok(Expr::List { names, span })
            }
            b'G' => match value.split_once(':') {
                Some((key, v)) if !key.is_empty() => Ok(Expr::Grain {
                    key: key.to_string(),
                    value: v.to_string(),
                    span,
                }),
                _ => Err(self.err(vat, value.len(), "`G@` needs key:value (`G@role:web`)")),
            },
            b'S' => {
                let net = value
                    .parse::<IpNet>()
                    .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        self.err(
                            vat,
                            value.len(),
                            format!("`{value}` is not a CIDR network or an address"),
                        )
                    })?;
                Ok(Expr::Cidr { net, span })
            }
            other => {
                let c = other as char;
                let what = match other {
                    b'P' => Some("grain regex"),
                    b'I' => Some("pillar"),
                    b'J' => Some("pillar regex"),
                    b'N' => Some("nodegroup"),
                    b'R' => Some("range"),
                    _ => None,
                };
                let message = match what {
                    Some(w) => {
                        format!("`{c}@` ({w}) is not supported; use G@, E@, L@ or S@, or a glob")
                    }
                    None => format!("unknown matcher `{c}@`; use G@, E@, L@ or S@, or a glob"),
                };
                Err(self.err(at, 2, message))
            }
        }
    }
}
