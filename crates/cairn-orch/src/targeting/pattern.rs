//! Ansible's host patterns (`InventoryManager.split_host_pattern`,
//! `order_patterns`, `_match_one_pattern`, subscripts).

use std::net::Ipv6Addr;

use regex::Regex;

use super::anchored::start_anchored;
use super::candidate::Candidate;
use super::error::TargetError;
use super::glob;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternOp {
    /// Added to the result.
    Plain,
    /// `&`: the result is intersected with it.
    And,
    /// `!`: removed from the result.
    Not,
}

#[derive(Debug, Clone)]
pub enum PatternKind {
    /// A group or host name, or a glob over them.
    Name(String),
    /// `~regex`, anchored at the start.
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscript {
    /// `[i]`; negative counts from the end.
    Index(i64),
    /// `[a:b]`, both ends included; `[a:]` to the last.
    Range(usize, Option<usize>),
}

#[derive(Debug, Clone)]
pub struct Pattern {
    pub op: PatternOp,
    pub kind: PatternKind,
    pub subscript: Option<Subscript>,
    /// Byte offset and length in the expression.
    pub span: (usize, usize),
}

/// Splits and parses, then orders as Ansible does: plain, `&`, `!`.
pub fn parse(expr: &str) -> Result<Vec<Pattern>, TargetError> {
    let mut out = Vec::new();
    for (start, piece) in split(expr) {
        out.push(parse_one(expr, start, piece)?);
    }
    out.sort_by_key(|p| match p.op {
        PatternOp::Plain => 0,
        PatternOp::And => 1,
        PatternOp::Not => 2,
    });
    Ok(out)
}

/// Pieces with their byte offsets: on `,` if there is one, else on `:`
/// outside `[...]`, unless the whole is an IPv6 address.
fn split(expr: &str) -> Vec<(usize, &str)> {
    if expr.contains(',') {
        let mut at = 0;
        return expr
            .split(',')
            .map(|p| {
                let piece = (at, p);
                at += p.len() + 1;
                piece
            })
            .collect();
    }
    if expr.trim().parse::<Ipv6Addr>().is_ok() {
        return vec![(0, expr)];
    }
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in expr.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                out.push((start, &expr[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push((start, &expr[start..]));
    out
}

fn parse_one(expr: &str, start: usize, piece: &str) -> Result<Pattern, TargetError> {
    let lead = piece.len() - piece.trim_start().len();
    let text = piece.trim();
    let at = start + lead;
    let err = |off: usize, len: usize, m: String| TargetError::new(expr, off, len, m);
    if text.is_empty() {
        return Err(err(at, 0, "empty pattern".into()));
    }
    if let Some(ws) = text.find(char::is_whitespace) {
        return Err(err(
            at + ws,
            1,
            "a pattern holds no spaces; separate patterns with `,` or `:`".into(),
        ));
    }
    let (op, body, bat) = match text.as_bytes()[0] {
        b'&' => (PatternOp::And, &text[1..], at + 1),
        b'!' => (PatternOp::Not, &text[1..], at + 1),
        _ => (PatternOp::Plain, text, at),
    };
    if body.is_empty() {
        return Err(err(
            at,
            1,
            format!("`{}` needs a pattern after it", &text[..1]),
        ));
    }
    let span = (at, text.len());
    if let Some(re) = body.strip_prefix('~') {
        if re.is_empty() {
            return Err(err(bat, 1, "`~` needs a regular expression".into()));
        }
        let regex = start_anchored(re)
            .map_err(|m| err(bat + 1, re.len(), format!("bad regular expression: {m}")))?;
        return Ok(Pattern {
            op,
            kind: PatternKind::Regex(regex),
            subscript: None,
            span,
        });
    }
    if let Some(open) = body.rfind('[')
        && !body[open..].contains(']')
    {
        return Err(err(bat + open, 1, "unclosed `[`".into()));
    }
    let (name, subscript) = match subscript(body) {
        Some(Ok((name, s))) => (name, Some(s)),
        Some(Err((off, m))) => return Err(err(bat + off, body.len() - off, m)),
        None => (body, None),
    };
    Ok(Pattern {
        op,
        kind: PatternKind::Name(name.to_string()),
        subscript,
        span,
    })
}

type SubscriptResult<'a> = Result<(&'a str, Subscript), (usize, String)>;

/// `name[i]`, `name[a:b]` (or `a-b`, as Ansible also reads), `name[a:]`,
/// `name[:b]`; `None` when the brackets are a glob class (`web[12]x`,
/// `web[abc]`).
fn subscript(body: &str) -> Option<SubscriptResult<'_>> {
    let inner_end = body.len().checked_sub(1)?;
    if !body.ends_with(']') {
        return None;
    }
    let open = body.rfind('[')?;
    if open == 0 {
        return None;
    }
    let inner = &body[open + 1..inner_end];
    let name = &body[..open];
    let num = |s: &str| s.trim().parse::<usize>();
    if let Ok(i) = inner.trim().parse::<i64>() {
        return Some(Ok((name, Subscript::Index(i))));
    }
    let (a, b) = inner.split_once(':').or_else(|| inner.split_once('-'))?;
    if !a
        .trim()
        .chars()
        .chain(b.trim().chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let start = if a.trim().is_empty() { Ok(0) } else { num(a) };
    let end = if b.trim().is_empty() {
        Ok(None)
    } else {
        num(b).map(Some)
    };
    Some(match (start, end) {
        (Ok(s), Ok(e)) if e.is_none_or(|e| e >= s) => Ok((name, Subscript::Range(s, e))),
        (Ok(_), Ok(_)) => Err((open, "a subscript's end comes before its start".into())),
        _ => Err((open, "a subscript is a number too large".into())),
    })
}

/// Which of `hosts` the ordered patterns select.
pub fn select<C: Candidate>(patterns: &[Pattern], hosts: &[C]) -> Vec<bool> {
    let mut result = if patterns.iter().any(|p| p.op == PatternOp::Plain) {
        vec![false; hosts.len()]
    } else {
        vec![true; hosts.len()]
    };
    for p in patterns {
        let hit = one(p, hosts);
        for (r, h) in result.iter_mut().zip(hit) {
            match p.op {
                PatternOp::Plain => *r |= h,
                PatternOp::And => *r &= h,
                PatternOp::Not => *r &= !h,
            }
        }
    }
    result
}

/// A test on a group or host name.
type NameTest<'a> = Box<dyn Fn(&str) -> bool + 'a>;

fn one<C: Candidate>(p: &Pattern, hosts: &[C]) -> Vec<bool> {
    // `special`: a glob or regex, which also looks at host names when a
    // group matched (Ansible's `_enumerate_matches`).
    let (test, special): (NameTest<'_>, bool) = match &p.kind {
        PatternKind::Regex(re) => (Box::new(|s: &str| re.is_match(s)), true),
        PatternKind::Name(n) if n == "all" || n == "*" => (Box::new(|_: &str| true), true),
        PatternKind::Name(n) => (
            Box::new(move |s: &str| glob::matches(n, s)),
            glob::is_glob(n),
        ),
    };
    let by_group: Vec<bool> = hosts
        .iter()
        .map(|h| h.groups().iter().any(|g| test(g)))
        .collect();
    let any_group = by_group.iter().any(|&b| b);
    let mut hit: Vec<bool> = hosts
        .iter()
        .zip(&by_group)
        .map(|(h, &g)| g || ((!any_group || special) && test(h.name())))
        .collect();
    if let Some(s) = p.subscript {
        let idx: Vec<usize> = (0..hosts.len()).filter(|&i| hit[i]).collect();
        let keep: Vec<usize> = match s {
            Subscript::Index(i) => {
                let n = idx.len() as i64;
                let i = if i < 0 { n + i } else { i };
                if (0..n).contains(&i) {
                    vec![idx[i as usize]]
                } else {
                    vec![]
                }
            }
            Subscript::Range(a, b) => {
                let last = b.unwrap_or(usize::MAX);
                idx.iter()
                    .enumerate()
                    .filter(|&(k, _)| k >= a && k <= last)
                    .map(|(_, &i)| i)
                    .collect()
            }
        };
        hit = vec![false; hosts.len()];
        for i in keep {
            hit[i] = true;
        }
    }
    hit
}
