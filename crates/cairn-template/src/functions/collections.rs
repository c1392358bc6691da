//! Collection functions: `range`, `union`, `intersection`, `coalesce`,
//! `contains`.

use indexmap::{IndexMap, IndexSet};
use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::args::{
    expect_int, invalid, is_list, is_map, list_items, map_pairs, ordinal, type_name, wrong_type,
};

/// The most numbers `range` makes (ARM's limit).
pub const MAX_RANGE_COUNT: i128 = 10_000;

/// `range(start, count)`: `count` consecutive integers from `start`, like
/// ARM's `range`. With a single argument, `range(n)` is `0 .. n-1`, as in
/// Jinja.
///
/// This replaces minijinja's builtin `range`: note that `range(2, 3)` is
/// `[2, 3, 4]` (ARM), not `[2]` (Jinja), and there is no step argument.
pub fn range(args: Rest<Value>) -> Result<Vec<i64>, Error> {
    const F: &str = "range";
    let (start, count) = match args.as_slice() {
        [count] => (0, expect_int(F, "the count", count)?),
        [start, count] => (
            expect_int(F, "the start index", start)?,
            expect_int(F, "the count", count)?,
        ),
        [] => {
            return Err(Error::new(
                ErrorKind::MissingArgument,
                "range() needs a start index and a count: range(start, count)",
            ));
        }
        _ => {
            return Err(Error::new(
                ErrorKind::TooManyArguments,
                "range() takes a start index and a count, range(start, count), \
                 like ARM's range; there is no step argument",
            ));
        }
    };
    if count < 0 {
        return Err(invalid(format!(
            "{F}(): the count must not be negative, got {count}"
        )));
    }
    if count > MAX_RANGE_COUNT {
        return Err(invalid(format!(
            "{F}(): the count {count} is larger than the limit of {MAX_RANGE_COUNT}"
        )));
    }
    let end = start.saturating_add(count);
    if start < i128::from(i64::MIN) || end > i128::from(i64::MAX) {
        return Err(invalid(format!(
            "{F}(): the range from {start} with {count} numbers does not fit in 64-bit integers"
        )));
    }
    // Both bounds are within i64 now.
    Ok((start as i64..end as i64).collect())
}

/// Whether every argument is a list, or every argument a map; an error
/// naming the first one that breaks the pattern otherwise.
#[derive(PartialEq)]
enum Shape {
    Lists,
    Maps,
}

fn shape(func: &str, args: &[Value]) -> Result<Shape, Error> {
    if args.len() < 2 {
        return Err(Error::new(
            ErrorKind::MissingArgument,
            format!("{func}() needs at least two lists or two maps"),
        ));
    }
    let first = &args[0];
    let shape = if is_list(first) {
        Shape::Lists
    } else if is_map(first) {
        Shape::Maps
    } else {
        return Err(wrong_type(
            func,
            "the 1st argument",
            "a list or a map",
            first,
        ));
    };
    for (i, arg) in args.iter().enumerate().skip(1) {
        let ok = match shape {
            Shape::Lists => is_list(arg),
            Shape::Maps => is_map(arg),
        };
        if !ok {
            let expected = if shape == Shape::Lists {
                "a list (like the 1st argument)"
            } else {
                "a map (like the 1st argument)"
            };
            return Err(wrong_type(
                func,
                &format!("the {} argument", ordinal(i)),
                expected,
                arg,
            ));
        }
    }
    Ok(shape)
}

/// Merges `b` into `a`: later values win, nested maps merge recursively
/// (ARM's `union` on objects).
fn deep_merge(a: &mut IndexMap<Value, Value>, b: Vec<(Value, Value)>) {
    for (key, value) in b {
        match a.get_mut(&key) {
            Some(existing) if is_map(existing) && is_map(&value) => {
                let mut inner: IndexMap<Value, Value> = map_pairs("union", "a value", existing)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                deep_merge(
                    &mut inner,
                    map_pairs("union", "a value", &value).unwrap_or_default(),
                );
                *existing = Value::from_pairs(inner);
            }
            _ => {
                a.insert(key, value);
            }
        }
    }
}

/// `union(a, b, ...)`: for lists, every distinct item in order of first
/// appearance; for maps, all keys, later values winning and nested maps
/// merged (like ARM's `union`).
pub fn union(args: Rest<Value>) -> Result<Value, Error> {
    const F: &str = "union";
    match shape(F, &args)? {
        Shape::Lists => {
            let mut seen = IndexSet::new();
            for (i, arg) in args.iter().enumerate() {
                for item in list_items(F, &format!("the {} argument", ordinal(i)), arg)? {
                    seen.insert(item);
                }
            }
            Ok(Value::from(seen.into_iter().collect::<Vec<_>>()))
        }
        Shape::Maps => {
            let mut merged = IndexMap::new();
            for (i, arg) in args.iter().enumerate() {
                deep_merge(
                    &mut merged,
                    map_pairs(F, &format!("the {} argument", ordinal(i)), arg)?,
                );
            }
            Ok(Value::from_pairs(merged))
        }
    }
}

