//! Ansible's host ranges: `web[01:03].example.test` is web01, web02 and
//! web03 (zero-padded as written), `db-[a:c]` is db-a, db-b, db-c,
//! `[1:9:2]` steps by two; several ranges in one name multiply.

/// The names a host pattern stands for (itself when it has no range).
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let Some(close) = pattern[open..].find(']').map(|c| open + c) else {
        return Err(format!("unclosed `[` in host range `{pattern}`"));
    };
    let (head, inner, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = inner.split(':').collect();
    let (beg, end, step) = match parts.as_slice() {
        [b, e] => (*b, *e, 1),
        [b, e, s] => (
            *b,
            *e,
            s.parse::<usize>()
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| format!("bad step `{s}` in host range `{pattern}`"))?,
        ),
        _ => {
            return Err(format!(
                "a host range is [BEGIN:END] or [BEGIN:END:STEP], not `[{inner}]`"
            ));
        }
    };
    let items: Vec<String> = if let (Ok(b), Ok(e)) = (beg.parse::<u64>(), end.parse::<u64>()) {
        if b > e {
            return Err(format!("host range `[{inner}]` ends before it begins"));
        }
        let width = if beg.len() > 1 && beg.starts_with('0') {
            beg.len()
        } else {
            0
        };
        (b..=e)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else if let ([b], [e]) = (beg.as_bytes(), end.as_bytes())
        && b.is_ascii_alphabetic()
        && e.is_ascii_alphabetic()
    {
        if b > e {
            return Err(format!("host range `[{inner}]` ends before it begins"));
        }
        (*b..=*e)
            .step_by(step)
            .map(|c| (c as char).to_string())
            .collect()
    } else {
        return Err(format!(
            "host range `[{inner}]` needs two numbers or two letters"
        ));
    };
    let mut out = Vec::new();
    for item in items {
        for rest in expand(tail)? {
            out.push(format!("{head}{item}{rest}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn ranges() {
        let ok: &[(&str, &[&str])] = &[
            ("web", &["web"]),
            (
                "web[01:03].example.test",
                &[
                    "web01.example.test",
                    "web02.example.test",
                    "web03.example.test",
                ],
            ),
            ("web[1:3]", &["web1", "web2", "web3"]),
            ("db-[a:c]", &["db-a", "db-b", "db-c"]),
            ("n[0:6:3]", &["n0", "n3", "n6"]),
            ("r[1:2]-[a:b]", &["r1-a", "r1-b", "r2-a", "r2-b"]),
        ];
        for (p, want) in ok {
            assert_eq!(expand(p).unwrap(), *want, "{p}");
        }
        for bad in ["web[1:", "web[3:1]", "web[1]", "web[a:3]", "web[1:3:0]"] {
            assert!(expand(bad).is_err(), "{bad}");
        }
    }
}
