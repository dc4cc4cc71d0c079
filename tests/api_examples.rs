//! Runs `api_examples.yml` (the executable API documentation) top to bottom against a fresh
//! in-process floe with authentication on (its default), and checks the file itself: unique ids, required keys, every route covered.
//!
//! Placeholder rules (see the header of `api_examples.yml`):
//! - in an expected response (body or header), a string that is exactly `{{name}}` binds `name`
//!   to the actual value the first time and must equal it afterwards; `{{*}}` matches anything;
//!   `{{name}}` inside a longer string is replaced by its (already bound) value before comparing;
//! - in a request (path, header values, body), every `{{name}}` is replaced by its bound value.
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::TestServer;
use common::routes::{declared_routes, route_matches, unnamed};
use serde::Deserialize;
use serde_json::Value;

/// The binding that holds the token of the `admin` user floe created on its first start.
const ADMIN_TOKEN: &str = "admin_token";

/// The file under test.
const EXAMPLES_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/api_examples.yml");

/// One documented exchange.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Example {
    id: String,
    doc: String,
    request: ExampleRequest,
    response: ExampleResponse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleRequest {
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A JSON body (`null` included, hence the custom deserializer).
    #[serde(default, deserialize_with = "present")]
    body: Option<Value>,
    /// A body sent verbatim.
    #[serde(default)]
    raw: Option<String>,
    /// Send no credentials (otherwise a request that names none carries the admin's token).
    #[serde(default)]
    anonymous: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleResponse {
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The expected body; absent = not checked, `null` = must be JSON null.
    #[serde(default, deserialize_with = "present")]
    body: Option<Value>,
}

/// Tells a present `null` from an absent key.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Loads and structurally checks the examples file, panicking with the offending id.
fn load_examples() -> Vec<Example> {
    let text = std::fs::read_to_string(EXAMPLES_PATH)
        .unwrap_or_else(|e| panic!("cannot read {EXAMPLES_PATH}: {e}"));
    parse_examples(&text)
}

fn parse_examples(text: &str) -> Vec<Example> {
    let items: Vec<Value> = serde_norway::from_str(text)
        .unwrap_or_else(|e| panic!("api_examples.yml is not a YAML list of examples: {e}"));
    assert!(!items.is_empty(), "api_examples.yml has no examples");
    let mut examples = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let label = item
            .get("id")
            .and_then(Value::as_str)
            .map(|id| format!("example {index} ({id:?})"))
            .unwrap_or_else(|| format!("example {index} (no id)"));
        for key in ["id", "doc", "request", "response"] {
            assert!(
                item.get(key).is_some_and(|v| !v.is_null()),
                "{label} has no `{key}`"
            );
        }
        let example: Example =
            serde_json::from_value(item).unwrap_or_else(|e| panic!("{label} is malformed: {e}"));
        assert!(!example.id.trim().is_empty(), "{label} has an empty id");
        assert!(!example.doc.trim().is_empty(), "{label} has an empty doc");
        assert!(
            !(example.request.body.is_some() && example.request.raw.is_some()),
            "{label} has both `body` and `raw` in its request"
        );
        assert!(
            seen.insert(example.id.clone()),
            "duplicate example id {:?}",
            example.id
        );
        examples.push(example);
    }
    examples
}

/// Values bound by `{{name}}` placeholders so far.
#[derive(Debug, Default)]
struct Bindings(HashMap<String, Value>);

/// If `s` is exactly `{{name}}`, the name.
fn whole_placeholder(s: &str) -> Option<&str> {
    let name = s.strip_prefix("{{")?.strip_suffix("}}")?;
    (!name.is_empty() && !name.contains("{{") && !name.contains("}}")).then_some(name)
}

