//! Drive's search language (`q`): `name = 'a'`, `name contains 'a'`, `'ID' in parents`,
//! `mimeType = '...'`, `trashed = false`, `starred = true`, `modifiedTime > '2026-01-01T00:00:00'`,
//! `appProperties has { key='k' and value='v' }`, `fullText contains 'x'`, `'me' in owners`,
//! joined with `and`, `or`, `not` and parentheses.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What a query term can look at in a file.
pub(crate) trait Searchable {
    /// The file's name.
    fn name(&self) -> &str;
    /// The file's MIME type.
    fn mime_type(&self) -> &str;
    /// Its description, if any.
    fn description(&self) -> Option<&str>;
    /// Its content, for `fullText`.
    fn content(&self) -> &[u8];
    /// Whether it is starred.
    fn starred(&self) -> bool;
    /// Whether the folder id (already resolved from aliases) is one of its parents.
    fn has_parent(&self, id: &str) -> bool;
    /// Created time in Unix milliseconds.
    fn created_ms(&self) -> i64;
    /// Modified time in Unix milliseconds.
    fn modified_ms(&self) -> i64;
    /// An `appProperties` value.
    fn app_property(&self, key: &str) -> Option<&str>;
    /// A `properties` value.
    fn property(&self, key: &str) -> Option<&str>;
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Query {
    /// Both.
    And(Box<Query>, Box<Query>),
    /// Either.
    Or(Box<Query>, Box<Query>),
    /// Negation.
    Not(Box<Query>),
    /// `name op 'x'`.
    Name(TextOp, String),
    /// `mimeType op 'x'`.
    MimeType(TextOp, String),
    /// `fullText contains 'x'`.
    FullText(String),
    /// `trashed = b` (files in the application data folder are never trashed).
    Trashed(bool),
    /// `starred = b`.
    Starred(bool),
    /// `'ID' in parents` (the id as written; aliases are resolved at evaluation).
    InParents(String),
    /// `'me' in owners|writers|readers`.
    Me(bool),
    /// `createdTime op 't'` in milliseconds.
    Created(CmpOp, i64),
    /// `modifiedTime op 't'` in milliseconds.
    Modified(CmpOp, i64),
    /// `appProperties has { key='k' and value='v' }`.
    AppProperty(String, String),
    /// `properties has { key='k' and value='v' }`.
    Property(String, String),
}

/// Operators on text fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `contains`
    Contains,
}

/// Comparison operators on times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    fn holds(self, left: i64, right: i64) -> bool {
        match self {
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
            CmpOp::Lt => left < right,
            CmpOp::Le => left <= right,
            CmpOp::Gt => left > right,
            CmpOp::Ge => left >= right,
        }
    }
}

impl Query {
    /// Whether `file` matches; `resolve` maps a parent id or alias to the folder id.
    pub(crate) fn matches(&self, file: &dyn Searchable, resolve: &dyn Fn(&str) -> String) -> bool {
        match self {
            Query::And(a, b) => a.matches(file, resolve) && b.matches(file, resolve),
            Query::Or(a, b) => a.matches(file, resolve) || b.matches(file, resolve),
            Query::Not(a) => !a.matches(file, resolve),
            Query::Name(op, value) => text_matches(*op, file.name(), value, true),
            Query::MimeType(op, value) => text_matches(*op, file.mime_type(), value, false),
            Query::FullText(value) => {
                let needle = value.to_lowercase();
                file.name().to_lowercase().contains(&needle)
                    || file
                        .description()
                        .is_some_and(|d| d.to_lowercase().contains(&needle))
                    || String::from_utf8_lossy(file.content())
                        .to_lowercase()
                        .contains(&needle)
            }
            Query::Trashed(value) => !*value,
            Query::Starred(value) => file.starred() == *value,
            Query::InParents(id) => file.has_parent(&resolve(id)),
            Query::Me(value) => *value,
            Query::Created(op, ms) => op.holds(file.created_ms(), *ms),
            Query::Modified(op, ms) => op.holds(file.modified_ms(), *ms),
            Query::AppProperty(key, value) => file.app_property(key) == Some(value.as_str()),
            Query::Property(key, value) => file.property(key) == Some(value.as_str()),
        }
    }
}

