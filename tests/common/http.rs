//! One HTTP exchange as the tests see it: the answer's status, headers and JSON body, with
//! assertions for floe's error forms.

use reqwest::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// Flocker's schema-failure description.
pub const SCHEMA: &str = "The provided JSON doesn't match the required schema.";
/// Flocker's undecodable-body description, newline included.
pub const UNDECODABLE: &str =
    "The request body could not be decoded according to the value of the\nContent-Type header.";
/// The conditional-write header.
pub const IF_MATCHES: &str = "X-If-Configuration-Matches";
/// The configuration tag header.
pub const TAG: &str = "X-Configuration-Tag";

/// One HTTP answer, its body parsed as JSON (every floe answer with a body is JSON).
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`null` when empty).
    pub body: Value,
}

impl Answer {
    /// The `X-Configuration-Tag` header, which must be present.
    pub fn tag(&self) -> String {
        self.headers
            .get(TAG)
            .unwrap_or_else(|| panic!("no {TAG} header on a {} answer", self.status))
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
    }

    /// Asserts a JSON `Content-Type`.
    pub fn assert_json(&self) {
        let content_type = self.content_type().expect("a Content-Type");
        assert!(
            content_type.starts_with("application/json"),
            "Content-Type {content_type}"
        );
    }

    /// Asserts the status and that the body is exactly `{"description": description}`.
    pub fn assert_error(&self, status: u16, description: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.body, json!({ "description": description }));
        self.assert_json();
    }

    /// A 400 whose body is a `{"description": <non-empty string>}` object.
    pub fn assert_bad_request(&self) {
        assert_eq!(self.status, 400, "body: {}", self.text);
        self.assert_json();
        let description = self.body["description"].as_str().expect("a description");
        assert!(!description.is_empty());
    }

    /// Asserts a schema failure: 400, the schema description and a non-empty list of messages,
    /// and nothing else in the body.
    pub fn assert_schema_error(&self) {
        assert_eq!(self.status, 400, "body: {}", self.text);
        assert_eq!(self.body["description"], SCHEMA, "body: {}", self.text);
        let errors = self.body["errors"].as_array().expect("an errors array");
        assert!(!errors.is_empty(), "body: {}", self.text);
        assert!(errors.iter().all(Value::is_string), "body: {}", self.text);
        assert_eq!(
            self.body.as_object().unwrap().len(),
            2,
            "body: {}",
            self.text
        );
        self.assert_json();
    }

    /// Asserts a schema failure with exactly these messages.
    pub fn assert_schema_errors(&self, errors: &[&str]) {
        assert_eq!(self.status, 400, "body: {}", self.text);
        assert_eq!(
            self.body,
            json!({ "description": SCHEMA, "errors": errors })
        );
        self.assert_json();
    }
}

/// Sends `request` and reads the answer; a body that is not JSON fails the test.
pub async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("the request is answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("a {status} answer is not JSON ({e}): {text:?}"))
    };
    Answer {
        status,
        headers,
        text,
        body,
    }
}
