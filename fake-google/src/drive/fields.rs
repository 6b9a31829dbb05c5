//! The `fields` partial-response parameter: `kind,id`, `*`, `files(id,name)`, `a/b`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Every top-level field of Drive v3's `File` resource (selecting one the fake does not
/// produce is valid and simply omits it, as Google does for unset fields).
pub(crate) const FILE_FIELDS: &[&str] = &[
    "appProperties",
    "capabilities",
    "contentHints",
    "contentRestrictions",
    "copyRequiresWriterPermission",
    "createdTime",
    "description",
    "downloadRestrictions",
    "driveId",
    "explicitlyTrashed",
    "exportLinks",
    "fileExtension",
    "folderColorRgb",
    "fullFileExtension",
    "hasAugmentedPermissions",
    "hasThumbnail",
    "headRevisionId",
    "iconLink",
    "id",
    "imageMediaMetadata",
    "inheritedPermissionsDisabled",
    "isAppAuthorized",
    "kind",
    "labelInfo",
    "lastModifyingUser",
    "linkShareMetadata",
    "md5Checksum",
    "mimeType",
    "modifiedByMe",
    "modifiedByMeTime",
    "modifiedTime",
    "name",
    "originalFilename",
    "ownedByMe",
    "owners",
    "parents",
    "permissionIds",
    "permissions",
    "properties",
    "quotaBytesUsed",
    "resourceKey",
    "sha1Checksum",
    "sha256Checksum",
    "shared",
    "sharedWithMeTime",
    "sharingUser",
    "shortcutDetails",
    "size",
    "spaces",
    "starred",
    "teamDriveId",
    "thumbnailLink",
    "thumbnailVersion",
    "trashed",
    "trashedTime",
    "trashingUser",
    "version",
    "videoMediaMetadata",
    "viewedByMe",
    "viewedByMeTime",
    "viewersCanCopyContent",
    "webContentLink",
    "webViewLink",
    "writersCanShare",
];

/// The top-level fields of `FileList`.
pub(crate) const FILE_LIST_FIELDS: &[&str] =
    &["files", "incompleteSearch", "kind", "nextPageToken"];

/// The top-level fields of `GeneratedIds`.
pub(crate) const GENERATED_IDS_FIELDS: &[&str] = &["ids", "kind", "space"];

/// A parsed selection: everything, or some named members with their own sub-selections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// The whole value.
    All,
    /// Only these members.
    Some(BTreeMap<String, Selection>),
}

/// The shape of the resource a selection applies to, for validation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Schema {
    /// A `File`.
    File,
    /// A `FileList` whose `files` are `File`s.
    FileList,
    /// A `GeneratedIds`.
    GeneratedIds,
}

