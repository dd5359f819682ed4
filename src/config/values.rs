//! Checks of one key's value that do not depend on which key it is: integers in a range,
//! powers of two, keywords, paths and interface lists.
//!
//! Contract: each returns the value (or the default when the key is absent or wrong) and
//! reports a wrong value into `Problems` as "<key> ...; <fix>", with the value's span.

use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::str::FromStr;

use toml::Spanned;

use super::problems::Problems;
use super::types::{InterfacePattern, Interfaces, KeywordError};

pub(super) fn first_span(spans: &[Option<Range<usize>>]) -> Option<Range<usize>> {
    spans.iter().flatten().next().cloned()
}

pub(super) fn path(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<String>>,
    default: &str,
) -> PathBuf {
    let Some(value) = raw else {
        return PathBuf::from(default);
    };
    let text = value.get_ref();
    if text.is_empty() {
        p.push(
            value.span(),
            format!("{key} is empty; give a path such as \"{default}\""),
        );
    } else if text.contains('\0') {
        p.push(
            value.span(),
            format!("{key} contains a NUL byte; remove it"),
        );
    }
    PathBuf::from(text)
}

/// An integer key within `range`, converted to `T`; the default is used when absent.
pub(super) fn int_in<T>(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<i64>>,
    default: T,
    range: RangeInclusive<i64>,
) -> T
where
    T: TryFrom<i64>,
{
    let Some(value) = raw else {
        return default;
    };
    let v = *value.get_ref();
    if !range.contains(&v) {
        p.push(
            value.span(),
            format!(
                "{key} = {v} is out of range; use {}..={}",
                range.start(),
                range.end()
            ),
        );
        return default;
    }
    T::try_from(v).unwrap_or_else(|_| panic!("{key}: range {range:?} fits the target type"))
}

/// A power of two within `range`; the default is used when absent.
pub(super) fn power_of_two(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<i64>>,
    default: u32,
    range: RangeInclusive<u32>,
) -> u32 {
    let Some(value) = raw else {
        return default;
    };
    let v = *value.get_ref();
    let in_range = u32::try_from(v).ok().filter(|v| range.contains(v));
    match in_range {
        Some(v) if v.is_power_of_two() => v,
        Some(v) => {
            let above = v.next_power_of_two();
            p.push(
                value.span(),
                format!(
                    "{key} = {v} is not a power of two; use {} or {above}",
                    above / 2
                ),
            );
            default
        }
        None => {
            p.push(
                value.span(),
                format!(
                    "{key} = {v} is out of range; use a power of two in {}..={}",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
}

pub(super) fn keyword<T>(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<String>>,
    default: T,
) -> T
where
    T: FromStr<Err = KeywordError>,
{
    let Some(value) = raw else {
        return default;
    };
    match value.get_ref().parse() {
        Ok(parsed) => parsed,
        Err(err) => {
            p.push(
                value.span(),
                format!("{key} = \"{}\" is not recognized; {err}", value.get_ref()),
            );
            default
        }
    }
}

pub(super) fn interfaces(
    p: &mut Problems,
    key: &str,
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Interfaces {
    let Some(list) = raw else {
        return Interfaces::All;
    };
    if list.get_ref().is_empty() {
        p.push(
            list.span(),
            format!("{key} is empty, which selects no interface; list names or globs such as \"eth*\", or remove the key"),
        );
        return Interfaces::All;
    }
    let mut patterns: Vec<InterfacePattern> = Vec::new();
    for entry in list.get_ref() {
        match entry.get_ref().parse::<InterfacePattern>() {
            Ok(pattern) if patterns.contains(&pattern) => p.push(
                entry.span(),
                format!("{key}: \"{pattern}\" is listed twice; remove one"),
            ),
            Ok(pattern) => patterns.push(pattern),
            Err(err) => p.push(
                entry.span(),
                format!(
                    "{key}: interface pattern \"{}\" {err}; write a name such as \"eth0\" or a \
                     glob such as \"eth*\"",
                    entry.get_ref()
                ),
            ),
        }
    }
    if patterns.is_empty() {
        return Interfaces::All;
    }
    Interfaces::Only(patterns)
}
