//! `multipart/related` bodies as Google's clients send them: Python's `email` generator quotes
//! the boundary and ends lines with LF; Node's googleapis leaves it unquoted and uses CRLF.

use base64::Engine;
use bytes::Bytes;

/// One part: its headers (names lower-cased) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Part {
    /// A header's value by lower-case name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body, decoded if the part says `Content-Transfer-Encoding: base64`.
    pub(crate) fn decoded_body(&self) -> Option<Bytes> {
        match self.header("content-transfer-encoding") {
            Some(cte) if cte.trim().eq_ignore_ascii_case("base64") => {
                let compact: Vec<u8> = self
                    .body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .ok()
                    .map(Bytes::from)
            }
            _ => Some(self.body.clone()),
        }
    }
}

/// A media type without parameters, lower-cased (`text/plain; charset=x` → `text/plain`).
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A parameter of a `Content-Type` value, unquoted (`boundary="a b"` → `a b`).
pub(crate) fn parameter(content_type: &str, name: &str) -> Option<String> {
    let mut rest = content_type.split_once(';')?.1;
    loop {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(';').trim();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end?;
            (value, &quoted[end..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = remainder.split_once(';').map(|(_, r)| r).unwrap_or("");
        if rest.is_empty() {
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|i| i + from)
}

/// Splits a multipart body by `boundary`. `None` when the body is malformed.
pub(crate) fn parse(body: &Bytes, boundary: &str) -> Option<Vec<Part>> {
    if boundary.is_empty() || boundary.len() > 200 {
        return None;
    }
    let delimiter = format!("--{boundary}").into_bytes();
    let mut needle = b"\n".to_vec();
    needle.extend_from_slice(&delimiter);

    // The first delimiter: at the very start or after a preamble line.
    let mut pos = if body.starts_with(&delimiter) {
        0
    } else {
        find(body, &needle, 0)? + 1
    };
    let mut parts = Vec::new();
    loop {
        let after = pos + delimiter.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Some(parts);
        }
        // Skip transport padding to the end of the delimiter line.
        let line_end = find(body, b"\n", after)?;
        if body[after..line_end]
            .iter()
            .any(|b| !matches!(b, b' ' | b'\t' | b'\r'))
        {
            return None;
        }
        let start = line_end + 1;
        let next = find(body, &needle, line_end)?;
        let mut end = next;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
        let part = body.slice(start..end.max(start));
        parts.push(split_part(&part)?);
        if parts.len() > 16 {
            return None;
        }
        pos = next + 1;
    }
}

fn split_part(part: &Bytes) -> Option<Part> {
    let (head_end, body_start) = if part.starts_with(b"\r\n") {
        (0, 2)
    } else if part.starts_with(b"\n") {
        (0, 1)
    } else {
        let lf = find(part, b"\n\n", 0);
        let crlf = find(part, b"\n\r\n", 0);
        match (lf, crlf) {
            (Some(a), Some(b)) if b < a => (b, b + 3),
            (Some(a), _) => (a, a + 2),
            (None, Some(b)) => (b, b + 3),
            (None, None) => return None,
        }
    };
    let head = std::str::from_utf8(&part[..head_end]).ok()?;
    let mut headers = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Part {
        headers,
        body: part.slice(body_start.min(part.len())..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_boundary_is_unquoted() {
        let ct = "multipart/related; boundary=\"===============0123456789==\"";
        assert_eq!(essence(ct), "multipart/related");
        assert_eq!(
            parameter(ct, "boundary").as_deref(),
            Some("===============0123456789==")
        );
    }

    #[test]
    fn an_unquoted_boundary_and_other_parameters_are_read() {
        let ct = "multipart/related; type=\"application/json\"; boundary=abc-123";
        assert_eq!(parameter(ct, "boundary").as_deref(), Some("abc-123"));
        assert_eq!(parameter(ct, "type").as_deref(), Some("application/json"));
        assert_eq!(parameter("multipart/related", "boundary"), None);
        assert_eq!(
            parameter("multipart/related; boundary=\"open", "boundary"),
            None
        );
    }

    #[test]
    fn a_python_style_body_with_lf_line_ends_splits_into_two_parts() {
        let body = Bytes::from_static(
            b"--===============1==\nContent-Type: application/json\nMIME-Version: 1.0\n\n\
              {\"name\": \"a\"}\n--===============1==\nContent-Type: text/plain\nMIME-Version: 1.0\n\
              Content-Transfer-Encoding: binary\n\nline one\nline two\n--===============1==--\n",
        );
        let parts = parse(&body, "===============1==").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].header("content-type"), Some("application/json"));
        assert_eq!(&parts[0].body[..], b"{\"name\": \"a\"}");
        assert_eq!(&parts[1].body[..], b"line one\nline two");
    }

    #[test]
    fn a_node_style_body_with_crlf_line_ends_splits_into_two_parts() {
        let body = Bytes::from_static(
            b"--b1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"n\"}\r\n--b1\r\n\
              Content-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02\r\n--b1--",
        );
        let parts = parse(&body, "b1").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[1].body[..], b"\x00\x01\r\n\x02");
    }

    #[test]
    fn a_base64_part_is_decoded() {
        let body = Bytes::from_static(
            b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n--b--",
        );
        let parts = parse(&body, "b").unwrap();
        assert_eq!(&parts[0].decoded_body().unwrap()[..], b"hello");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [
            &b""[..],
            b"no delimiter at all",
            b"--b\r\nContent-Type: a\r\n\r\nbody without end",
            b"--bjunk\r\n\r\nx\r\n--b--",
            b"--b\r\nno blank line\r\n--b--",
        ] {
            assert!(
                parse(&Bytes::copy_from_slice(body), "b").is_none(),
                "{body:?}"
            );
        }
        assert!(parse(&Bytes::from_static(b"--\r\n"), "").is_none());
    }
}
