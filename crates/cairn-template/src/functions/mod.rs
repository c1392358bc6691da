//! The template function library: ARM-style functions and filters for
//! minijinja.
//!
//! Every function is registered under a snake_case name by [`register`]; the
//! ones that read naturally as filters are registered as filters too, so both
//! `{{ base64(x) }}` and `{{ x | base64 }}` work. [`FUNCTION_NAMES`] lists
//! every name registered here (functions and filters) for "did you mean"
//! suggestions.
//!
//! Families, one module each:
//!
//! * [`arm`] has `unique_string`, `guid` (byte-for-byte the same results as ARM's
//!   `uniqueString` and `guid`).
//! * [`net`] has `cidr_subnet`, `cidr_host` (Terraform's `cidrsubnet` and
//!   `cidrhost`), `parse_cidr` (ARM's `parseCidr`).
//! * [`text`] has `base64`, `base64_decode`, `to_json`, `from_json`, `format`,
//!   `pad_left`, `replace`, `split`, `join`, `substring`.
//! * [`collections`] has `range`, `union`, `intersection`, `coalesce`,
//!   `contains`.
//! * [`time`] has `date_time_add`, `utc_now`.
//! * [`files`] has `file`.
//!
//! Notes on names shared with minijinja's builtins:
//!
//! * `range` replaces minijinja's builtin `range` function with ARM's
//!   `range(start, count)`. `range(n)` with one argument still means
//!   `0, 1, ..., n-1`, as in Jinja, but `range(a, b)` means *`b` numbers
//!   starting at `a`* (ARM), not *`a` up to `b`* (Jinja), and there is no step.
//! * The `replace` and `join` filters stay minijinja's builtins: for the ARM
//!   call shapes (`s | replace(old, new)`, `list | join(sep)`) they give the
//!   same results, and they also keep the builtin extras (`count=`,
//!   `attribute=`). The `replace` and `join` *functions* are ours.
//! * The `split` filter is ours and a superset of the builtin: a list of
//!   delimiters splits on any of them (ARM); no delimiter, or a `maxsplits`
//!   argument, falls back to the builtin behaviour.
//!
//! Errors are `minijinja::Error`s of kind `InvalidOperation` (or
//! `MissingArgument` / `TooManyArguments`) whose message names the function
//! and says what was wrong. No function panics on any input.
mod args;
pub mod arm;
pub mod collections;
mod context;
pub mod files;
pub mod net;
pub mod text;
pub mod time;

use minijinja::Environment;
use minijinja::value::Value;

pub use context::FunctionContext;

/// Every name [`register`] may add, functions and filters, sorted.
///
/// `utc_now` is listed even though it is registered only when
/// [`FunctionContext::allow_utc_now`] is set, so that a suggestion can point
/// at it (and the caller can explain where it is allowed).
pub const FUNCTION_NAMES: &[&str] = &[
    "base64",
    "base64_decode",
    "cidr_host",
    "cidr_subnet",
    "coalesce",
    "contains",
    "date_time_add",
    "file",
    "format",
    "from_json",
    "guid",
    "intersection",
    "join",
    "pad_left",
    "parse_cidr",
    "range",
    "replace",
    "split",
    "substring",
    "to_json",
    "union",
    "unique_string",
    "utc_now",
];

