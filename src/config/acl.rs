//! Resolution of named MAC access lists.
//!
//! Contract: an ACL entry is a MAC address (any spelling `parse_mac` accepts) or the
//! name of another ACL, resolved recursively. A cycle, an unknown name, a group (multicast)
//! or all-zero MAC, or more than `MacList::LEN_MAX` distinct MACs after resolution is an error,
//! reported once, at the entry that causes it; ACLs and lists that merely include a broken ACL
//! are marked broken without repeating the report.
//!
//! Hazard: MAC filtering is not a security boundary (MACs are trivially forged), as ggaoed's
//! documentation says; it keeps well-behaved initiators apart.

use super::types::parse_mac;
use std::collections::BTreeMap;

use toml::Spanned;

use super::problems::Problems;
use super::types::{MacAddr, MacList};

/// The raw `[acls]` table: name (with span) → entries.
pub(crate) type RawAcls = BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>;

/// Outcome of resolving every ACL: `None` marks a broken ACL (already reported).
pub(crate) type ResolvedAcls = BTreeMap<String, Option<MacList>>;

enum State {
    /// On the current resolution path (seeing it again closes a cycle).
    Visiting,
    /// Resolved: the MACs, or `None` if broken.
    Done(Option<Vec<MacAddr>>),
}

struct Resolver<'a> {
    raw: BTreeMap<&'a str, &'a Spanned<Vec<Spanned<String>>>>,
    states: BTreeMap<&'a str, State>,
    /// Names being resolved, outermost first, for cycle messages.
    path: Vec<&'a str>,
}

/// Resolves every ACL of `[acls]`, reporting problems into `problems`.
pub(crate) fn resolve_acls(raw: &RawAcls, problems: &mut Problems) -> ResolvedAcls {
    for name in raw.keys() {
        if name.get_ref().is_empty() {
            problems.push(name.span(), "acls: an ACL name is empty; give it a name");
        } else if parse_mac(name.get_ref()).is_ok() {
            problems.push(
                name.span(),
                format!(
                    "acls.{}: the name reads as a MAC address, so entries could not refer to it; \
                     rename the ACL",
                    name.get_ref()
                ),
            );
        }
    }
    let mut resolver = Resolver {
        raw: raw.iter().map(|(k, v)| (k.get_ref().as_str(), v)).collect(),
        states: BTreeMap::new(),
        path: Vec::new(),
    };
    let names: Vec<&str> = resolver.raw.keys().copied().collect();
    let mut resolved = ResolvedAcls::new();
    for name in names {
        let macs = resolver.resolve(name, problems);
        resolved.insert(name.to_owned(), macs.map(MacList::new));
    }
    resolved
}

impl<'a> Resolver<'a> {
    /// The distinct MACs of ACL `name`, or `None` if it (or an ACL it includes) is broken.
    /// Recursion depth is bounded by the number of ACLs (a name on the path is a cycle).
    fn resolve(&mut self, name: &'a str, problems: &mut Problems) -> Option<Vec<MacAddr>> {
        match self.states.get(name) {
            Some(State::Done(macs)) => return macs.clone(),
            Some(State::Visiting) => unreachable!("callers check for cycles before recursing"),
            None => {}
        }
        self.states.insert(name, State::Visiting);
        self.path.push(name);
        let entries = self.raw[name];
        let mut macs = Vec::new();
        let mut broken = false;
        for entry in entries.get_ref() {
            let text = entry.get_ref().as_str();
            if let Ok(mac) = parse_mac(text) {
                broken |= !check_mac(&format!("acls.{name}"), entry, mac, problems);
                macs.push(mac);
            } else if let Some(key) = self.raw.get_key_value(text).map(|(key, _)| *key) {
                if matches!(self.states.get(text), Some(State::Visiting)) {
                    let start = self.path.iter().position(|n| *n == text).unwrap_or(0);
                    let cycle = self.path[start..].join(" -> ");
                    problems.push(
                        entry.span(),
                        format!(
                            "acls.{name}: entry \"{text}\" makes a cycle ({cycle} -> {text}); \
                             remove the entry"
                        ),
                    );
                    broken = true;
                } else {
                    match self.resolve(key, problems) {
                        Some(included) => macs.extend(included),
                        None => broken = true,
                    }
                }
            } else {
                problems.push(
                    entry.span(),
                    unknown_entry_message(&format!("acls.{name}"), text),
                );
                broken = true;
            }
        }
        macs.sort_unstable();
        macs.dedup();
        if !broken && macs.len() > MacList::LEN_MAX {
            problems.push(
                entries.span(),
                format!(
                    "acls.{name}: resolves to {} distinct MACs; at most {} are allowed, split it \
                     into smaller ACLs",
                    macs.len(),
                    MacList::LEN_MAX
                ),
            );
            broken = true;
        }
        self.path.pop();
        let outcome = (!broken).then_some(macs);
        self.states.insert(name, State::Done(outcome.clone()));
        outcome
    }
}

/// Checks that `mac` can be an initiator's source address; reports and returns false if not.
fn check_mac(key: &str, entry: &Spanned<String>, mac: MacAddr, problems: &mut Problems) -> bool {
    let problem = if mac.is_multicast() {
        "is a group (multicast or broadcast) address"
    } else if mac.0 == [0; 6] {
        "is the all-zero address"
    } else {
        return true;
    };
    problems.push(
        entry.span(),
        format!(
            "{key}: \"{}\" {problem}; initiators send from unicast MACs, list those",
            entry.get_ref()
        ),
    );
    false
}

fn unknown_entry_message(key: &str, text: &str) -> String {
    format!(
        "{key}: \"{text}\" is neither a MAC address nor the name of an ACL; write a MAC like \
         \"02:00:00:00:00:01\" or define it under [acls]"
    )
}

/// Resolves a device's `accept` or `deny` list (`key` names it in messages). Returns `None`
/// if an entry is invalid or names a broken ACL (reported here or when the ACL was resolved).
pub(crate) fn resolve_list(
    key: &str,
    list: &Spanned<Vec<Spanned<String>>>,
    acls: &ResolvedAcls,
    problems: &mut Problems,
) -> Option<MacList> {
    let mut macs = Vec::new();
    let mut broken = false;
    for entry in list.get_ref() {
        let text = entry.get_ref().as_str();
        if let Ok(mac) = parse_mac(text) {
            broken |= !check_mac(key, entry, mac, problems);
            macs.push(mac);
        } else if let Some(acl) = acls.get(text) {
            match acl {
                Some(acl) => macs.extend_from_slice(acl.as_slice()),
                None => broken = true,
            }
        } else {
            problems.push(entry.span(), unknown_entry_message(key, text));
            broken = true;
        }
    }
    let list_macs = MacList::new(macs);
    if !broken && list_macs.len() > MacList::LEN_MAX {
        problems.push(
            list.span(),
            format!(
                "{key}: resolves to {} distinct MACs; at most {} are allowed",
                list_macs.len(),
                MacList::LEN_MAX
            ),
        );
        broken = true;
    }
    (!broken).then_some(list_macs)
}
