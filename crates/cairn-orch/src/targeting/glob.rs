//! Shell-style wildcards as Python's `fnmatch` reads them (what Salt and
//! Ansible use for names): `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`. A `[`
//! without its `]` is an ordinary character. Case-sensitive.

/// Whether the text has a wildcard character at all.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Whether `text` matches `pattern` in full.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`: linear
    // in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, next)) = class(&p, pi, t[ti]) {
                        if hit {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A character class at `p[start] == '['`: whether `c` is in it and the
/// index after its `]`; `None` when the class is not closed.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!'));
    if negate {
        i += 1;
    }
    let first = i;
    let mut hit = false;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && i > first {
            return Some((hit != negate, i + 1));
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            if ch <= c && c <= p[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if ch == c {
                hit = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn table() {
        let cases = [
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("web-*", "db-1", false),
            ("*", "", true),
            ("w?b", "web", true),
            ("w?b", "wb", false),
            ("web[0-2]", "web1", true),
            ("web[0-2]", "web3", false),
            ("web[!0-2]", "web3", true),
            ("web[!0-2]", "web1", false),
            ("web[", "web[", true),
            ("[]]x", "]x", true),
            ("*.example.test", "a.b.example.test", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("é*", "éa", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(matches(p, t), want, "{p} vs {t}");
        }
    }
}
