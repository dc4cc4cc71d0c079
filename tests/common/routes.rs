//! The routes floe serves, read from the routers' own source (`src/api.rs`, `src/api/`), so
//! that the tests which must reach every route (the examples file, the bad-input sweeps) fail
//! when a route is added, moved or dropped instead of silently leaving it out.
//!
//! The routers all declare routes one way: `.route("PATTERN", get(a).post(b)...)`. A method
//! router written any other way (`on(...)`, `any(...)`, a `.layer(...)` on one route) is
//! refused with a message here, so that this reader is taught it rather than misreading it.

use std::path::Path;

/// One method on one path pattern, as a router in `src/api/` declares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeclaredRoute {
    /// Upper case, as on the wire.
    pub method: String,
    /// axum's pattern: `{name}` for one segment, `{*name}` for the rest of the path.
    pub path: String,
}

/// The methods axum's method routers take (`get(...)`, `.post(...)` and so on).
const METHODS: &[&str] = &[
    "get", "post", "put", "delete", "patch", "options", "head", "trace",
];

/// Every route of every router in `src/api.rs` and `src/api/`, sorted.
pub fn declared_routes() -> Vec<DeclaredRoute> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("api.rs")];
    for entry in std::fs::read_dir(src.join("api")).expect("src/api is readable") {
        let path = entry.expect("src/api lists").path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    let mut routes = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("a router's source is readable");
        routes.extend(routes_in(&source, &file.display().to_string()));
    }
    routes.sort();
    assert!(!routes.is_empty(), "no `.route(` call found in src/api");
    routes
}

/// The routes declared by `.route(...)` calls in one file's source (`file` names it in a
/// refusal).
pub fn routes_in(source: &str, file: &str) -> Vec<DeclaredRoute> {
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        let arguments = &rest[at + ".route(".len()..];
        let (pattern, methods) = read_route_arguments(arguments)
            .unwrap_or_else(|problem| panic!("{file}: a `.route(` call {problem}"));
        routes.extend(methods.into_iter().map(|method| DeclaredRoute {
            method,
            path: pattern.clone(),
        }));
        rest = arguments;
    }
    routes
}

/// Reads `"PATTERN", get(a).post(b))` up to its closing parenthesis: the pattern, and the
/// methods called at the top level of the method router (not those nested inside a handler).
fn read_route_arguments(arguments: &str) -> Result<(String, Vec<String>), String> {
    let mut pattern = None;
    let mut methods = Vec::new();
    let mut depth = 0usize;
    let mut identifier = String::new();
    let mut chars = arguments.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut literal = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => literal.extend(chars.next()),
                        Some(c) => literal.push(c),
                        None => return Err("has an unterminated string".into()),
                    }
                }
                if depth == 0 && pattern.is_none() {
                    pattern = Some(literal);
                }
                identifier.clear();
            }
            '(' => {
                if depth == 0 {
                    if !METHODS.contains(&identifier.as_str()) {
                        return Err(format!(
                            "calls `{identifier}(` where only methods ({}) are understood",
                            METHODS.join(", ")
                        ));
                    }
                    methods.push(identifier.to_ascii_uppercase());
                }
                depth += 1;
                identifier.clear();
            }
            ')' if depth == 0 => {
                let pattern = pattern.ok_or("has no string pattern")?;
                if methods.is_empty() {
                    return Err(format!("for {pattern} names no method"));
                }
                return Ok((pattern, methods));
            }
            ')' => {
                depth -= 1;
                identifier.clear();
            }
            c if c.is_alphanumeric() || c == '_' => identifier.push(c),
            // A path such as `axum::routing::get` keeps only its last name.
            _ => identifier.clear(),
        }
    }
    Err("is never closed".into())
}

/// Whether `path` (a query, if any, ignored) is an instance of `pattern`: `{name}` matches one
/// non-empty segment, `{*name}` one or more.
pub fn route_matches(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let want: Vec<&str> = pattern.split('/').collect();
    let got: Vec<&str> = path.split('/').collect();
    if want.last().is_some_and(|last| last.starts_with("{*")) {
        let fixed = want.len() - 1;
        return got.len() > fixed
            && segments_match(&want[..fixed], &got[..fixed])
            && got[fixed..].iter().all(|segment| !segment.is_empty());
    }
    want.len() == got.len() && segments_match(&want, &got)
}

fn segments_match(want: &[&str], got: &[&str]) -> bool {
    want.iter().zip(got).all(|(w, g)| {
        if w.starts_with('{') {
            !g.is_empty()
        } else {
            w == g
        }
    })
}

/// `pattern` with each parameter written `{}`, its name and kind (one segment or the rest of
/// the path) dropped, so that tables naming parameters after their fixtures compare with the
/// routers' patterns.
pub fn unnamed(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
