use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{Value as J, json};

use super::{Candidate, Target};

struct H {
    name: &'static str,
    addrs: Vec<IpAddr>,
    groups: Vec<String>,
    grains: serde_json::Map<String, J>,
}

impl Candidate for H {
    fn name(&self) -> &str {
        self.name
    }
    fn addresses(&self) -> Vec<IpAddr> {
        self.addrs.clone()
    }
    fn groups(&self) -> &[String] {
        &self.groups
    }
    fn grain(&self, key: &str) -> Option<&J> {
        self.grains.get(key)
    }
}

fn h(name: &'static str, addr: &str, groups: &[&str], grains: J) -> H {
    let mut g: Vec<String> = vec!["all".into()];
    g.extend(groups.iter().map(|s| s.to_string()));
    H {
        name,
        addrs: vec![addr.parse().unwrap()],
        groups: g,
        grains: grains.as_object().cloned().unwrap_or_default(),
    }
}

/// web-1..web-4 (web; 1 and 2 also prod), db-1 (db, prod), lb (no group).
fn fleet() -> Vec<H> {
    vec![
        h(
            "web-1",
            "10.0.0.1",
            &["web", "prod"],
            json!({"role": "web", "os": {"family": "Debian"}}),
        ),
        h(
            "web-2",
            "10.0.0.2",
            &["web", "prod"],
            json!({"role": "web", "roles": ["web", "cache"]}),
        ),
        h("web-3", "10.0.1.3", &["web"], json!({"role": "web"})),
        h(
            "web-4",
            "10.0.1.4",
            &["web"],
            json!({"role": "web", "port": 8080}),
        ),
        h("db-1", "10.0.2.1", &["db", "prod"], json!({"role": "db"})),
        h("lb", "192.168.1.1", &[], json!({})),
    ]
}

fn names(expr: &str) -> Vec<&'static str> {
    let hosts = fleet();
    let t = Target::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    t.select(&hosts).iter().map(|h| h.name).collect()
}

#[test]
fn compound_forms() {
    let cases: &[(&str, &[&str])] = &[
        ("web-*", &["web-1", "web-2", "web-3", "web-4"]),
        ("E@web-[12]", &["web-1", "web-2"]),
        ("E@db", &["db-1"]),
        ("L@lb,db-1", &["db-1", "lb"]),
        ("G@role:db", &["db-1"]),
        ("G@role:w*", &["web-1", "web-2", "web-3", "web-4"]),
        ("G@roles:cache", &["web-2"]),
        ("G@os:family:Debian", &["web-1"]),
        ("G@port:80*", &["web-4"]),
        ("S@10.0.1.0/24", &["web-3", "web-4"]),
        ("S@192.168.1.1", &["lb"]),
        ("G@role:web and not S@10.0.0.0/24", &["web-3", "web-4"]),
        ("not web-*", &["db-1", "lb"]),
        ("lb or db-1", &["db-1", "lb"]),
        (
            "G@role:web and E@web-\\d and not L@web-2",
            &["web-1", "web-3", "web-4"],
        ),
        // `and` binds tighter than `or`.
        ("lb or web-* and S@10.0.0.0/24", &["web-1", "web-2", "lb"]),
        ("(lb or web-*) and S@10.0.0.0/24", &["web-1", "web-2"]),
        (
            "( lb or web-* ) and not ( web-1 )",
            &["web-2", "web-3", "web-4", "lb"],
        ),
        ("E@web-(1|3)", &["web-1", "web-3"]),
        ("(E@web-(1|3))", &["web-1", "web-3"]),
        ("not not lb", &["lb"]),
    ];
    for (expr, want) in cases {
        assert!(super::is_compound(expr) || !expr.contains(' '), "{expr}");
        assert_eq!(names(expr), *want, "{expr}");
    }
}