/// `name contains` is a case-insensitive prefix match on the whole name or on any of its
/// words, as Drive documents ("HelloWorld" matches `'Hello'`, not `'World'`); `mimeType
/// contains` is a plain substring match.
fn text_matches(op: TextOp, field: &str, value: &str, word_prefix: bool) -> bool {
    match op {
        TextOp::Eq => field == value,
        TextOp::Ne => field != value,
        TextOp::Contains if word_prefix => {
            let field = field.to_lowercase();
            let value = value.to_lowercase();
            field.starts_with(&value)
                || field
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|word| word.starts_with(&value) && !value.is_empty())
        }
        TextOp::Contains => field.contains(value),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Op(&'static str),
    Open,
    Close,
    OpenBrace,
    CloseBrace,
}

fn tokenize(text: &str) -> Result<Vec<Token>, ()> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '{' => {
                tokens.push(Token::OpenBrace);
                i += 1;
            }
            '}' => {
                tokens.push(Token::CloseBrace);
                i += 1;
            }
            '=' => {
                tokens.push(Token::Op("="));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Op("!="));
                i += 2;
            }
            '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, eq) {
                    ('<', true) => "<=",
                    ('<', false) => "<",
                    (_, true) => ">=",
                    (_, false) => ">",
                };
                tokens.push(Token::Op(op));
                i += if eq { 2 } else { 1 };
            }
            '\'' | '"' => {
                let quote = c;
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(()),
                        Some('\\') => {
                            let Some(&escaped) = chars.get(i + 1) else {
                                return Err(());
                            };
                            value.push(escaped);
                            i += 2;
                        }
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            value.push(ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Str(value));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
            _ => return Err(()),
        }
    }
    Ok(tokens)
}

/// Parses a `q` string; `Err(())` maps to Drive's 400 "Invalid Value" on `q`.
pub(crate) fn parse(text: &str) -> Result<Query, ()> {
    let tokens = tokenize(text)?;
    if tokens.len() > 2_000 {
        return Err(());
    }
    let mut parser = QueryParser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let query = parser.or()?;
    if parser.pos != parser.tokens.len() {
        return Err(());
    }
    Ok(query)
}

struct QueryParser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl QueryParser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), ()> {
        if self.keyword(word) {
            self.pos += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    fn string(&mut self) -> Result<String, ()> {
        match self.next() {
            Some(Token::Str(value)) => Ok(value),
            _ => Err(()),
        }
    }

    fn or(&mut self) -> Result<Query, ()> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Query::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Query, ()> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Query::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Query, ()> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(());
        }
        let result = if self.keyword("not") {
            self.pos += 1;
            self.unary().map(|q| Query::Not(Box::new(q)))
        } else if self.peek() == Some(&Token::Open) {
            self.pos += 1;
            let inner = self.or()?;
            if self.next() != Some(Token::Close) {
                return Err(());
            }
            Ok(inner)
        } else {
            self.term()
        };
        self.depth -= 1;
        result
    }

    fn term(&mut self) -> Result<Query, ()> {
        match self.next() {
            Some(Token::Str(value)) => {
                self.expect_keyword("in")?;
                let Some(Token::Word(collection)) = self.next() else {
                    return Err(());
                };
                match collection.as_str() {
                    "parents" => Ok(Query::InParents(value)),
                    "owners" | "writers" | "readers" => Ok(Query::Me(value == "me")),
                    _ => Err(()),
                }
            }
            Some(Token::Word(field)) => self.field_term(&field),
            _ => Err(()),
        }
    }

    fn field_term(&mut self, field: &str) -> Result<Query, ()> {
        match field {
            "name" | "mimeType" => {
                let op = match self.next() {
                    Some(Token::Op("=")) => TextOp::Eq,
                    Some(Token::Op("!=")) => TextOp::Ne,
                    Some(Token::Word(w)) if w == "contains" => TextOp::Contains,
                    _ => return Err(()),
                };
                let value = self.string()?;
                Ok(if field == "name" {
                    Query::Name(op, value)
                } else {
                    Query::MimeType(op, value)
                })
            }
            "fullText" => {
                self.expect_keyword("contains")?;
                Ok(Query::FullText(self.string()?))
            }
            "trashed" | "starred" => {
                let negate = match self.next() {
                    Some(Token::Op("=")) => false,
                    Some(Token::Op("!=")) => true,
                    _ => return Err(()),
                };
                let value = match self.next() {
                    Some(Token::Word(w)) if w == "true" => true,
                    Some(Token::Word(w)) if w == "false" => false,
                    _ => return Err(()),
                };
                let value = value != negate;
                Ok(if field == "trashed" {
                    Query::Trashed(value)
                } else {
                    Query::Starred(value)
                })
            }
            "createdTime" | "modifiedTime" | "modifiedByMeTime" | "viewedByMeTime" => {
                let op = match self.next() {
                    Some(Token::Op("=")) => CmpOp::Eq,
                    Some(Token::Op("!=")) => CmpOp::Ne,
                    Some(Token::Op("<")) => CmpOp::Lt,
                    Some(Token::Op("<=")) => CmpOp::Le,
                    Some(Token::Op(">")) => CmpOp::Gt,
                    Some(Token::Op(">=")) => CmpOp::Ge,
                    _ => return Err(()),
                };
                let ms = parse_time_ms(&self.string()?).ok_or(())?;
                Ok(if field == "createdTime" {
                    Query::Created(op, ms)
                } else {
                    Query::Modified(op, ms)
                })
            }
            "appProperties" | "properties" => {
                self.expect_keyword("has")?;
                if self.next() != Some(Token::OpenBrace) {
                    return Err(());
                }
                self.expect_keyword("key")?;
                if self.next() != Some(Token::Op("=")) {
                    return Err(());
                }
                let key = self.string()?;
                self.expect_keyword("and")?;
                self.expect_keyword("value")?;
                if self.next() != Some(Token::Op("=")) {
                    return Err(());
                }
                let value = self.string()?;
                if self.next() != Some(Token::CloseBrace) {
                    return Err(());
                }
                Ok(if field == "appProperties" {
                    Query::AppProperty(key, value)
                } else {
                    Query::Property(key, value)
                })
            }
            _ => Err(()),
        }
    }
}

