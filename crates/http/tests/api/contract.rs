//! The documentation against the code: docs/api.md lists exactly the OpenAPI document's routes, the Drive upload
//! is described as it works, and no README or docs page links outside the repository or to a file or heading that
//! does not exist.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::Value;

use crate::helpers::*;

/// `METHOD /path` of every operation of an OpenAPI document.
fn openapi_routes(doc: &Value) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                routes.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes
}

/// The routes docs/api.md documents: its headings of the form ``### `METHOD /path` ``.
fn documented_routes(markdown: &str) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for line in prose_lines(markdown) {
        let Some(heading) = line.strip_prefix("### `") else {
            continue;
        };
        let route = heading
            .trim_end()
            .strip_suffix('`')
            .unwrap_or_else(|| panic!("{line}"));
        let (method, path) = route.split_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            method.bytes().all(|b| b.is_ascii_uppercase()) && path.starts_with('/'),
            "a route heading is `METHOD /path`: {line}"
        );
        assert!(routes.insert(route.to_owned()), "{route} documented twice");
    }
    routes
}

#[test]
fn docs_api_md_lists_exactly_the_routes_of_the_openapi_document() {
    let doc = serde_json::to_value(offline_access_http::openapi()).unwrap();
    let served = openapi_routes(&doc);
    let documented = documented_routes(&read("docs/api.md"));
    assert!(served.len() >= 15, "{served:?}");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "in the OpenAPI document but not in docs/api.md: {undocumented:?}; in docs/api.md but not served: {unserved:?}"
    );
}

#[test]
fn the_route_parser_sees_a_missing_or_an_extra_route() {
    let markdown = "# API\n\n### `GET /v1/me`\n\ntext\n\n```md\n### `GET /not/a/heading`\n```\n### `POST /extra`\n";
    let routes = documented_routes(markdown);
    assert_eq!(
        routes,
        BTreeSet::from(["GET /v1/me".to_owned(), "POST /extra".to_owned()])
    );
}

#[tokio::test]
async fn the_upload_is_documented_as_it_works_a_required_name_and_a_binary_body() {
    let doc = serde_json::to_value(offline_access_http::openapi()).unwrap();
    let create = &doc["paths"]["/v1/me/drive/files"]["post"];
    let name = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "name")
        .unwrap();
    assert_eq!(name["in"], "query");
    assert_eq!(name["required"], true, "{name}");
    let binary = serde_json::json!({"type": "string", "format": "binary"});
    let schemas = [
        &create["requestBody"]["content"]["application/octet-stream"]["schema"],
        &doc["paths"]["/v1/me/drive/files/{id}/content"]["put"]["requestBody"]["content"]["application/octet-stream"]
            ["schema"],
        &doc["paths"]["/v1/me/drive/files/{id}/content"]["get"]["responses"]["200"]["content"]["application/octet-stream"]
            ["schema"],
    ];
    for schema in schemas {
        assert_eq!(schema["type"], binary["type"], "{schema}");
        assert_eq!(schema["format"], binary["format"], "{schema}");
    }
    // Nowhere in either document is a body an array of integers.
    let internal = serde_json::to_value(offline_access_http::internal_openapi()).unwrap();
    for text in [doc.to_string(), internal.to_string()] {
        assert!(!text.contains(r#""format":"int32""#), "{text}");
    }

    // And the server does require it, before anything is called.
    let mut mocks = Mocks::bare();
    mocks.accept_id_tokens();
    mocks.drive.expect_execute().never();
    let app = TestApp::new(mocks);
    let answer = app
        .send(
            Request::post("/v1/me/drive/files")
                .header("authorization", format!("Bearer {ID_ALICE}"))
                .header("content-type", "text/plain")
                .body(Body::from("hello"))
                .unwrap(),
        )
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert!(answer.json()["message"].as_str().unwrap().contains("name"));
}

/// The lines of `markdown` outside fenced code blocks.
fn prose_lines(markdown: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    markdown.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// `line` without its inline code spans.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        }
    }
    out
}

