//! Conditional requests (RFC 9110 §13): entity tags, the validators a request carries, and the
//! one function that decides whether a request may proceed against a resource's current
//! version. Parsing the headers is the API's job; deciding is here, so that the store can
//! decide atomically with a write and the API can decide the same way for reads.

use super::Timestamp;

/// An entity tag: an opaque string, strong or weak (`W/"..."`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    /// Whether the tag was sent as weak.
    pub weak: bool,
    /// The tag between the quotes.
    pub opaque: String,
}

impl EntityTag {
    /// A strong tag.
    pub fn strong(opaque: impl Into<String>) -> Self {
        EntityTag {
            weak: false,
            opaque: opaque.into(),
        }
    }

    /// Strong comparison (§8.8.3.2): both strong and equal. Used by If-Match.
    pub fn strong_eq(&self, current: ResourceVersion<'_>) -> bool {
        !self.weak && !current.weak && self.opaque == current.etag
    }

    /// Weak comparison: equal opaque strings, weakness ignored. Used by If-None-Match.
    pub fn weak_eq(&self, current: &str) -> bool {
        self.opaque == current
    }
}

/// The value of `If-Match` or `If-None-Match`: `*` or a list of tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagCondition {
    /// `*`: any current representation.
    Any,
    /// One or more tags.
    Tags(Vec<EntityTag>),
}

/// The current version of the resource a request targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceVersion<'a> {
    /// Its entity tag (without quotes).
    pub etag: &'a str,
    /// Whether that tag is weak (`W/"..."`): a representation whose bytes may change while
    /// its version does not, such as the lease list with its seconds left. `If-Match`, which
    /// compares strongly, never matches it.
    pub weak: bool,
    /// When it last changed, if known (compared at one-second resolution, as HTTP dates are).
    pub last_modified: Option<Timestamp>,
}

impl<'a> ResourceVersion<'a> {
    /// A version with a strong tag.
    pub fn strong(etag: &'a str, last_modified: Option<Timestamp>) -> Self {
        ResourceVersion {
            etag,
            weak: false,
            last_modified,
        }
    }
}

/// What the validators say about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Proceed,
    /// A GET or HEAD whose client already has the current representation: 304.
    NotModified,
    /// The condition is false: 412.
    Failed,
}

/// The validator headers of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// `If-Match`.
    pub if_match: Option<TagCondition>,
    /// `If-None-Match`.
    pub if_none_match: Option<TagCondition>,
    /// `If-Unmodified-Since`, as milliseconds since the epoch.
    pub if_unmodified_since: Option<Timestamp>,
    /// `If-Modified-Since`, as milliseconds since the epoch.
    pub if_modified_since: Option<Timestamp>,
}

impl Validators {
    /// Whether the request carries any validator at all.
    pub fn is_empty(&self) -> bool {
        *self == Validators::default()
    }

    /// Whether these validators keep a write from overwriting a version the client has not
    /// seen, as the required If-Match policy asks: `If-Match` names the version it may
    /// replace, and `If-None-Match: *` lets it through only where nothing exists (create-only,
    /// §13.1.2), so that on an existing resource its answer is a 412, not a 428 asking for an
    /// `If-Match` the client cannot have.
    pub fn guard_existing(&self) -> bool {
        self.if_match.is_some() || self.if_none_match == Some(TagCondition::Any)
    }

    /// Whether `If-Unmodified-Since` fails against `current`: it is evaluated only without
    /// `If-Match` (RFC 9110 §13.2.2, step 2), and fails where the resource changed after the
    /// date. A request refused for it is told so, rather than that entity tags differ.
    pub fn failed_by_date(&self, current: Option<ResourceVersion<'_>>) -> bool {
        self.if_match.is_none()
            && matches!(
                (self.if_unmodified_since, current.and_then(|version| version.last_modified)),
                (Some(since), Some(modified)) if seconds(modified) > seconds(since)
            )
    }

    /// Evaluates the validators in RFC 9110 §13.2.2 order against the resource's current
    /// version (`None`: it does not exist). `safe` is true for GET and HEAD, which answer 304
    /// where other methods answer 412.
    pub fn evaluate(&self, current: Option<ResourceVersion<'_>>, safe: bool) -> Verdict {
        // Step 1, or step 2 when there is no If-Match.
        if let Some(condition) = &self.if_match {
            let holds = match (condition, current) {
                (_, None) => false,
                (TagCondition::Any, Some(_)) => true,
                (TagCondition::Tags(tags), Some(version)) => {
                    tags.iter().any(|tag| tag.strong_eq(version))
                }
            };
            if !holds {
                return Verdict::Failed;
            }
        } else if self.failed_by_date(current) {
            return Verdict::Failed;
        }

        // Step 3, or step 4 (GET and HEAD only) when there is no If-None-Match.
        let unmodified = if let Some(condition) = &self.if_none_match {
            match (condition, current) {
                (_, None) => false,
                (TagCondition::Any, Some(_)) => true,
                (TagCondition::Tags(tags), Some(version)) => {
                    tags.iter().any(|tag| tag.weak_eq(version.etag))
                }
            }
        } else if safe {
            matches!(
                (self.if_modified_since, current.and_then(|v| v.last_modified)),
                (Some(since), Some(modified)) if seconds(modified) <= seconds(since)
            )
        } else {
            false
        };
        match (unmodified, safe) {
            (false, _) => Verdict::Proceed,
            (true, true) => Verdict::NotModified,
            (true, false) => Verdict::Failed,
        }
    }
}

