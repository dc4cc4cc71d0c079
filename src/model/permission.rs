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
pub fn matches(required: &[String], granted: &[String]) -> bool {
    match (required, granted) {
        ([], []) => true,
        // A trailing `...` takes one or more segments, never zero.
        (_, [last]) if last == "..." => !required.is_empty(),
        // `...` before `_` never matches (a quirk of the original, kept).
        (_, [dots, next, ..]) if dots == "..." && next == "_" => false,
        // `...` before a literal: zero or more segments.
        (_, [dots, rest @ ..]) if dots == "..." => {
            (0..=required.len()).any(|skip| matches(&required[skip..], rest))
        }
        ([_, required_rest @ ..], [any, granted_rest @ ..]) if any == "_" => {
            matches(required_rest, granted_rest)
        }
        ([first, required_rest @ ..], [literal, granted_rest @ ..]) if first == literal => {
            matches(required_rest, granted_rest)
        }
        _ => false,
    }
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

    #[test]
    fn any_grant_suffices() {
        let grants = vec![path("cloud packages list"), path("packages _ get")];
        assert!(allowed(&path("packages U get"), &grants));
        assert!(!allowed(&path("packages U delete"), &grants));
        assert!(!allowed(&path("packages U get"), &[]));
    }
}