/// `intersection(a, b, ...)`: for lists, the distinct items of the first
/// list that are in every list; for maps, the key/value pairs present (with
/// equal values) in every map. Like ARM's `intersection`.
pub fn intersection(args: Rest<Value>) -> Result<Value, Error> {
    const F: &str = "intersection";
    match shape(F, &args)? {
        Shape::Lists => {
            let mut lists = Vec::with_capacity(args.len());
            for (i, arg) in args.iter().enumerate() {
                let items: IndexSet<Value> =
                    list_items(F, &format!("the {} argument", ordinal(i)), arg)?
                        .into_iter()
                        .collect();
                lists.push(items);
            }
            let Some((first, rest)) = lists.split_first() else {
                return Ok(Value::from(Vec::<Value>::new()));
            };
            let common: Vec<Value> = first
                .iter()
                .filter(|item| rest.iter().all(|l| l.contains(*item)))
                .cloned()
                .collect();
            Ok(Value::from(common))
        }
        Shape::Maps => {
            let mut maps = Vec::with_capacity(args.len());
            for (i, arg) in args.iter().enumerate() {
                let pairs: IndexMap<Value, Value> =
                    map_pairs(F, &format!("the {} argument", ordinal(i)), arg)?
                        .into_iter()
                        .collect();
                maps.push(pairs);
            }
            let Some((first, rest)) = maps.split_first() else {
                return Ok(Value::from_pairs(Vec::<(Value, Value)>::new()));
            };
            let common: Vec<(Value, Value)> = first
                .iter()
                .filter(|(k, v)| rest.iter().all(|m| m.get(*k) == Some(*v)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(Value::from_pairs(common))
        }
    }
}

/// `coalesce(a, b, ...)`: the first argument that is neither none nor
/// undefined; none if there is none.
pub fn coalesce(args: Rest<Value>) -> Result<Value, Error> {
    if args.is_empty() {
        return Err(Error::new(
            ErrorKind::MissingArgument,
            "coalesce() needs at least one argument",
        ));
    }
    Ok(args
        .iter()
        .find(|v| !v.is_none() && !v.is_undefined())
        .cloned()
        .unwrap_or(Value::from(())))
}

/// `contains(container, item)`: whether a string contains a substring
/// (case-sensitive), a list contains an item, or a map contains a key
/// (case-insensitive for string keys). Like ARM's `contains`.
pub fn contains(container: Value, item: Value) -> Result<bool, Error> {
    const F: &str = "contains";
    if item.is_undefined() {
        return Err(invalid(format!("{F}(): the item to find is undefined")));
    }
    match container.kind() {
        ValueKind::String => {
            let needle = match item.kind() {
                ValueKind::String => item.as_str().unwrap_or_default().to_owned(),
                ValueKind::Number => item.to_string(),
                _ => {
                    return Err(invalid(format!(
                        "{F}(): to search a string, the item must be a string or a number, got {}",
                        type_name(&item)
                    )));
                }
            };
            Ok(container.as_str().unwrap_or_default().contains(&needle))
        }
        ValueKind::Seq | ValueKind::Iterable => {
            Ok(list_items(F, "the container", &container)?.contains(&item))
        }
        ValueKind::Map => {
            let keys = map_pairs(F, "the container", &container)?;
            let found = match item.as_str().filter(|_| item.kind() == ValueKind::String) {
                Some(wanted) => {
                    let wanted = wanted.to_lowercase();
                    keys.iter().any(|(k, _)| match k.as_str() {
                        Some(k) => k.to_lowercase() == wanted,
                        None => *k == item,
                    })
                }
                None => keys.iter().any(|(k, _)| *k == item),
            };
            Ok(found)
        }
        _ => Err(wrong_type(
            F,
            "the container",
            "a string, a list or a map",
            &container,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    #[test]
    fn range_arm_style() {
        assert_eq!(json("range(1, 3)"), "[1,2,3]");
        assert_eq!(json("range(5, 0)"), "[]");
        assert_eq!(json("range(-2, 3)"), "[-2,-1,0]");
        assert_eq!(json("range(3)"), "[0,1,2]");
        assert_eq!(json("range(0)"), "[]");
        assert_eq!(json("range(10000) | length"), "10000");
        assert_eq!(render("{% for i in range(2) %}{{ i }}{% endfor %}"), "01");
        assert_eq!(
            json("range(9223372036854775806, 1)"),
            "[9223372036854775806]"
        );
    }

    #[test]
    fn range_errors() {
        assert!(err("range(1, -1)").contains("the count must not be negative"));
        assert!(err("range(1, 10001)").contains("larger than the limit of 10000"));
        assert!(err("range(9223372036854775807, 2)").contains("does not fit"));
        assert!(err("range(0, 5, 1)").contains("there is no step argument"));
        assert!(err("range()").contains("needs a start index and a count"));
        assert!(err("range('a', 1)").contains("the start index must be an integer, got string"));
        assert!(err("range(1, 1.5)").contains("must be an integer"));
        // Extreme values fail cleanly instead of overflowing.
        let huge = |start: i128| {
            super::range(minijinja::value::Rest(vec![start.into(), 1.into()]))
                .unwrap_err()
                .to_string()
        };
        assert!(huge(i128::MAX).contains("does not fit"));
        assert!(huge(i128::MIN).contains("does not fit"));
    }

    #[test]
    fn union_lists() {
        assert_eq!(
            json("union(['one', 'two', 'three'], ['three', 'four'])"),
            r#"["one","two","three","four"]"#
        );
        assert_eq!(json("union([1, 1, 2], [2, 3], [3, 4, 1])"), "[1,2,3,4]");
        assert_eq!(json("union([], [])"), "[]");
    }

    #[test]
    fn union_maps() {
        // ARM docs example.
        assert_eq!(
            json(
                "union({'one': 'a', 'two': 'b', 'three': 'c1'}, {'three': 'c2', 'four': 'd', 'five': 'e'})"
            ),
            r#"{"one":"a","two":"b","three":"c2","four":"d","five":"e"}"#
        );
        // Nested maps merge; nested lists are replaced.
        assert_eq!(
            json("union({'a': {'x': 1, 'y': [1]}, 'b': 1}, {'a': {'y': [2], 'z': 3}})"),
            r#"{"a":{"x":1,"y":[2],"z":3},"b":1}"#
        );
        // A map replacing a scalar, and the other way round.
        assert_eq!(
            json("union({'a': 1, 'b': {'c': 1}}, {'a': {'c': 2}, 'b': 2})"),
            r#"{"a":{"c":2},"b":2}"#
        );
    }

    #[test]
    fn union_errors() {
        assert!(err("union([1])").contains("needs at least two"));
        assert!(
            err("union([1], {'a': 1})")
                .contains("the 2nd argument must be a list (like the 1st argument), got map")
        );
        assert!(
            err("union({'a': 1}, [1])").contains("must be a map (like the 1st argument), got list")
        );
        assert!(
            err("union('ab', 'cd')")
                .contains("the 1st argument must be a list or a map, got string")
        );
        assert!(err("union([1], nope)").contains("undefined"));
    }

    #[test]
    fn intersection_cases() {
        assert_eq!(
            json("intersection(['one', 'two', 'three'], ['two', 'three'], ['three', 'two', 'x'])"),
            r#"["two","three"]"#
        );
        assert_eq!(json("intersection([1, 1, 2], [1])"), "[1]");
        assert_eq!(json("intersection([1], [2])"), "[]");
        // ARM docs example.
        assert_eq!(
            json(
                "intersection({'one': 'a', 'two': 'b', 'three': 'c'}, {'one': 'a', 'two': 'z', 'three': 'c'})"
            ),
            r#"{"one":"a","three":"c"}"#
        );
        assert!(err("intersection([1])").contains("needs at least two"));
        assert!(err("intersection([1], 'a')").contains("must be a list"));
    }

    #[test]
    fn coalesce_cases() {
        assert_eq!(json("coalesce(none, nope, 'a', 'b')"), r#""a""#);
        assert_eq!(json("coalesce(none, 0)"), "0");
        assert_eq!(json("coalesce(none, '')"), r#""""#);
        assert_eq!(json("coalesce(false, 1)"), "false");
        assert_eq!(json("coalesce(none, nope)"), "null");
        assert_eq!(json("coalesce({'a': none}.a, [1])"), "[1]");
        assert!(err("coalesce()").contains("at least one argument"));
    }

    #[test]
    fn contains_cases() {
        // ARM docs examples.
        assert_eq!(json("contains('OneTwoThree', 'e')"), "true");
        assert_eq!(json("contains('OneTwoThree', 'z')"), "false");
        assert_eq!(json("contains({'one': 'a', 'two': 'b'}, 'one')"), "true");
        assert_eq!(json("contains({'one': 'a', 'two': 'b'}, 'a')"), "false");
        assert_eq!(json("contains(['one', 'two'], 'one')"), "true");
        assert_eq!(json("contains(['one', 'two'], 'three')"), "false");
        // String search is case-sensitive, key lookup is not (as in ARM).
        assert_eq!(json("contains('OneTwo', 'one')"), "false");
        assert_eq!(json("contains({'One': 1}, 'oNE')"), "true");
        assert_eq!(json("contains('a1b', 1)"), "true");
        assert_eq!(json("contains([1, 2], 2)"), "true");
        assert_eq!(json("contains([[1], 2], [1])"), "true");
        assert_eq!(json("contains([], 1)"), "false");
        assert!(
            err("contains(1, 1)")
                .contains("the container must be a string, a list or a map, got int")
        );
        assert!(err("contains(none, 1)").contains("got none"));
        assert!(err("contains('a', [1])").contains("must be a string or a number, got list"));
        assert!(err("contains('a', nope)").contains("undefined"));
    }
}