#[test]
fn ansible_forms() {
    let cases: &[(&str, &[&str])] = &[
        ("web", &["web-1", "web-2", "web-3", "web-4"]),
        ("all", &["web-1", "web-2", "web-3", "web-4", "db-1", "lb"]),
        ("*", &["web-1", "web-2", "web-3", "web-4", "db-1", "lb"]),
        ("lb", &["lb"]),
        ("web:&prod", &["web-1", "web-2"]),
        ("web:!web-3", &["web-1", "web-2", "web-4"]),
        // Written order does not matter: plain, then &, then !.
        ("!web-3:web", &["web-1", "web-2", "web-4"]),
        ("&prod:web:!web-1", &["web-2"]),
        ("web*", &["web-1", "web-2", "web-3", "web-4"]),
        ("web-?", &["web-1", "web-2", "web-3", "web-4"]),
        ("~(web|db)-1", &["web-1", "db-1"]),
        ("~eb", &[]),
        ("web[0]", &["web-1"]),
        ("web[-1]", &["web-4"]),
        ("web[1:2]", &["web-2", "web-3"]),
        ("web[2:]", &["web-3", "web-4"]),
        ("web[:1]", &["web-1", "web-2"]),
        ("web[9]", &[]),
        ("web-[!2-4]", &["web-1"]),
        // Digits in brackets are a subscript, as in Ansible, not a class.
        ("web-[13]", &[]),
        ("db,lb", &["db-1", "lb"]),
        ("db, lb", &["db-1", "lb"]),
        ("prod,&web,!web-2", &["web-1"]),
        ("!prod", &["web-3", "web-4", "lb"]),
        ("nothing", &[]),
    ];
    for (expr, want) in cases {
        assert!(!super::is_compound(expr), "{expr}");
        assert_eq!(names(expr), *want, "{expr}");
    }
}

#[test]
fn errors_at_their_column() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "empty target"),
        ("   ", 1, "empty target"),
        ("(web-* or db-*", 1, "unclosed `(`"),
        ("web-* or db-*)", 14, "unmatched `)`"),
        ("web-* and (lb or (db-1)", 11, "unclosed `(`"),
        ("X@foo", 1, "unknown matcher `X@`"),
        ("lb or P@os:deb.*", 7, "`P@` (grain regex) is not supported"),
        ("E@web-(", 3, "bad regular expression"),
        ("lb and E@[z-a]", 10, "bad regular expression"),
        ("S@10.0.0.0/33", 3, "`10.0.0.0/33` is not a CIDR network"),
        ("S@banana", 3, "is not a CIDR"),
        ("G@role", 3, "`G@` needs key:value"),
        ("L@", 3, "`L@` needs names"),
        (
            "web-* and lb db-1",
            14,
            "expected `and` or `or` before `db-1`",
        ),
        ("web-* db-*", 6, "a pattern holds no spaces"),
        ("web-* and", 10, "expected an expression at the end"),
        ("and web", 1, "expected an expression before `and`"),
        ("()", 2, "expected an expression before `)`"),
        ("web::db", 5, "empty pattern"),
        ("web,", 5, "empty pattern"),
        ("web:!", 5, "`!` needs a pattern after it"),
        ("~web(", 2, "bad regular expression"),
        ("web[0:3", 4, "unclosed `[`"),
        ("web[3:1]", 4, "end comes before its start"),
        ("web db", 4, "a pattern holds no spaces"),
        ("é or X@x", 6, "unknown matcher"),
    ];
    for (expr, col, msg) in cases {
        let e = Target::parse(expr).expect_err(expr);
        assert_eq!(e.column, *col, "{expr}: {e}");
        assert!(e.message.contains(msg), "{expr}: {e}");
        assert_eq!(e.to_string(), format!("expr:1:{col}: {}", e.message));
    }
}

proptest! {
    #[test]
    fn parser_never_panics(s in "\\PC{0,40}") {
        if let Ok(t) = Target::parse(&s) {
            t.select(&fleet());
        }
    }

    #[test]
    fn parser_never_panics_on_grammar_soup(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("("), Just(")"), Just(" and "), Just(" or "), Just("not "),
                Just("E@"), Just("G@"), Just("S@"), Just("L@"), Just("Q@"), Just(":"),
                Just(","), Just("&"), Just("!"), Just("~"), Just("["), Just("]"),
                Just("web"), Just("*"), Just("1"), Just("-"), Just("/"), Just("é"),
            ],
            0..16,
        )
    ) {
        let s: String = parts.concat();
        if let Ok(t) = Target::parse(&s) {
            t.select(&fleet());
        }
    }
}
