//! A package's placement requirements as FiFo (`fifo_dt`) reads and lists them: the default
//! weight filled in, every requirement written back with all its keys, and the set kept in
//! Erlang's term order with duplicates collapsed.

use std::cmp::Ordering;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};

use super::{nesting, sorted};

/// A placement requirement, in the shapes of FiFo's `fifo_dt:js2req/1`: a rule (`must`, `cant`
/// or an integer weight, with a condition on an attribute), `scale` or `random`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub enum Requirement {
    /// `{"weight", "condition", "attribute", "value"}`: `weight` is `must` when absent.
    Rule {
        /// How the rule counts.
        weight: Weight,
        /// How the attribute is compared with `value`.
        condition: Condition,
        /// The hypervisor attribute, e.g. `resources.free-memory`.
        attribute: String,
        /// What it is compared with: any JSON, object keys sorted.
        value: Value,
    },
    /// `{"weight": "scale", "attribute", "low", "high"}`.
    Scale {
        /// The attribute scaled.
        attribute: String,
        /// The low end.
        low: Number,
        /// The high end.
        high: Number,
    },
    /// `{"weight": "random", "low", "high"}`.
    Random {
        /// The low end.
        low: Number,
        /// The high end.
        high: Number,
    },
}

/// A rule's weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weight {
    /// The hypervisor must match (FiFo's default).
    Must,
    /// The hypervisor must not match.
    Cant,
    /// Matching adds this many points (an integer, held as one even when given as `3.0`).
    Points(Number),
}

/// A rule's condition, FiFo's Erlang atoms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `>=`
    AtLeast,
    /// `>`
    Above,
    /// `=<`
    AtMost,
    /// `<`
    Below,
    /// `=:=`
    Equal,
    /// `=/=`
    NotEqual,
    /// `subset`
    Subset,
    /// `superset`
    Superset,
    /// `disjoint`
    Disjoint,
    /// `element`
    Element,
    /// `allowed`
    Allowed,
}

impl Condition {
    const ALL: [Condition; 11] = [
        Condition::AtLeast,
        Condition::Above,
        Condition::AtMost,
        Condition::Below,
        Condition::Equal,
        Condition::NotEqual,
        Condition::Subset,
        Condition::Superset,
        Condition::Disjoint,
        Condition::Element,
        Condition::Allowed,
    ];

    /// The condition as FiFo writes it (its atom's name).
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::AtLeast => ">=",
            Condition::Above => ">",
            Condition::AtMost => "=<",
            Condition::Below => "<",
            Condition::Equal => "=:=",
            Condition::NotEqual => "=/=",
            Condition::Subset => "subset",
            Condition::Superset => "superset",
            Condition::Disjoint => "disjoint",
            Condition::Element => "element",
            Condition::Allowed => "allowed",
        }
    }

    fn parse(text: &str) -> Option<Condition> {
        Condition::ALL
            .into_iter()
            .find(|condition| condition.as_str() == text)
    }
}

/// Why a JSON value is not a requirement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// Not an object.
    #[error("A requirement is an object, not {0}.")]
    NotAnObject(String),
    /// A weight FiFo does not know.
    #[error(
        "A requirement's weight is \"must\", \"cant\", an integer, \"scale\" or \"random\", not {0}."
    )]
    Weight(String),
    /// A field this kind of requirement needs is missing.
    #[error("A requirement with weight {weight} needs {field:?}.")]
    Missing {
        /// The requirement's weight.
        weight: String,
        /// The missing field.
        field: &'static str,
    },
    /// A field has the wrong type or value.
    #[error("A requirement's {field:?} must be {expected}, not {found}.")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
}

impl TryFrom<Value> for Requirement {
    type Error = RequirementError;