/// The targets of every Markdown link and image in `markdown` (`[text](target)`, `[label]: target`), outside
/// code.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(markdown) {
        let line = without_code_spans(line);
        if let Some(rest) = line.trim_start().strip_prefix('[')
            && let Some((_, target)) = rest.split_once("]: ")
        {
            targets.push(target.split_whitespace().next().unwrap_or("").to_owned());
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("");
            targets.push(target.to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`), spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the headings of `markdown` make (a repeated heading gets `-1`, `-2`, ...).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    for line in prose_lines(markdown) {
        let level = line.bytes().take_while(|b| *b == b'#').count();
        if !(1..=6).contains(&level) || line.as_bytes().get(level) != Some(&b' ') {
            continue;
        }
        let base = slug(&line[level + 1..]);
        let n = seen.entry(base.clone()).or_default();
        anchors.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    anchors
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// What is wrong with each relative link of the Markdown file `file` (relative to the repository root): a target
/// outside the repository, a file that does not exist, or an anchor no heading makes.
fn broken_links(root: &Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    let mut broken = Vec::new();
    for target in link_targets(&text) {
        if target.is_empty() {
            broken.push(format!("{file}: an empty link"));
            continue;
        }
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let linked = if path.is_empty() {
            PathBuf::from(file)
        } else {
            match normalize(&dir.join(path)) {
                Some(linked) => linked,
                None => {
                    broken.push(format!("{file}: {target} points outside the repository"));
                    continue;
                }
            }
        };
        let full = root.join(&linked);
        if !full.exists() {
            broken.push(format!(
                "{file}: {target}: {} does not exist",
                linked.display()
            ));
            continue;
        }
        if let Some(anchor) = anchor
            && linked.extension().is_some_and(|e| e == "md")
            && !anchors(&std::fs::read_to_string(&full).unwrap()).contains(anchor)
        {
            broken.push(format!("{file}: {target}: no heading makes #{anchor}"));
        }
    }
    broken
}

/// README.md and every docs/*.md, by their paths from the repository's root.
fn markdown_files(root: &Path) -> Vec<String> {
    let mut files = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    assert!(files.len() > 10, "{files:?}");
    files
}

/// Where `text` cites an issue by number (`issue 6`, `Issue #12`, `issues 2 and 5`): a reference that means
/// nothing to a reader of the repository alone. The verb (`Google issues 10-minute tokens`) is not one.
fn issue_citations(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    for (at, _) in lower.match_indices("issue") {
        if at > 0 && lower.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        let after = &lower[at + "issue".len()..];
        let (plural, rest) = match after.strip_prefix('s') {
            Some(rest) => (true, rest),
            None => (false, after),
        };
        let hashed = rest.starts_with(" #");
        let Some(number) = rest.strip_prefix(" #").or_else(|| rest.strip_prefix(' ')) else {
            continue;
        };
        let digits = number.bytes().take_while(u8::is_ascii_digit).count();
        let then = &number[digits..];
        let cites = digits > 0
            && !then.starts_with('-')
            && (!plural || hashed || then.starts_with(',') || then.starts_with(" and "));
        if cites {
            let end = text.floor_char_boundary((at + 40).min(text.len()));
            found.push(text[at..end].to_owned());
        }
    }
    found
}

#[test]
fn no_doc_cites_an_issue_number() {
    let root = repo_root();
    let mut cited = Vec::new();
    for file in markdown_files(&root) {
        for citation in issue_citations(&std::fs::read_to_string(root.join(&file)).unwrap()) {
            cited.push(format!("{file}: {citation}"));
        }
    }
    assert!(
        cited.is_empty(),
        "say what is meant instead:\n{}",
        cited.join("\n")
    );
    let examples = "Goals (issue 6). issues 2 and 5. Issue #12. It issues 10-minute tokens and issues 900 \
                    more. An issue with 3 disks. reissue 3.";
    let found: Vec<String> = issue_citations(examples)
        .iter()
        .map(|c| c.split(['.', ')']).next().unwrap().to_owned())
        .collect();
    assert_eq!(found, ["issue 6", "issues 2 and 5", "Issue #12"]);
}

#[test]
fn the_readme_and_the_docs_link_only_to_files_and_headings_inside_the_repository() {
    let root = repo_root();
    let files = markdown_files(&root);
    let broken: Vec<String> = files.iter().flat_map(|f| broken_links(&root, f)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_finds_links_outside_the_repository_missing_files_and_missing_headings() {
    let root = std::env::temp_dir().join(format!("offline-access-links-{}", std::process::id()));
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("README.md"), "# Title\n").unwrap();
    std::fs::write(
        root.join("docs/page.md"),
        "# Page\n\n## A `code` heading: yes\n\n[ok](../README.md#title) [ok](#a-code-heading-yes) \
         [web](https://example.com/x) `[code](../../x.md)`\n\n```\n[fenced](../../y.md)\n```\n\
         [out](../../shared/spec/interfaces.md) [gone](missing.md) [anchor](../README.md#nope)\n\
         [ref]: ../../elsewhere.md\n",
    )
    .unwrap();
    let broken = broken_links(&root, "docs/page.md");
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(broken.len(), 4, "{broken:#?}");
    assert!(broken[0].contains("shared/spec/interfaces.md points outside the repository"));
    assert!(broken[1].contains("missing.md does not exist"));
    assert!(broken[2].contains("no heading makes #nope"));
    assert!(broken[3].contains("elsewhere.md points outside the repository"));
}