/// Parses an RFC 3339 time as Drive's `q` accepts it (offset optional, meaning UTC; a bare date
/// means midnight UTC) into Unix milliseconds.
pub(crate) fn parse_time_ms(text: &str) -> Option<i64> {
    let candidates = [
        text.to_owned(),
        format!("{text}Z"),
        format!("{text}T00:00:00Z"),
    ];
    candidates.iter().find_map(|candidate| {
        OffsetDateTime::parse(candidate, &Rfc3339)
            .ok()
            .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct File {
        name: &'static str,
        mime: &'static str,
        parent: &'static str,
        modified_ms: i64,
        app: BTreeMap<String, String>,
    }

    impl Searchable for File {
        fn name(&self) -> &str {
            self.name
        }
        fn mime_type(&self) -> &str {
            self.mime
        }
        fn description(&self) -> Option<&str> {
            None
        }
        fn content(&self) -> &[u8] {
            b"some content"
        }
        fn starred(&self) -> bool {
            false
        }
        fn has_parent(&self, id: &str) -> bool {
            self.parent == id
        }
        fn created_ms(&self) -> i64 {
            0
        }
        fn modified_ms(&self) -> i64 {
            self.modified_ms
        }
        fn app_property(&self, key: &str) -> Option<&str> {
            self.app.get(key).map(String::as_str)
        }
        fn property(&self, _key: &str) -> Option<&str> {
            None
        }
    }

    fn file() -> File {
        File {
            name: "HelloWorld settings.json",
            mime: "application/json",
            parent: "FOLDER",
            modified_ms: 1_700_000_000_000,
            app: BTreeMap::from([("kind".to_owned(), "config".to_owned())]),
        }
    }

    fn check(q: &str) -> bool {
        let resolve = |id: &str| {
            if id == "appDataFolder" {
                "FOLDER".to_owned()
            } else {
                id.to_owned()
            }
        };
        parse(q).unwrap().matches(&file(), &resolve)
    }

    #[test]
    fn name_equality_is_exact() {
        assert!(check("name = 'HelloWorld settings.json'"));
        assert!(!check("name = 'helloworld settings.json'"));
        assert!(check("name != 'other'"));
    }

    #[test]
    fn name_contains_matches_word_prefixes_case_insensitively() {
        assert!(check("name contains 'hello'"));
        assert!(check("name contains 'SETT'"));
        assert!(!check("name contains 'World'"));
    }

    #[test]
    fn parents_accept_the_alias_and_the_id() {
        assert!(check("'appDataFolder' in parents"));
        assert!(check("'FOLDER' in parents"));
        assert!(!check("'root' in parents"));
    }

    #[test]
    fn boolean_connectives_and_parentheses_combine_terms() {
        assert!(check(
            "(name contains 'x' or mimeType = 'application/json') and trashed = false and not starred = true"
        ));
        assert!(!check("trashed = true or mimeType contains 'image/'"));
        assert!(check(
            "'me' in owners AND appProperties has { key='kind' and value='config' }"
        ));
    }

    #[test]
    fn escaped_quotes_are_part_of_the_value() {
        assert_eq!(
            parse(r"name = 'it\'s'").unwrap(),
            Query::Name(TextOp::Eq, "it's".to_owned())
        );
    }

    #[test]
    fn times_compare_with_or_without_an_offset() {
        assert!(check("modifiedTime > '2023-01-01T00:00:00'"));
        assert!(check("modifiedTime < '2024-01-01T00:00:00.000Z'"));
        assert!(!check("modifiedTime >= '2024-01-01'"));
    }

    #[test]
    fn malformed_queries_are_rejected() {
        for q in [
            "",
            "name",
            "name = ",
            "name = 'a",
            "name == 'a'",
            "size > 3",
            "trashed = maybe",
            "'a' in nowhere",
            "(name = 'a'",
            "name = 'a' and",
            "modifiedTime > 'yesterday'",
            "name = 'a' name = 'b'",
            "#",
        ] {
            assert!(parse(q).is_err(), "{q:?} parsed");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        let q = "(".repeat(5_000) + "name = 'a'" + &")".repeat(5_000);
        assert!(parse(&q).is_err());
        let q = "not ".repeat(1_000) + "name = 'a'";
        assert!(parse(&q).is_err());
    }
}