/// HTTP dates have one-second resolution; compare at that resolution.
fn seconds(millis: Timestamp) -> Timestamp {
    millis.div_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TagCondition::{Any, Tags};
    use Verdict::{Failed, NotModified, Proceed};

    const CURRENT: ResourceVersion<'static> = ResourceVersion {
        etag: "abc",
        weak: false,
        last_modified: Some(10_500),
    };

    fn tags(list: &[(&str, bool)]) -> TagCondition {
        Tags(
            list.iter()
                .map(|(opaque, weak)| EntityTag {
                    weak: *weak,
                    opaque: opaque.to_string(),
                })
                .collect(),
        )
    }

    fn with(f: impl FnOnce(&mut Validators)) -> Validators {
        let mut v = Validators::default();
        f(&mut v);
        v
    }

    #[test]
    fn if_match_is_strong_and_star_needs_a_resource() {
        let strong = with(|v| v.if_match = Some(tags(&[("x", false), ("abc", false)])));
        assert_eq!(strong.evaluate(Some(CURRENT), false), Proceed);
        let weak = with(|v| v.if_match = Some(tags(&[("abc", true)])));
        assert_eq!(weak.evaluate(Some(CURRENT), false), Failed);
        let weak_current = ResourceVersion {
            weak: true,
            ..CURRENT
        };
        assert_eq!(
            strong.evaluate(Some(weak_current), true),
            Failed,
            "a weak current tag never matches If-Match"
        );
        let star = with(|v| v.if_match = Some(Any));
        assert_eq!(star.evaluate(Some(CURRENT), false), Proceed);
        assert_eq!(star.evaluate(Some(weak_current), false), Proceed);
        assert_eq!(star.evaluate(None, false), Failed);
        assert_eq!(star.evaluate(None, true), Failed, "412 on GET too");
    }

    #[test]
    fn if_none_match_is_weak_and_answers_304_on_reads_412_on_writes() {
        let weak = with(|v| v.if_none_match = Some(tags(&[("abc", true)])));
        assert_eq!(weak.evaluate(Some(CURRENT), true), NotModified);
        assert_eq!(weak.evaluate(Some(CURRENT), false), Failed);
        let other = with(|v| v.if_none_match = Some(tags(&[("zzz", false)])));
        assert_eq!(other.evaluate(Some(CURRENT), true), Proceed);
        let create_only = with(|v| v.if_none_match = Some(Any));
        assert_eq!(create_only.evaluate(None, false), Proceed);
        assert_eq!(create_only.evaluate(Some(CURRENT), false), Failed);
    }

    #[test]
    fn dates_are_second_resolution_and_yield_to_tags() {
        let ius_ok = with(|v| v.if_unmodified_since = Some(10_000));
        assert_eq!(ius_ok.evaluate(Some(CURRENT), false), Proceed);
        let ius_old = with(|v| v.if_unmodified_since = Some(9_999));
        assert_eq!(ius_old.evaluate(Some(CURRENT), false), Failed);
        let ius_ignored = with(|v| {
            v.if_match = Some(Any);
            v.if_unmodified_since = Some(0)
        });
        assert_eq!(ius_ignored.evaluate(Some(CURRENT), false), Proceed);

        let ims = with(|v| v.if_modified_since = Some(10_000));
        assert_eq!(ims.evaluate(Some(CURRENT), true), NotModified);
        assert_eq!(
            ims.evaluate(Some(CURRENT), false),
            Proceed,
            "writes ignore IMS"
        );
        let ims_old = with(|v| v.if_modified_since = Some(9_000));
        assert_eq!(ims_old.evaluate(Some(CURRENT), true), Proceed);
        let inm_wins = with(|v| {
            v.if_none_match = Some(tags(&[("zzz", false)]));
            v.if_modified_since = Some(99_000)
        });
        assert_eq!(inm_wins.evaluate(Some(CURRENT), true), Proceed);
    }

    #[test]
    fn if_match_and_create_only_guard_what_exists() {
        assert!(!Validators::default().guard_existing());
        assert!(with(|v| v.if_match = Some(tags(&[("abc", true)]))).guard_existing());
        assert!(with(|v| v.if_none_match = Some(Any)).guard_existing());
        let other = with(|v| v.if_none_match = Some(tags(&[("zzz", false)])));
        assert!(
            !other.guard_existing(),
            "lets any other version be overwritten"
        );
        assert!(!with(|v| v.if_unmodified_since = Some(10_000)).guard_existing());
    }

    #[test]
    fn if_match_failure_comes_before_if_none_match() {
        let both = with(|v| {
            v.if_match = Some(tags(&[("nope", false)]));
            v.if_none_match = Some(tags(&[("abc", false)]))
        });
        assert_eq!(both.evaluate(Some(CURRENT), true), Failed);
    }
}