    /// FiFo's `js2req`: the weight decides the shape, and a missing weight is `must`. Fields
    /// the shape does not use are ignored, as FiFo ignores them (the API's schema refuses
    /// them before this is reached).
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let Value::Object(mut fields) = value else {
            return Err(RequirementError::NotAnObject(value.to_string()));
        };
        let weight = fields
            .remove("weight")
            .unwrap_or_else(|| Value::from("must"));
        let weight_text = weight.to_string();
        let mut take = |field: &'static str| {
            fields.remove(field).ok_or(RequirementError::Missing {
                weight: weight_text.clone(),
                field,
            })
        };
        let requirement = match weight {
            Value::String(name) if name == "scale" => Requirement::Scale {
                attribute: attribute(take("attribute")?)?,
                low: number("low", take("low")?)?,
                high: number("high", take("high")?)?,
            },
            Value::String(name) if name == "random" => Requirement::Random {
                low: number("low", take("low")?)?,
                high: number("high", take("high")?)?,
            },
            weight => {
                let weight = match weight {
                    Value::String(name) if name == "must" => Weight::Must,
                    Value::String(name) if name == "cant" => Weight::Cant,
                    Value::Number(points) => Weight::Points(
                        integer(points)
                            .ok_or_else(|| RequirementError::Weight(weight_text.clone()))?,
                    ),
                    other => return Err(RequirementError::Weight(other.to_string())),
                };
                let condition = take("condition")?;
                let condition = condition
                    .as_str()
                    .and_then(Condition::parse)
                    .ok_or_else(|| RequirementError::Invalid {
                        field: "condition",
                        expected: "one of >= > =< < =:= =/= subset superset disjoint element allowed",
                        found: condition.to_string(),
                    })?;
                Requirement::Rule {
                    weight,
                    condition,
                    attribute: attribute(take("attribute")?)?,
                    value: sorted(take("value")?),
                }
            }
        };
        Ok(requirement)
    }
}

fn attribute(value: Value) -> Result<String, RequirementError> {
    match value {
        Value::String(attribute) => Ok(attribute),
        other => Err(RequirementError::Invalid {
            field: "attribute",
            expected: "a string",
            found: other.to_string(),
        }),
    }
}

fn number(field: &'static str, value: Value) -> Result<Number, RequirementError> {
    match value {
        Value::Number(number) => Ok(number),
        other => Err(RequirementError::Invalid {
            field,
            expected: "a number",
            found: other.to_string(),
        }),
    }
}

/// `number` as an integer, if it is one. JSON Schema counts `3.0` as an integer; FiFo's
/// weights are Erlang integers, so it is held as `3`, and `3.0` and `3` are one requirement.
fn integer(number: Number) -> Option<Number> {
    if number.is_i64() || number.is_u64() {
        return Some(number);
    }
    let float = number.as_f64()?;
    if float.fract() != 0.0 {
        return None;
    }
    // The bounds are powers of two, exact as floats; past them a float is still an integer,
    // just not one these types can hold.
    if (-(2f64.powi(63))..2f64.powi(63)).contains(&float) {
        Some(Number::from(float as i64))
    } else if (0.0..2f64.powi(64)).contains(&float) {
        Some(Number::from(float as u64))
    } else {
        Some(number)
    }
}

impl Serialize for Weight {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Weight::Must => serializer.serialize_str("must"),
            Weight::Cant => serializer.serialize_str("cant"),
            Weight::Points(points) => points.serialize(serializer),
        }
    }
}

impl Serialize for Requirement {
    /// FiFo's `req2js`: every field, `weight` included, keys in sorted order.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Requirement::Rule {
                weight,
                condition,
                attribute,
                value,
            } => {
                let mut map = serializer.serialize_map(Some(4))?;
                map.serialize_entry("attribute", attribute)?;
                map.serialize_entry("condition", condition.as_str())?;
                map.serialize_entry("value", value)?;
                map.serialize_entry("weight", weight)?;
                map.end()
            }
            Requirement::Scale {
                attribute,
                low,
                high,
            } => {
                let mut map = serializer.serialize_map(Some(4))?;
                map.serialize_entry("attribute", attribute)?;
                map.serialize_entry("high", high)?;
                map.serialize_entry("low", low)?;
                map.serialize_entry("weight", "scale")?;
                map.end()
            }
            Requirement::Random { low, high } => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("high", high)?;
                map.serialize_entry("low", low)?;
                map.serialize_entry("weight", "random")?;
                map.end()
            }
        }
    }
}

impl Requirement {
    /// How many arrays and objects the requirement nests, itself included.
    pub fn nesting(&self) -> usize {
        match self {
            Requirement::Rule { value, .. } => 1 + nesting(value),
            Requirement::Scale { .. } | Requirement::Random { .. } => 1,
        }
    }
}