impl Selection {
    /// Parses `fields`; `Err` carries the offending text for Google's message.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut parser = Parser {
            chars: &chars,
            pos: 0,
            depth: 0,
        };
        let selection = parser.list().map_err(|()| text.to_owned())?;
        if parser.pos != chars.len() {
            return Err(text.to_owned());
        }
        Ok(selection)
    }

    /// Checks the top-level (and, for lists, the file-level) names against the schema.
    pub(crate) fn validate(&self, schema: Schema) -> Result<(), String> {
        let Selection::Some(members) = self else {
            return Ok(());
        };
        let allowed = match schema {
            Schema::File => FILE_FIELDS,
            Schema::FileList => FILE_LIST_FIELDS,
            Schema::GeneratedIds => GENERATED_IDS_FIELDS,
        };
        for (name, sub) in members {
            if !allowed.contains(&name.as_str()) {
                return Err(name.clone());
            }
            if matches!(schema, Schema::FileList) && name == "files" {
                sub.validate(Schema::File)
                    .map_err(|inner| format!("files/{inner}"))?;
            }
        }
        Ok(())
    }

    /// Keeps only the selected parts of `value` (arrays are filtered element by element).
    pub(crate) fn apply(&self, value: Value) -> Value {
        match (self, value) {
            (Selection::All, value) => value,
            (Selection::Some(members), Value::Object(object)) => {
                let mut kept = Map::new();
                for (key, member) in object {
                    if let Some(sub) = members.get(&key) {
                        kept.insert(key, sub.apply(member));
                    }
                }
                Value::Object(kept)
            }
            (selection @ Selection::Some(_), Value::Array(items)) => Value::Array(
                items
                    .into_iter()
                    .map(|item| selection.apply(item))
                    .collect(),
            ),
            (Selection::Some(_), scalar) => scalar,
        }
    }

    fn merge(&mut self, name: String, sub: Selection) {
        let Selection::Some(members) = self else {
            return;
        };
        match members.get_mut(&name) {
            None => {
                members.insert(name, sub);
            }
            Some(existing) => match sub {
                Selection::All => *existing = Selection::All,
                Selection::Some(new_members) => {
                    for (key, value) in new_members {
                        existing.merge(key, value);
                    }
                }
            },
        }
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    /// `item (',' item)*`
    fn list(&mut self) -> Result<Selection, ()> {
        let mut selection = Selection::Some(BTreeMap::new());
        let mut all = false;
        loop {
            self.skip_spaces();
            if self.chars.get(self.pos) == Some(&'*') {
                self.pos += 1;
                all = true;
            } else {
                let (path, sub) = self.item()?;
                let mut nested = sub;
                let mut names = path;
                let Some(first) = names.first().cloned() else {
                    return Err(());
                };
                while names.len() > 1 {
                    let Some(last) = names.pop() else {
                        return Err(());
                    };
                    let mut wrapper = BTreeMap::new();
                    wrapper.insert(last, nested);
                    nested = Selection::Some(wrapper);
                }
                selection.merge(first, nested);
            }
            self.skip_spaces();
            match self.chars.get(self.pos) {
                Some(',') => self.pos += 1,
                _ => break,
            }
        }
        Ok(if all { Selection::All } else { selection })
    }

    /// `name ('/' name)* ['(' list ')']`
    fn item(&mut self) -> Result<(Vec<String>, Selection), ()> {
        let mut path = vec![self.name()?];
        while self.chars.get(self.pos) == Some(&'/') {
            self.pos += 1;
            if self.chars.get(self.pos) == Some(&'*') {
                self.pos += 1;
                return Ok((path, Selection::All));
            }
            path.push(self.name()?);
        }
        self.skip_spaces();
        if self.chars.get(self.pos) == Some(&'(') {
            self.depth += 1;
            if self.depth > 16 {
                return Err(());
            }
            self.pos += 1;
            let sub = self.list()?;
            self.skip_spaces();
            if self.chars.get(self.pos) != Some(&')') {
                return Err(());
            }
            self.pos += 1;
            self.depth -= 1;
            return Ok((path, sub));
        }
        Ok((path, Selection::All))
    }

    fn name(&mut self) -> Result<String, ()> {
        self.skip_spaces();
        let start = self.pos;
        while self
            .chars
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '@' || *c == '.')
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(());
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn select(fields: &str, value: Value) -> Value {
        Selection::parse(fields).unwrap().apply(value)
    }

    #[test]
    fn a_comma_list_keeps_only_the_named_members() {
        let value = json!({"kind": "drive#file", "id": "1", "name": "a", "size": "3"});
        assert_eq!(select("id, name", value), json!({"id": "1", "name": "a"}));
    }

    #[test]
    fn a_star_keeps_everything() {
        let value = json!({"kind": "drive#file", "id": "1"});
        assert_eq!(select("*", value.clone()), value);
    }

    #[test]
    fn nested_parentheses_filter_each_element_of_an_array() {
        let value = json!({"kind": "drive#fileList", "nextPageToken": "t",
            "files": [{"id": "1", "name": "a", "size": "1"}, {"id": "2", "name": "b"}]});
        assert_eq!(
            select("nextPageToken,files(id,name)", value),
            json!({"nextPageToken": "t", "files": [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]})
        );
    }

    #[test]
    fn a_slash_path_selects_a_sub_member() {
        let value = json!({"files": [{"id": "1", "name": "a"}], "kind": "k"});
        assert_eq!(select("files/id", value), json!({"files": [{"id": "1"}]}));
    }

    #[test]
    fn a_star_inside_parentheses_keeps_whole_elements() {
        let value = json!({"files": [{"id": "1", "name": "a"}], "kind": "k"});
        assert_eq!(
            select("files(*)", value),
            json!({"files": [{"id": "1", "name": "a"}]})
        );
    }

    #[test]
    fn a_whole_member_wins_over_a_partial_one() {
        let value = json!({"files": [{"id": "1", "name": "a"}]});
        assert_eq!(select("files(id),files", value.clone()), value);
    }

    #[test]
    fn broken_selections_do_not_parse() {
        for text in ["files(id", "id,,name", "(id)", "id)", "", "a b"] {
            assert!(Selection::parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn unknown_names_fail_validation_with_their_path() {
        let selection = Selection::parse("files(id,bogus)").unwrap();
        assert_eq!(
            selection.validate(Schema::FileList),
            Err("files/bogus".into())
        );
        let selection = Selection::parse("bogus").unwrap();
        assert_eq!(selection.validate(Schema::File), Err("bogus".into()));
        let selection = Selection::parse("webViewLink,capabilities(canEdit)").unwrap();
        assert_eq!(selection.validate(Schema::File), Ok(()));
    }

    #[test]
    fn deeply_nested_selections_are_refused_not_overflowed() {
        let text = "a(".repeat(10_000);
        assert!(Selection::parse(&text).is_err());
    }
}
