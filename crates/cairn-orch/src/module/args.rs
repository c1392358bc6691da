//! Checking a module's arguments before any host is touched: every key is
//! known, required ones are there, values have the right shape.

use std::collections::BTreeSet;

use serde_json::{Map, Value as J};

use super::error::ModuleError;

/// Module arguments as given: `key=value` words on the command line, or a
/// state's mapping. Values stay JSON; each module coerces (`yes`/`true`).
pub type Args = Map<String, J>;

/// Reads one module's arguments; [`ArgReader::finish`] then rejects any key
/// nothing asked for, so a typo (`mdoe=0644`) is an error, not a no-op.
pub(crate) struct ArgReader<'a> {
    module: &'a str,
    args: &'a Args,
    known: BTreeSet<&'static str>,
}

impl<'a> ArgReader<'a> {
    pub fn new(module: &'a str, args: &'a Args) -> ArgReader<'a> {
        ArgReader {
            module,
            args,
            known: BTreeSet::new(),
        }
    }

    pub fn bad(&self, message: impl Into<String>) -> ModuleError {
        ModuleError::BadArgs {
            module: self.module.to_string(),
            message: message.into(),
        }
    }

    /// The first of `names` given (aliases: Ansible's `path`, Salt's
    /// `name`); two of them at once is ambiguous.
    fn get(
        &mut self,
        names: &[&'static str],
    ) -> Result<Option<(&'static str, &'a J)>, ModuleError> {
        self.known.extend(names.iter().copied());
        let given: Vec<_> = names
            .iter()
            .filter_map(|n| self.args.get(*n).map(|v| (*n, v)))
            .filter(|(_, v)| !v.is_null())
            .collect();
        match given.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            [a, b, ..] => Err(self.bad(format!("`{}` and `{}` mean the same; give one", a.0, b.0))),
        }
    }

    pub fn str(&mut self, names: &[&'static str]) -> Result<Option<String>, ModuleError> {
        match self.get(names)? {
            None => Ok(None),
            Some((_, J::String(s))) => Ok(Some(s.clone())),
            Some((_, J::Number(n))) => Ok(Some(n.to_string())),
            Some((_, J::Bool(b))) => Ok(Some(b.to_string())),
            Some((n, v)) => Err(self.bad(format!("`{n}` must be a string, not {v}"))),
        }
    }

    pub fn required(&mut self, names: &[&'static str]) -> Result<String, ModuleError> {
        match self.str(names)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.bad(format!("`{}` is required", names.join("` or `")))),
        }
    }

    /// Ansible's and Salt's booleans: `yes`/`no`, `true`/`false`, `1`/`0`,
    /// `on`/`off`.
    pub fn bool(&mut self, names: &[&'static str]) -> Result<Option<bool>, ModuleError> {
        let Some((n, v)) = self.get(names)? else {
            return Ok(None);
        };
        let text = match v {
            J::Bool(b) => return Ok(Some(*b)),
            J::Number(x) => x.to_string(),
            J::String(s) => s.to_ascii_lowercase(),
            _ => String::new(),
        };
        match text.as_str() {
            "yes" | "true" | "1" | "on" | "y" => Ok(Some(true)),
            "no" | "false" | "0" | "off" | "n" => Ok(Some(false)),
            _ => Err(self.bad(format!("`{n}` must be yes or no, not {v}"))),
        }
    }

    pub fn u64(&mut self, names: &[&'static str]) -> Result<Option<u64>, ModuleError> {
        let Some((n, v)) = self.get(names)? else {
            return Ok(None);
        };
        let parsed = match v {
            J::Number(x) => x.as_u64(),
            J::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| self.bad(format!("`{n}` must be a whole number, not {v}")))
    }

    /// A list: a JSON array, or one string split at commas (`names=a,b`).
    pub fn list(&mut self, names: &[&'static str]) -> Result<Option<Vec<String>>, ModuleError> {
        let Some((n, v)) = self.get(names)? else {
            return Ok(None);
        };
        let parsed = json_in_string(v);
        let v = parsed.as_ref().unwrap_or(v);
        let items = match v {
            J::Array(a) => a
                .iter()
                .map(|x| match x {
                    J::String(s) => Some(s.clone()),
                    J::Number(x) => Some(x.to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>(),
            J::String(s) => Some(
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
            ),
            _ => None,
        };
        items
            .map(Some)
            .ok_or_else(|| self.bad(format!("`{n}` must be a list of strings, not {v}")))
    }

    /// A mapping of strings: a JSON object, or `K=V` pairs separated by
    /// commas or spaces (`env='A=1 B=2'`).
    pub fn map(&mut self, names: &[&'static str]) -> Result<Vec<(String, String)>, ModuleError> {
        let Some((n, v)) = self.get(names)? else {
            return Ok(Vec::new());
        };
        let parsed = json_in_string(v);
        let v = parsed.as_ref().unwrap_or(v);
        let bad = || self.bad(format!("`{n}` must be a mapping (or K=V pairs), not {v}"));
        match v {
            J::Object(m) => m
                .iter()
                .map(|(k, v)| match v {
                    J::String(s) => Ok((k.clone(), s.clone())),
                    J::Number(_) | J::Bool(_) => Ok((k.clone(), v.to_string())),
                    _ => Err(bad()),
                })
                .collect(),
            J::String(s) => s
                .split([',', ' '])
                .filter(|w| !w.is_empty())
                .map(|w| {
                    w.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(bad)
                })
                .collect(),
            _ => Err(bad()),
        }
    }

    /// Any JSON value, unchecked (a template's `vars`); a string holding a
    /// JSON object or array is that value.
    pub fn value(&mut self, names: &[&'static str]) -> Result<Option<J>, ModuleError> {
        Ok(self
            .get(names)?
            .map(|(_, v)| json_in_string(v).unwrap_or_else(|| v.clone())))
    }

    /// One of `choices`; the first name of each row is what the module
    /// sees, the rest are Ansible's and Salt's other words for it.
    pub fn choice(
        &mut self,
        names: &[&'static str],
        choices: &[&[&'static str]],
    ) -> Result<Option<&'static str>, ModuleError> {
        let Some(s) = self.str(names)? else {
            return Ok(None);
        };
        for row in choices {
            if row.contains(&s.as_str()) {
                return Ok(Some(row[0]));
            }
        }
        let all: Vec<_> = choices.iter().flat_map(|r| r.iter().copied()).collect();
        Err(self.bad(format!(
            "`{}` must be one of {}, not `{s}`",
            names[0],
            all.join(", ")
        )))
    }

    /// Rejects arguments no one asked for, suggesting the nearest known one.
    pub fn finish(&self) -> Result<(), ModuleError> {
        for key in self.args.keys() {
            if !self.known.contains(key.as_str()) {
                let hint = nearest(key, self.known.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let known: Vec<_> = self.known.iter().copied().collect();
                return Err(self.bad(format!(
                    "unknown argument `{key}`{hint}; it takes {}",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// A command line's `names=["a","b"]` or `vars={"port":80}`: the JSON
/// inside a string, for the arguments that take a list or a mapping. Only
/// those look inside, so `content={"a":1}` stays the text it is.
fn json_in_string(v: &J) -> Option<J> {
    match v {
        J::String(s) if s.starts_with('[') || s.starts_with('{') => serde_json::from_str(s)
            .ok()
            .filter(|j: &J| j.is_array() || j.is_object()),
        _ => None,
    }
}

/// The candidate closest to `word`, if close enough to be a likely typo:
/// a few letters dropped, added or swapped (`mdoe`, `gdi`, `fiel`).
pub(crate) fn nearest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<String> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// `key=value` words from the command line, every value a string for the
/// module to coerce (`mode=0644` stays octal text; `names=["a","b"]` is
/// read as a list by the arguments that take one).
pub fn parse_kv(words: &[String]) -> Result<Args, ModuleError> {
    let bad = |message: String| ModuleError::BadArgs {
        module: "(arguments)".into(),
        message,
    };
    let mut args = Args::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(bad(format!("`{w}` is not key=value")));
        };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad(format!("`{k}` is not an argument name (in `{w}`)")));
        }
        if args
            .insert(k.to_string(), J::String(v.to_string()))
            .is_some()
        {
            return Err(bad(format!("`{k}` given twice")));
        }
    }
    Ok(args)
}