impl PartialOrd for Requirement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Requirement {
    /// Erlang's term order of the tuples FiFo holds requirements as, which is the order its
    /// set lists them in: `{Weight, Condition, Attribute, Value}`, `{scale, Attribute, Low,
    /// High}` and `{random, Low, High}`. Tuples order by size first, so `random` comes first;
    /// among the others by the first element, and integer weights (numbers) come before the
    /// atoms `cant`, `must` and `scale`, in that order.
    fn cmp(&self, other: &Self) -> Ordering {
        use Requirement::{Random, Rule, Scale};
        match (self, other) {
            (Random { low, high }, Random { low: l, high: h }) => {
                compare_numbers(low, l).then_with(|| compare_numbers(high, h))
            }
            (Random { .. }, _) => Ordering::Less,
            (_, Random { .. }) => Ordering::Greater,
            (
                Rule {
                    weight,
                    condition,
                    attribute,
                    value,
                },
                Rule {
                    weight: w,
                    condition: c,
                    attribute: a,
                    value: v,
                },
            ) => compare_weights(weight, w)
                .then_with(|| condition.as_str().cmp(c.as_str()))
                .then_with(|| attribute.cmp(a))
                .then_with(|| compare_terms(value, v)),
            (Rule { .. }, Scale { .. }) => Ordering::Less,
            (Scale { .. }, Rule { .. }) => Ordering::Greater,
            (
                Scale {
                    attribute,
                    low,
                    high,
                },
                Scale {
                    attribute: a,
                    low: l,
                    high: h,
                },
            ) => attribute
                .cmp(a)
                .then_with(|| compare_numbers(low, l))
                .then_with(|| compare_numbers(high, h)),
        }
    }
}

/// Numbers before atoms, and atoms by name (`cant` < `must`).
fn compare_weights(a: &Weight, b: &Weight) -> Ordering {
    let atom = |weight: &Weight| match weight {
        Weight::Must => Some("must"),
        Weight::Cant => Some("cant"),
        Weight::Points(_) => None,
    };
    match (a, b) {
        (Weight::Points(a), Weight::Points(b)) => compare_numbers(a, b),
        _ => atom(a)
            .is_some()
            .cmp(&atom(b).is_some())
            .then(atom(a).cmp(&atom(b))),
    }
}

/// Numbers by value. Where Erlang finds an integer and a float of the same value equal but
/// not identical (`1 == 1.0`, `1 =/= 1.0`), the integer comes first, so that the order is
/// total and two requirements are one only when they are identical.
fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    let exact = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (exact(a), exact(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let float = |n: &Number| n.as_f64().unwrap_or_default();
            float(a)
                .partial_cmp(&float(b))
                .unwrap_or(Ordering::Equal)
                .then(a.is_f64().cmp(&b.is_f64()))
        }
    }
}

/// Erlang's term order of JSON as FiFo's jsx decodes it: numbers, then the atoms `false`,
/// `null` and `true`, then lists (arrays; objects, which are lists of `{Key, Value}` pairs by
/// key, `[{}]` when empty), then binaries (strings), each compared as Erlang compares them.
fn compare_terms(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Null | Value::Bool(_), Value::Null | Value::Bool(_)) => atom(a).cmp(atom(b)),
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => {
            let (a, b) = (elements(a), elements(b));
            a.iter()
                .zip(&b)
                .map(|(a, b)| compare_elements(a, b))
                .find(|order| order.is_ne())
                .unwrap_or_else(|| a.len().cmp(&b.len()))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Where a term's type falls in Erlang's order: number < atom < tuple < list < binary.
fn rank(value: &Value) -> u8 {
    match value {
        Value::Number(_) => 0,
        Value::Null | Value::Bool(_) => 1,
        Value::Array(_) | Value::Object(_) => 3,
        Value::String(_) => 4,
    }
}

fn atom(value: &Value) -> &'static str {
    match value {
        Value::Bool(true) => "true",
        Value::Bool(false) => "false",
        _ => "null",
    }
}

/// An element of a list as jsx decodes JSON: a term of an array, a `{Key, Value}` pair of an
/// object, or the empty tuple that stands for an empty object.
enum Element<'a> {
    Term(&'a Value),
    Pair(&'a str, &'a Value),
    Empty,
}

