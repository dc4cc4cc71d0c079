//! Permissions as Project FiFo (snarl) has them: paths of segments such as
//! `cloud->packages->list`, granted by paths that may use `_` (exactly one segment) and `...`
//! (trailing: one or more segments; leading or in the middle, before a literal: zero or more).
//! A request passes if any grant matches the permission it needs.

/// A permission or a grant: a path of segments.
pub type Permission = Vec<String>;

/// Builds a permission from segments.
pub fn permission(segments: &[&str]) -> Permission {
    segments.iter().map(|segment| segment.to_string()).collect()
}

/// Whether any of `grants` grants `required`.
pub fn allowed(required: &[String], grants: &[Permission]) -> bool {
    grants.iter().any(|grant| matches(required, grant))
}

/// libsnarlmatch's `match(Required, Granted)`.
///
/// The original recurses and, at each `...`, tries every number of segments it could take: a
/// grant of many `...` takes exponential time, and grants are user input. This computes the
/// same answer column by column from the end of the grant, in `required × granted` steps:
/// `later[i]` says whether `required[i..]` matches the rest of the grant after segment `j`.
pub fn matches(required: &[String], granted: &[String]) -> bool {
    let n = required.len();
    // After the whole grant only the empty rest of `required` matches.
    let mut later: Vec<bool> = (0..=n).map(|i| i == n).collect();
    let mut here = vec![false; n + 1];
    for (j, segment) in granted.iter().enumerate().rev() {
        if segment == "..." {
            match granted.get(j + 1) {
                // A trailing `...` takes one or more segments, never zero.
                None => here.iter_mut().enumerate().for_each(|(i, m)| *m = i < n),
                // `...` before `_` never matches (a quirk of the original, kept).
                Some(next) if next == "_" => here.fill(false),
                // `...` before a literal: zero or more segments, so any later start will do.
                Some(_) => {
                    let mut any_later = false;
                    for i in (0..=n).rev() {
                        any_later |= later[i];
                        here[i] = any_later;
                    }
                }
            }
        } else {
            here[n] = false;
            for i in 0..n {
                here[i] = (segment == "_" || *segment == required[i]) && later[i + 1];
            }
        }
        std::mem::swap(&mut here, &mut later);
    }
    later[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Permission {
        if text.is_empty() {
            return Vec::new();
        }
        text.split(' ').map(str::to_string).collect()
    }

    /// A.3's cases: (required, granted, matches).
    const CASES: &[(&str, &str, bool)] = &[
        ("cloud packages list", "cloud packages list", true),
        ("cloud packages list", "cloud packages List", false),
        ("cloud packages list", "cloud _ list", true),
        ("cloud packages list", "...", true),
        ("cloud packages list", "cloud ...", true),
        ("packages U get", "packages _ get", true),
        ("packages U get", "packages ...", true),
        ("packages U get", "...", true),
        ("packages U get", "packages _", false),
        ("packages U get", "packages U get ...", false),
        ("packages U get", "packages _ _ _", false),
        ("packages U get", "packages U", false),
        ("packages", "packages ...", false),
        ("", "...", false),
        ("", "", true),
        ("packages U get", "... get", true),
        ("packages U get", "packages ... get", true),
        ("packages get", "packages ... get", true),
        ("a b c d", "a ... d", true),
        ("a b c e", "a ... d", false),
        ("packages U get", "... _", false),
        ("packages U get", "packages ... _", false),
        ("packages U delete", "packages U edit", false),
        ("packages U edit", "packages _ edit", true),
    ];

    #[test]
    fn fifo_matching_table() {
        for (required, granted, expected) in CASES {
            assert_eq!(
                matches(&path(required), &path(granted)),
                *expected,
                "{granted:?} grants {required:?}"
            );
        }
    }

    /// The original's recursion, as it was written before [`matches`] became a table.
    fn reference(required: &[String], granted: &[String]) -> bool {
        match (required, granted) {
            ([], []) => true,
            (_, [last]) if last == "..." => !required.is_empty(),
            (_, [dots, next, ..]) if dots == "..." && next == "_" => false,
            (_, [dots, rest @ ..]) if dots == "..." => {
                (0..=required.len()).any(|skip| reference(&required[skip..], rest))
            }
            ([_, required_rest @ ..], [any, granted_rest @ ..]) if any == "_" => {
                reference(required_rest, granted_rest)
            }
            ([first, required_rest @ ..], [literal, granted_rest @ ..]) if first == literal => {
                reference(required_rest, granted_rest)
            }
            _ => false,
        }
    }

    /// Every path of up to `length` segments drawn from `alphabet`.
    fn paths(alphabet: &[&str], length: usize) -> Vec<Permission> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..length {
            last = last
                .iter()
                .flat_map(|prefix: &Permission| {
                    alphabet.iter().map(move |segment| {
                        let mut path = prefix.clone();
                        path.push(segment.to_string());
                        path
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn the_table_agrees_with_the_original_recursion() {
        let required = paths(&["a", "b", "_", "..."], 4);
        let granted = paths(&["a", "b", "_", "..."], 4);
        let mut checked = 0;
        for r in &required {
            for g in &granted {
                assert_eq!(matches(r, g), reference(r, g), "{g:?} grants {r:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 341 * 341);
    }

    #[test]
    fn a_grant_of_many_wildcards_is_decided_at_once() {
        // The recursion takes exponential time on these; the table is a few thousand steps.
        let mut granted = vec!["...".to_string(); 2000];
        granted.push("x".into());
        assert!(matches(&path("cloud datasets x"), &granted));
        assert!(!matches(&path("cloud datasets list"), &granted));
    }

    #[test]
    fn any_grant_suffices() {
        let grants = vec![path("cloud packages list"), path("packages _ get")];
        assert!(allowed(&path("packages U get"), &grants));
        assert!(!allowed(&path("packages U delete"), &grants));
        assert!(!allowed(&path("packages U get"), &[]));
    }
}
