//! Permissions as Project FiFo (snarl) has them: paths of segments such as
//! `cloud->packages->list`, granted by paths that may use `_` (exactly one segment) and `...`
//! (trailing: one or more segments; leading or in the middle, before a literal: zero or more).
//! A request passes if any grant matches the permission it needs.

/// A permission or a grant: a path of segments.
pub type Permission = Vec<String>;

/// The rule for user names, wherever a user is named (the API, `floe ca user`): a plain path
/// segment of at most 128 letters, digits or `- _ . @`, with at least one letter or digit.
/// Permissions name users by name, where `_` and `...` are wildcards: a user called `_` could
/// never be granted anything about itself alone (`users->_->passwd` is every user's password).
/// And `.` or `..` are dot segments, which clients resolve away before sending a URL.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        && name.chars().any(|c| c.is_ascii_alphanumeric())
}

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

/// Whether `grant` grants everything `handed` would grant: every path `handed` matches, `grant`
/// matches too. `handed` is a permission being handed out, whose `_` and `...` are wildcards
/// for whoever receives it, so it cannot be checked as a literal path with `matches`: a
/// grant of `_` matches the one-segment path `...`, yet `...` grants every path.
///
/// Each segment of `handed` is one of a grant's segments, as in `matches`, except that a
/// `...` of `handed` (a run of any length) is covered only by a `...` of `grant`. The answer
/// errs on the side of "no", which only ever refuses a hand-out: a `grant` with `...` before
/// `_` (which matches nothing) covers nothing.
pub fn covers(grant: &[String], handed: &[String]) -> bool {
    if grant
        .windows(2)
        .any(|pair| pair[0] == "..." && pair[1] == "_")
    {
        return false;
    }
    let n = handed.len();
    // `sure[i]`: whatever `handed[i..]` matches has at least one segment (a literal or `_`,
    // or a trailing `...`, which takes one or more; a `...` before a literal may take none).
    let mut sure = vec![false; n + 1];
    for i in (0..n).rev() {
        sure[i] = handed[i] != "..." || i + 1 == n || sure[i + 1];
    }
    // As in `matches`: `later[i]` says whether `grant[j + 1..]` covers `handed[i..]`.
    let mut later: Vec<bool> = (0..=n).map(|i| i == n).collect();
    let mut here = vec![false; n + 1];
    for (j, segment) in grant.iter().enumerate().rev() {
        if segment == "..." {
            if j + 1 == grant.len() {
                // A trailing `...` takes the rest, one or more segments.
                here.copy_from_slice(&sure);
            } else {
                // Before a literal: zero or more segments, so it may take any run.
                let mut any_later = false;
                for i in (0..=n).rev() {
                    any_later |= later[i];
                    here[i] = any_later;
                }
            }
        } else {
            here[n] = false;
            for i in 0..n {
                let one = &handed[i];
                here[i] = one != "..." && (segment == "_" || segment == one) && later[i + 1];
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

    #[test]
    fn covering_a_literal_path_is_matching_it() {
        for (required, granted, expected) in CASES {
            assert_eq!(
                covers(&path(granted), &path(required)),
                *expected,
                "{granted:?} covers {required:?}"
            );
        }
    }

    #[test]
    fn wildcards_handed_out_need_wildcards_at_least_as_wide() {
        let cases: &[(&str, &str, bool)] = &[
            ("_", "...", false),
            ("packages _ get", "packages ... get", false),
            ("cloud _", "cloud ...", false),
            ("cloud _", "cloud _", true),
            ("cloud ...", "cloud _", true),
            ("cloud ...", "cloud ...", true),
            ("...", "...", true),
            ("...", "_", true),
            ("... get", "packages ... get", true),
            ("packages ... get", "... get", false),
            ("a ... d", "a _ ... d", true),
            ("a _ d", "a ... d", false),
            ("packages U get", "packages _ get", false),
        ];
        for (granted, handed, expected) in cases {
            assert_eq!(
                covers(&path(granted), &path(handed)),
                *expected,
                "{granted:?} covers {handed:?}"
            );
        }
    }

    /// Never says yes wrongly: whenever `g` covers `h`, every short path `h` grants, `g`
    /// grants too.
    #[test]
    fn covering_is_sound() {
        let patterns = paths(&["a", "b", "_", "..."], 3);
        let concrete = paths(&["a", "b", "c"], 5);
        let mut covered = 0;
        for g in &patterns {
            for h in &patterns {
                if !covers(g, h) {
                    continue;
                }
                covered += 1;
                for p in concrete.iter().filter(|p| matches(p, h)) {
                    assert!(matches(p, g), "{g:?} covers {h:?} but not {p:?}");
                }
            }
        }
        assert!(covered > 85, "only {covered} pairs covered");
    }
}