fn elements(value: &Value) -> Vec<Element<'_>> {
    match value {
        Value::Array(items) => items.iter().map(Element::Term).collect(),
        Value::Object(fields) if fields.is_empty() => vec![Element::Empty],
        Value::Object(fields) => {
            let mut pairs: Vec<(&String, &Value)> = fields.iter().collect();
            pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            pairs
                .into_iter()
                .map(|(key, value)| Element::Pair(key, value))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Tuples (pairs, the empty tuple) fall between atoms and lists, and order by size first.
fn compare_elements(a: &Element<'_>, b: &Element<'_>) -> Ordering {
    const TUPLE: u8 = 2;
    match (a, b) {
        (Element::Term(a), Element::Term(b)) => compare_terms(a, b),
        (Element::Term(a), _) => rank(a).cmp(&TUPLE),
        (_, Element::Term(b)) => TUPLE.cmp(&rank(b)),
        (Element::Empty, Element::Empty) => Ordering::Equal,
        (Element::Empty, Element::Pair(..)) => Ordering::Less,
        (Element::Pair(..), Element::Empty) => Ordering::Greater,
        (Element::Pair(key, value), Element::Pair(k, v)) => key
            .as_bytes()
            .cmp(k.as_bytes())
            .then_with(|| compare_terms(value, v)),
    }
}

/// A package's requirements. FiFo keeps them in a set: the same requirement given twice is
/// kept once, and the set lists them in its elements' order ([`Requirement`]'s `Ord`). Every
/// way of making one — from a request or from the store — goes through that, so a package
/// stored before requirements were normalised (no `weight`, duplicates, another order) reads
/// back normalised, without a migration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Requirements(Vec<Requirement>);

impl Requirements {
    /// The requirements, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Requirement> {
        self.0.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Requirement> for Requirements {
    fn from_iter<I: IntoIterator<Item = Requirement>>(requirements: I) -> Self {
        let mut requirements: Vec<Requirement> = requirements.into_iter().collect();
        requirements.sort();
        requirements.dedup();
        Requirements(requirements)
    }
}

impl<'de> Deserialize<'de> for Requirements {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Requirement>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

impl<'a> IntoIterator for &'a Requirements {
    type Item = &'a Requirement;
    type IntoIter = std::slice::Iter<'a, Requirement>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn requirement(value: Value) -> Requirement {
        Requirement::try_from(value).expect("a requirement")
    }

    fn rendered(requirements: &Requirements) -> Value {
        serde_json::to_value(requirements).unwrap()
    }

    #[test]
    fn a_rule_without_weight_is_a_must_and_renders_it() {
        let bare = requirement(json!({ "value": 5, "condition": ">=", "attribute": "a" }));
        let must = requirement(
            json!({ "weight": "must", "attribute": "a", "condition": ">=", "value": 5 }),
        );
        assert_eq!(bare, must);
        let requirements: Requirements = [bare, must].into_iter().collect();
        assert_eq!(requirements.len(), 1, "one requirement, not two");
        // Keys sorted, `weight` always present, as FiFo's req2js writes them.
        assert_eq!(
            serde_json::to_string(&requirements).unwrap(),
            r#"[{"attribute":"a","condition":">=","value":5,"weight":"must"}]"#
        );
    }

    #[test]
    fn every_shape_renders_with_sorted_keys() {
        let requirements: Requirements = [
            json!({ "weight": "scale", "low": 0, "high": 1.5, "attribute": "cpu" }),
            json!({ "weight": "random", "low": 1, "high": 2 }),
            json!({ "weight": "cant", "value": { "b": 1, "a": [true, null] }, "condition": "allowed", "attribute": "x" }),
            json!({ "weight": -7, "value": "v", "condition": "=/=", "attribute": "y" }),
        ]
        .into_iter()
        .map(requirement)
        .collect();
        assert_eq!(
            serde_json::to_string(&requirements).unwrap(),
            concat!(
                r#"[{"high":2,"low":1,"weight":"random"},"#,
                r#"{"attribute":"y","condition":"=/=","value":"v","weight":-7},"#,
                r#"{"attribute":"x","condition":"allowed","value":{"a":[true,null],"b":1},"weight":"cant"},"#,
                r#"{"attribute":"cpu","high":1.5,"low":0,"weight":"scale"}]"#
            )
        );
    }

    #[test]
    fn requirements_list_in_erlangs_term_order() {
        let fifos = json!([
            { "high": 2, "low": 1, "weight": "random" },
            { "high": 3, "low": 1, "weight": "random" },
            { "attribute": "z", "condition": ">=", "value": 1, "weight": -1 },
            { "attribute": "z", "condition": ">=", "value": 1, "weight": 2 },
            { "attribute": "z", "condition": ">=", "value": 1, "weight": 10 },
            { "attribute": "z", "condition": ">=", "value": 1, "weight": "cant" },
            { "attribute": "z", "condition": "<", "value": 1, "weight": "must" },
            { "attribute": "z", "condition": "=:=", "value": 1, "weight": "must" },
            { "attribute": "b", "condition": ">=", "value": 1, "weight": "must" },
            { "attribute": "b", "condition": ">=", "value": 2, "weight": "must" },
            { "attribute": "z", "condition": ">=", "value": 1, "weight": "must" },
            { "attribute": "z", "condition": "allowed", "value": 1, "weight": "must" },
            { "attribute": "a", "high": 1, "low": 0, "weight": "scale" },
            { "attribute": "b", "high": 1, "low": 0, "weight": "scale" },
        ]);
        let items = fifos.as_array().unwrap();
        for shift in 0..items.len() {
            let mut given = items.clone();
            given.rotate_left(shift);
            given.reverse();
            let requirements: Requirements = given.into_iter().map(requirement).collect();
            assert_eq!(rendered(&requirements), fifos, "rotated by {shift}");
        }
    }

    #[test]
    fn rule_values_order_as_erlang_terms() {
        let values = [
            json!(-2),
            json!(1),
            json!(1.0),
            json!(1.5),
            json!(false),
            json!(null),
            json!(true),
            json!([]),
            json!([1]),
            // `{"a": 1}` is `[{<<"a">>, 1}]`: a tuple after any number, before any list.
            json!({ "a": 1 }),
            json!({ "a": 1, "b": 2 }),
            json!({ "b": 0 }),
            json!([[]]),
            json!(["x"]),
            json!(""),
            json!("a"),
            json!("b"),
        ];
        let rule = |value: &Value| {
            requirement(json!({ "condition": "=:=", "attribute": "a", "value": value }))
        };
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                assert_eq!(rule(a).cmp(&rule(b)), i.cmp(&j), "{a} against {b}");
            }
        }
        // `{}` is `[{}]`, a list of the empty tuple (the smallest tuple): after `[]` and
        // `[1]`, before `{"a": 1}`.
        assert!(rule(&json!({})) > rule(&json!([1])));
        assert!(rule(&json!({})) < rule(&json!({ "a": 1 })));
        assert!(rule(&json!([])) < rule(&json!({})));
    }

    #[test]
    fn integral_float_weights_are_integers() {
        let three =
            requirement(json!({ "weight": 3, "condition": "<", "attribute": "a", "value": 1 }));
        let float =
            requirement(json!({ "weight": 3.0, "condition": "<", "attribute": "a", "value": 1 }));
        assert_eq!(three, float);
        assert_eq!(serde_json::to_value(&float).unwrap()["weight"], json!(3));
        let huge =
            requirement(json!({ "weight": 1e300, "condition": "<", "attribute": "a", "value": 1 }));
        assert!(huge > three, "numbers by value");
    }

    #[test]
    fn what_is_not_a_requirement_is_refused() {
        let refused = [
            (json!([1]), "A requirement is an object, not [1]."),
            (
                json!({ "weight": "maybe", "condition": "<", "attribute": "a", "value": 1 }),
                r#"A requirement's weight is "must", "cant", an integer, "scale" or "random", not "maybe"."#,
            ),
            (
                json!({ "weight": 1.5, "condition": "<", "attribute": "a", "value": 1 }),
                r#"A requirement's weight is "must", "cant", an integer, "scale" or "random", not 1.5."#,
            ),
            (
                json!({ "condition": "<", "attribute": "a" }),
                r#"A requirement with weight "must" needs "value"."#,
            ),
            (
                json!({ "weight": "random", "low": 1 }),
                r#"A requirement with weight "random" needs "high"."#,
            ),
            (
                json!({ "condition": "~", "attribute": "a", "value": 1 }),
                r#"A requirement's "condition" must be one of >= > =< < =:= =/= subset superset disjoint element allowed, not "~"."#,
            ),
            (
                json!({ "weight": "scale", "attribute": 1, "low": 0, "high": 1 }),
                r#"A requirement's "attribute" must be a string, not 1."#,
            ),
            (
                json!({ "weight": "scale", "attribute": "a", "low": "0", "high": 1 }),
                r#"A requirement's "low" must be a number, not "0"."#,
            ),
        ];
        for (value, message) in refused {
            let error = Requirement::try_from(value.clone()).expect_err(&value.to_string());
            assert_eq!(error.to_string(), message);
        }
    }
}