impl Bindings {
    /// Replaces every `{{name}}` inside `s` with its bound value (strings verbatim, other
    /// values as JSON). An unbound name is an error.
    fn substitute_str(&self, s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start + 2..].find("}}") else {
                break;
            };
            let name = &rest[start + 2..start + 2 + len];
            out.push_str(&rest[..start]);
            match self.0.get(name) {
                Some(Value::String(value)) => out.push_str(value),
                Some(value) => out.push_str(&value.to_string()),
                None => {
                    return Err(format!(
                        "placeholder {{{{{name}}}}} is used before it is bound"
                    ));
                }
            }
            rest = &rest[start + 2 + len + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Substitutes placeholders throughout a request value. A string that is exactly
    /// `{{name}}` becomes the bound value itself (whatever its JSON type).
    fn substitute(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) => match whole_placeholder(s) {
                Some(name) => self
                    .0
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("placeholder {s} is used before it is bound"))?,
                None => Value::String(self.substitute_str(s)?),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.substitute(item))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.substitute(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Compares `actual` with `expected`, binding placeholders; every difference is appended
    /// to `mismatches` with its JSON path.
    fn match_value(
        &mut self,
        expected: &Value,
        actual: &Value,
        path: &str,
        mismatches: &mut Vec<String>,
    ) {
        match (expected, actual) {
            (Value::String(s), _) if s == "{{*}}" => {}
            (Value::String(s), _) if whole_placeholder(s).is_some() => {
                let name = whole_placeholder(s).expect("checked");
                match self.0.get(name) {
                    None => {
                        self.0.insert(name.to_string(), actual.clone());
                    }
                    Some(bound) if bound == actual => {}
                    Some(bound) => mismatches.push(format!(
                        "{path}: expected {s} = {bound} (bound earlier), got {actual}"
                    )),
                }
            }
            (Value::String(s), _) if s.contains("{{") => match self.substitute_str(s) {
                Ok(want) if actual.as_str() == Some(want.as_str()) => {}
                Ok(want) => mismatches.push(format!(
                    "{path}: expected {}, got {actual}",
                    Value::String(want)
                )),
                Err(e) => mismatches.push(format!("{path}: {e}")),
            },
            (Value::Object(want), Value::Object(got)) => {
                for (key, want_value) in want {
                    match got.get(key) {
                        Some(got_value) => self.match_value(
                            want_value,
                            got_value,
                            &format!("{path}.{key}"),
                            mismatches,
                        ),
                        None => mismatches.push(format!("{path}: missing key {key:?}")),
                    }
                }
                for key in got.keys().filter(|key| !want.contains_key(*key)) {
                    mismatches.push(format!("{path}: unexpected key {key:?} = {}", got[key]));
                }
            }
            (Value::Array(want), Value::Array(got)) => {
                if want.len() != got.len() {
                    mismatches.push(format!(
                        "{path}: expected {} items, got {}",
                        want.len(),
                        got.len()
                    ));
                }
                for (i, (w, g)) in want.iter().zip(got).enumerate() {
                    self.match_value(w, g, &format!("{path}[{i}]"), mismatches);
                }
            }
            _ if expected == actual => {}
            _ => mismatches.push(format!("{path}: expected {expected}, got {actual}")),
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Sends one example's request and checks the answer. Errors name the example.
async fn run_example(
    server: &TestServer,
    example: &Example,
    bindings: &mut Bindings,
) -> Result<(), String> {
    let fail = |what: String| format!("example {:?}: {what}", example.id);
    let request = &example.request;
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|e| fail(format!("bad method {:?}: {e}", request.method)))?;
    let path = bindings.substitute_str(&request.path).map_err(&fail)?;
    let mut builder = server.client.request(method, server.url(&path));
    // JSON unless the example names another type (to show a 415, for one).
    let names_type = request
        .headers
        .keys()
        .any(|name| name.eq_ignore_ascii_case("content-type"));
    if (request.body.is_some() || request.raw.is_some()) && !names_type {
        builder = builder.header("content-type", "application/json");
    }
    // A real client presents its token on every request: an example that names no credentials
    // of its own is sent as the admin (whose token the runner bound), unless it is anonymous.
    let names_credentials = request.headers.keys().any(|name| {
        ["authorization", "x-snarl-token", "cookie"]
            .iter()
            .any(|credential| name.eq_ignore_ascii_case(credential))
    });
    if !request.anonymous
        && !names_credentials
        && let Some(Value::String(token)) = bindings.0.get(ADMIN_TOKEN)
    {
        builder = builder.bearer_auth(token);
    }
    for (name, value) in &request.headers {
        builder = builder.header(
            name.as_str(),
            bindings.substitute_str(value).map_err(&fail)?,
        );
    }
    if let Some(body) = &request.body {
        let body = bindings.substitute(body).map_err(&fail)?;
        builder = builder.body(serde_json::to_vec(&body).expect("JSON serialises"));
    } else if let Some(raw) = &request.raw {
        builder = builder.body(bindings.substitute_str(raw).map_err(&fail)?);
    }
    let response = builder
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {e}")))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response
        .text()
        .await
        .map_err(|e| fail(format!("cannot read the body: {e}")))?;

    let expected = &example.response;
    let mut mismatches = Vec::new();
    if status != expected.status {
        mismatches.push(format!(
            "status: expected {}, got {status}",
            expected.status
        ));
    }
    // Headers that bind a name are checked first, so that the others may use it.
    let mut expected_headers: Vec<(&String, &String)> = expected.headers.iter().collect();
    expected_headers.sort_by_key(|(_, want)| whole_placeholder(want).is_none());
    for (name, want) in expected_headers {
        let values: Vec<String> = headers
            .iter()
            .filter(|(actual_name, _)| actual_name.as_str().eq_ignore_ascii_case(name))
            .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        if values.is_empty() {
            mismatches.push(format!("header {name}: missing (expected {want:?})"));
            continue;
        }
        bindings.match_value(
            &Value::String(want.clone()),
            &Value::String(values.join(", ")),
            &format!("header {name}"),
            &mut mismatches,
        );
    }
    if let Some(want) = &expected.body {
        match serde_json::from_str::<Value>(&text) {
            Ok(got) => {
                let before = mismatches.len();
                bindings.match_value(want, &got, "body", &mut mismatches);
                if mismatches.len() > before {
                    mismatches.push(format!(
                        "expected body:\n{}\nactual body:\n{}",
                        pretty(want),
                        pretty(&got)
                    ));
                }
            }
            Err(e) => mismatches.push(format!(
                "body is not JSON ({e}); expected:\n{}\nactual text:\n{text}",
                pretty(want)
            )),
        }
    } else if !mismatches.is_empty() {
        mismatches.push(format!("actual body: {text}"));
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(fail(format!(
            "{} {} answered differently:\n  {}",
            request.method,
            path,
            mismatches.join("\n  ")
        )))
    }
}

#[test]
fn examples_are_well_formed() {
    let examples = load_examples();
    // A request may only use names that an earlier example's response binds.
    let mut bound: HashSet<String> = HashSet::from([ADMIN_TOKEN.to_string()]);
    for example in &examples {
        let request = &example.request;
        let mut used = placeholder_names(&Value::String(request.path.clone()));
        for value in request.headers.values() {
            used.extend(placeholder_names(&Value::String(value.clone())));
        }
        if let Some(body) = &request.body {
            used.extend(placeholder_names(body));
        }
        for name in used {
            assert!(
                bound.contains(&name),
                "example {:?}: its request uses {{{{{name}}}}}, which no earlier response binds",
                example.id
            );
        }
        for value in example.response.headers.values() {
            bound.extend(binding_names(&Value::String(value.clone())));
        }
        if let Some(body) = &example.response.body {
            bound.extend(binding_names(body));
        }
        assert!(
            !example.request.method.trim().is_empty() && example.request.path.starts_with('/'),
            "example {:?}: a request needs a method and an absolute path",
            example.id
        );
        assert!(
            (100..600).contains(&example.response.status),
            "example {:?}: status {} is not an HTTP status",
            example.id,
            example.response.status
        );
    }
}

/// Every `{{name}}` anywhere inside `value`'s strings.
fn placeholder_names(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s
            .split("{{")
            .skip(1)
            .filter_map(|part| part.split_once("}}").map(|(name, _)| name.to_string()))
            .filter(|name| name != "*")
            .collect(),
        Value::Array(items) => items.iter().flat_map(placeholder_names).collect(),
        Value::Object(map) => map.values().flat_map(placeholder_names).collect(),
        _ => Vec::new(),
    }
}

/// The names that `value`, as an expected response, binds (whole-string placeholders).
fn binding_names(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => whole_placeholder(s)
            .filter(|name| *name != "*")
            .map(|name| vec![name.to_string()])
            .unwrap_or_default(),
        Value::Array(items) => items.iter().flat_map(binding_names).collect(),
        Value::Object(map) => map.values().flat_map(binding_names).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn examples_cover_every_route() {
    let examples = load_examples();
    let missing: Vec<String> = declared_routes()
        .into_iter()
        .filter(|route| {
            !examples.iter().any(|example| {
                example.request.method.eq_ignore_ascii_case(&route.method)
                    && route_matches(&route.path, &example.request.path)
            })
        })
        .map(|route| format!("{} {}", route.method, route.path))
        .collect();
    assert!(
        missing.is_empty(),
        "routes with no example in api_examples.yml: {missing:?}"
    );
}

#[tokio::test]
async fn examples_run_against_a_fresh_server() {
    let examples = load_examples();
    // As floe runs by default: authentication on, over a durable store.
    let (server, admin_token) = TestServer::start_with_auth().await;
    let mut bindings = Bindings::default();
    bindings
        .0
        .insert(ADMIN_TOKEN.to_string(), Value::String(admin_token));
    let mut failures = Vec::new();
    for example in &examples {
        if let Err(failure) = run_example(&server, example, &mut bindings).await {
            failures.push(failure);
        }
    }
    server.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} examples failed:\n\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The matcher and runner themselves: they must reject what is wrong.
// ---------------------------------------------------------------------------------------------

fn check(bindings: &mut Bindings, expected: Value, actual: Value) -> Vec<String> {
    let mut mismatches = Vec::new();
    bindings.match_value(&expected, &actual, "body", &mut mismatches);
    mismatches
}

#[test]
fn matcher_binds_then_requires_the_same_value() {
    let mut bindings = Bindings::default();
    let first = check(
        &mut bindings,
        serde_json::json!({"dataset_id": "{{d}}"}),
        serde_json::json!({"dataset_id": "abc"}),
    );
    assert!(first.is_empty(), "{first:?}");
    assert_eq!(bindings.0["d"], "abc");
    let same = check(
        &mut bindings,
        serde_json::json!(["{{d}}"]),
        serde_json::json!(["abc"]),
    );
    assert!(same.is_empty(), "{same:?}");
    let different = check(
        &mut bindings,
        serde_json::json!("{{d}}"),
        serde_json::json!("xyz"),
    );
    assert_eq!(different.len(), 1, "{different:?}");
    assert!(different[0].contains("bound earlier"), "{different:?}");
    assert_eq!(bindings.0["d"], "abc", "a mismatch must not rebind");
}

#[test]
fn matcher_wildcard_matches_anything_without_binding() {
    let mut bindings = Bindings::default();
    for actual in [
        serde_json::json!(29.97),
        serde_json::json!(null),
        serde_json::json!("x"),
    ] {
        assert!(check(&mut bindings, serde_json::json!("{{*}}"), actual).is_empty());
    }
    assert!(bindings.0.is_empty());
}

#[test]
fn matcher_reports_every_kind_of_difference() {
    let mut bindings = Bindings::default();
    let cases = [
        // A missing key, an extra key, a different scalar.
        (
            serde_json::json!({"a": 1, "b": 2}),
            serde_json::json!({"a": 1}),
        ),
        (
            serde_json::json!({"a": 1}),
            serde_json::json!({"a": 1, "b": 2}),
        ),
        (serde_json::json!({"a": "x"}), serde_json::json!({"a": "y"})),
        // Integers and floats are told apart (lease `expires` must be a float).
        (serde_json::json!(30.0), serde_json::json!(30)),
        // Arrays are compared in order and by length.
        (serde_json::json!([1, 2]), serde_json::json!([2, 1])),
        (serde_json::json!([1]), serde_json::json!([1, 1])),
        (serde_json::json!(null), serde_json::json!({})),
    ];
    for (expected, actual) in cases {
        let mismatches = check(&mut bindings, expected.clone(), actual.clone());
        assert!(
            !mismatches.is_empty(),
            "{expected} was accepted for {actual}"
        );
    }
}

#[test]
fn matcher_substitutes_inside_longer_strings() {
    let mut bindings = Bindings::default();
    bindings.0.insert("t".into(), Value::String("abc".into()));
    assert!(
        check(
            &mut bindings,
            serde_json::json!("Required: {{t}}."),
            serde_json::json!("Required: abc.")
        )
        .is_empty()
    );
    assert_eq!(
        check(
            &mut bindings,
            serde_json::json!("Required: {{t}}."),
            serde_json::json!("Required: xyz.")
        )
        .len(),
        1
    );
    let unbound = check(
        &mut bindings,
        serde_json::json!("{{u}} and more"),
        serde_json::json!("x and more"),
    );
    assert!(unbound[0].contains("before it is bound"), "{unbound:?}");
    assert_eq!(bindings.substitute_str("/a/{{t}}/b").unwrap(), "/a/abc/b");
    assert!(bindings.substitute_str("/a/{{nope}}").is_err());
}

#[test]
fn loader_rejects_duplicate_ids_and_missing_keys() {
    let one = "- id: a\n  doc: d\n  request: {method: GET, path: /v1/version}\n  response: {status: 200}\n";
    assert_eq!(parse_examples(one).len(), 1);
    let duplicate = format!("{one}{one}");
    let error = std::panic::catch_unwind(|| parse_examples(&duplicate)).unwrap_err();
    assert!(panic_text(&error).contains("duplicate example id"));
    let no_doc =
        "- id: a\n  request: {method: GET, path: /v1/version}\n  response: {status: 200}\n";
    let error = std::panic::catch_unwind(|| parse_examples(no_doc)).unwrap_err();
    assert!(panic_text(&error).contains("has no `doc`"));
    let typo = "- id: a\n  doc: d\n  request: {method: GET, path: /v1/version}\n  response: {status: 200, header: {}}\n";
    let error = std::panic::catch_unwind(|| parse_examples(typo)).unwrap_err();
    assert!(panic_text(&error).contains("malformed"));
}

fn panic_text(error: &Box<dyn std::any::Any + Send>) -> String {
    error
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| error.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[tokio::test]
async fn runner_reports_wrong_expectations() {
    let server = TestServer::start().await;
    let wrong = r#"
- id: wrong status
  doc: d
  request: {method: GET, path: /v1/version}
  response: {status: 201}
- id: wrong body
  doc: d
  request: {method: GET, path: /v1/version}
  response: {status: 200, body: {"flocker": "0.0.0"}}
- id: extra key expected
  doc: d
  request: {method: GET, path: /v1/version}
  response: {status: 200, body: {"flocker": "{{*}}", "floe": "{{*}}"}}
- id: missing header
  doc: d
  request: {method: GET, path: /v1/version}
  response: {status: 200, headers: {X-Not-There: "{{*}}"}}
- id: wrong header
  doc: d
  request: {method: GET, path: /v1/configuration/datasets}
  response: {status: 200, headers: {x-configuration-tag: "not the tag"}}
- id: unbound placeholder in a request
  doc: d
  request: {method: GET, path: "/v1/configuration/datasets/{{never}}"}
  response: {status: 404}
"#;
    let mut bindings = Bindings::default();
    for example in parse_examples(wrong) {
        let error = run_example(&server, &example, &mut bindings)
            .await
            .expect_err(&format!("{:?} was accepted", example.id));
        assert!(
            error.contains(&format!("{:?}", example.id)),
            "the failure does not name the example: {error}"
        );
    }
    // And the right expectations pass, header names in any case.
    let right = r#"
- id: right
  doc: d
  request: {method: GET, path: /v1/configuration/datasets}
  response: {status: 200, headers: {X-CONFIGURATION-TAG: "{{tag}}"}, body: []}
- id: same tag again
  doc: d
  request: {method: GET, path: /v1/configuration/leases}
  response: {status: 200, headers: {x-configuration-tag: "{{tag}}"}, body: []}
"#;
    for example in parse_examples(right) {
        run_example(&server, &example, &mut bindings)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    server.stop().await;
}

#[test]
fn reads_a_chained_method_router() {
    let source = r#"
        Router::new()
            .route("/a/{id}", get(read).put(write).options(|| options("GET, PUT")))
            .route(
                "/b",
                axum::routing::post(create),
            )
    "#;
    let routes = common::routes::routes_in(source, "test");
    let pairs: Vec<(&str, &str)> = routes
        .iter()
        .map(|route| (route.method.as_str(), route.path.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("GET", "/a/{id}"),
            ("PUT", "/a/{id}"),
            ("OPTIONS", "/a/{id}"),
            ("POST", "/b")
        ]
    );
}

#[test]
#[should_panic(expected = "only methods")]
fn refuses_a_method_router_it_does_not_understand() {
    common::routes::routes_in(r#".route("/a", any(handler))"#, "test");
}

#[test]
fn matches_segments_and_the_rest_of_a_path() {
    assert!(route_matches("/a/{id}", "/a/1?x=y"));
    assert!(!route_matches("/a/{id}", "/a/"));
    assert!(!route_matches("/a/{id}", "/a/1/2"));
    assert!(route_matches("/a/{*rest}", "/a/1/2/3"));
    assert!(route_matches("/a/{*rest}", "/a/1"));
    assert!(!route_matches("/a/{*rest}", "/a"));
    assert!(!route_matches("/a/{*rest}", "/a/1//2"));
    assert_eq!(unnamed("/api/{v}/p/{*path}"), "/api/{}/p/{}");
}