/// Registers the whole function library (functions and filters) on `env`.
pub fn register(env: &mut Environment<'static>, ctx: &FunctionContext) {
    // arm
    env.add_function("unique_string", arm::unique_string);
    env.add_filter("unique_string", arm::unique_string);
    env.add_function("guid", arm::guid);

    // net
    env.add_function("cidr_subnet", net::cidr_subnet);
    env.add_function("cidr_host", net::cidr_host);
    env.add_function("parse_cidr", net::parse_cidr);

    // text
    env.add_function("base64", text::base64);
    env.add_filter("base64", text::base64);
    env.add_function("base64_decode", text::base64_decode);
    env.add_filter("base64_decode", text::base64_decode);
    env.add_function("to_json", text::to_json);
    env.add_filter("to_json", text::to_json);
    env.add_function("from_json", text::from_json);
    env.add_filter("from_json", text::from_json);
    env.add_function("format", text::format);
    env.add_function("pad_left", text::pad_left);
    env.add_filter("pad_left", text::pad_left);
    env.add_function("replace", text::replace);
    env.add_function("split", text::split);
    env.add_filter("split", text::split_filter);
    env.add_function("join", text::join);
    env.add_function("substring", text::substring);
    env.add_filter("substring", text::substring);

    // collections
    env.add_function("range", collections::range);
    env.add_function("union", collections::union);
    env.add_function("intersection", collections::intersection);
    env.add_function("coalesce", collections::coalesce);
    env.add_function("contains", collections::contains);

    // time
    env.add_function("date_time_add", time::date_time_add);
    if ctx.allow_utc_now {
        let now = ctx.now;
        env.add_function("utc_now", move |format: Option<Value>| {
            time::utc_now(now, format)
        });
    }

    // files
    let base_dir = ctx.base_dir.clone();
    env.add_function("file", move |path: Value| files::file(&base_dir, path));
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    use minijinja::Error;

    use super::*;

    /// An environment with the library registered, `utc_now` allowed, the
    /// clock at 2024-03-05T17:53:18Z and `base_dir` as given.
    pub fn env_with(base_dir: PathBuf, allow_utc_now: bool) -> Environment<'static> {
        let mut env = Environment::new();
        let ctx = FunctionContext {
            base_dir,
            now: ::time::macros::datetime!(2024-03-05 17:53:18 UTC),
            allow_utc_now,
        };
        register(&mut env, &ctx);
        env
    }

    pub fn env() -> Environment<'static> {
        env_with(std::env::temp_dir(), true)
    }

    /// Evaluates an expression, returning its value.
    pub fn eval(expr: &str) -> Result<Value, Error> {
        let env = env();
        let e = env.compile_expression(expr)?;
        e.eval(())
    }

    /// Evaluates an expression that must succeed; returns its JSON form.
    pub fn json(expr: &str) -> String {
        let v = eval(expr).unwrap_or_else(|e| panic!("{expr}: {e:#}"));
        serde_json::to_string(&v).expect("serializable")
    }

    /// Renders a template that must succeed.
    pub fn render(tmpl: &str) -> String {
        let env = env();
        env.render_str(tmpl, ())
            .unwrap_or_else(|e| panic!("{tmpl}: {e:#}"))
    }

    /// Evaluates an expression that must fail; returns the error message.
    pub fn err(expr: &str) -> String {
        match eval(expr) {
            Ok(v) => panic!("{expr}: expected an error, got {v:?}"),
            Err(e) => e.detail().unwrap_or_default().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn function_names_are_sorted_and_registered() {
        let mut sorted = FUNCTION_NAMES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, FUNCTION_NAMES);
        let env = env();
        for name in FUNCTION_NAMES {
            let is_fn = env.globals().any(|(k, _)| k == *name);
            assert!(is_fn, "{name} is not registered as a function");
        }
    }

    #[test]
    fn utc_now_only_when_allowed() {
        let env = env_with(std::env::temp_dir(), false);
        assert!(!env.globals().any(|(k, _)| k == "utc_now"));
        let e = env.compile_expression("utc_now()").unwrap();
        assert!(e.eval(()).is_err());
    }

    #[test]
    fn filters_work() {
        assert_eq!(render("{{ 'hi' | base64 }}"), "aGk=");
        assert_eq!(render("{{ 'aGk=' | base64_decode }}"), "hi");
        assert_eq!(render("{{ 'aaa' | unique_string }}"), "zavj67f3en4hc");
        assert_eq!(render("{{ 'a-b' | replace('-', '_') }}"), "a_b");
        assert_eq!(render("{{ ['a', 'b'] | join(',') }}"), "a,b");
        assert_eq!(render("{{ 'a,b;c' | split([',', ';']) | length }}"), "3");
        assert_eq!(render("{{ 'a b  c' | split | length }}"), "3");
        assert_eq!(render("{{ 'a,b,c' | split(',', 1) | length }}"), "2");
        assert_eq!(render("{{ '7' | pad_left(3, '0') }}"), "007");
        assert_eq!(render("{{ 'hello' | substring(1, 3) }}"), "ell");
        assert_eq!(render("{{ {'a': 1} | to_json }}"), r#"{"a":1}"#);
        assert_eq!(render("{{ ('[1,2]' | from_json)[1] }}"), "2");
    }

    proptest::proptest! {
        // No function panics, whatever it is given.
        #[test]
        fn never_panics_on_strings(s in ".{0,40}", t in "[-+PTYMWDHS0-9.:/a-fx%{}, ]{0,24}") {
            let sv = Value::from(s.as_str());
            let tv = Value::from(t.as_str());
            let _ = net::parse_prefix("f", &s);
            let _ = net::parse_prefix("f", &t);
            let _ = net::cidr_host(tv.clone(), Value::from(-1));
            let _ = time::parse_timestamp(&s);
            let _ = time::parse_timestamp(&t);
            let _ = time::parse_duration(&s);
            let _ = time::parse_duration(&t);
            let now = ::time::macros::datetime!(2024-03-05 17:53:18 UTC);
            let _ = time::format_dotnet(now, &s);
            let _ = time::format_dotnet(now, &t);
            let _ = time::date_time_add(sv.clone(), tv.clone(), Some(tv.clone()));
            let _ = text::format(sv.clone(), minijinja::value::Rest(vec![Value::from(1.5), tv.clone()]));
            let _ = text::format(tv.clone(), minijinja::value::Rest(vec![Value::from(-3), sv.clone()]));
            let _ = text::split(sv.clone(), tv.clone());
            let _ = text::base64_decode(sv.clone());
            let _ = text::from_json(sv.clone());
            let _ = text::pad_left(sv.clone(), Value::from(5), Some(tv.clone()));
            let _ = arm::unique_string(minijinja::value::Rest(vec![sv.clone(), tv.clone()]));
            let _ = collections::contains(sv.clone(), tv.clone());
        }

        #[test]
        fn never_panics_on_numbers(a in proptest::num::i64::ANY, b in proptest::num::i64::ANY, c in proptest::num::i64::ANY) {
            for prefix in ["10.0.0.0/8", "0.0.0.0/0", "fe80::/48", "::/0", "::ffff:10.0.0.0/104", "1.2.3.4/32"] {
                let _ = net::cidr_subnet(prefix.into(), a.into(), b.into());
                let _ = net::cidr_host(prefix.into(), c.into());
            }
            let _ = collections::range(minijinja::value::Rest(vec![a.into(), b.into()]));
            let _ = text::substring("hello".into(), a.into(), Some(b.into()));
            let _ = text::pad_left("x".into(), c.into(), None);
            let _ = text::format(
                Value::from("{0:D5}{0:N3}{0:X}{0:P1}{0:E2}{0:F0}"),
                minijinja::value::Rest(vec![Value::from(a)]),
            );
            let _ = text::format(
                Value::from("{0:N3}{0:P1}{0:E2}{0:F0}{0,-9}"),
                minijinja::value::Rest(vec![Value::from(f64::from_bits(b as u64))]),
            );
        }
    }
}
