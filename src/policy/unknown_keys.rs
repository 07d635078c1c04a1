//! A policy file that does not parse, with every problem found: serde stops at the first
//! unknown key, so the file is walked again as a tree of keys (with their positions) against
//! the field lists of the file's types, and every unknown key is reported with its line and
//! column. The field lists come from the types' own serde derives, so they cannot drift.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned};

use super::PolicyIssue;
use super::approval::{ApprovalEntry, GroupEntry};
use super::file::{CallerEntry, ConditionEntry, MtlsEntry, PacingEntry, PolicyFile, RuleEntry};
use super::jwt::{JwtCallerEntry, JwtIssuerEntry, JwtKeysEntry};
use super::webhooks::{ApprovalsEntry, WebhookEntry};

/// The issues of a file that serde refused with `error`: every unknown key, and the error
/// itself unless it is one of those.
pub(super) fn parse_issues(text: &str, error: &serde_saphyr::Error) -> Vec<PolicyIssue> {
    let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut issues = serde_saphyr::from_str::<Node>(text)
        .map(|tree| {
            let mut found = Vec::new();
            walk(&tree, &POLICY_FILE, &mut found);
            found
        })
        .unwrap_or_default();
    if !issues.iter().any(|i| (i.line, i.column) == (line, column)) {
        issues.push(PolicyIssue {
            line,
            column,
            message: bare_message(error),
        });
    }
    issues.sort_by_key(|i| (i.line, i.column));
    issues
}

/// The error's message without the position (which [`PolicyIssue`] prints already) or a
/// source snippet, on one line.
fn bare_message(error: &serde_saphyr::Error) -> String {
    let mut inner = error;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    serde_saphyr::DefaultMessageFormatter
        .format_message(inner)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Which keys a mapping may have, and the shapes of the values under some of them (a
/// sequence's items each take the shape).
struct Shape {
    fields: fn() -> &'static [&'static str],
    nested: &'static [(&'static str, &'static Shape)],
}

static POLICY_FILE: Shape = Shape {
    fields: fields_of::<PolicyFile>,
    nested: &[
        ("callers", &CALLER),
        ("rules", &RULE),
        ("pacing", &PACING),
        ("jwt_issuers", &JWT_ISSUER),
        ("approvals", &APPROVALS),
    ],
};
static APPROVALS: Shape = Shape {
    fields: fields_of::<ApprovalsEntry>,
    nested: &[("webhooks", &WEBHOOK)],
};
static WEBHOOK: Shape = Shape {
    fields: fields_of::<WebhookEntry>,
    nested: &[],
};
static CALLER: Shape = Shape {
    fields: fields_of::<CallerEntry>,
    nested: &[("mtls", &MTLS), ("jwt", &JWT_CALLER)],
};
static JWT_CALLER: Shape = Shape {
    fields: fields_of::<JwtCallerEntry>,
    nested: &[],
};
static JWT_ISSUER: Shape = Shape {
    fields: fields_of::<JwtIssuerEntry>,
    nested: &[("keys", &JWT_KEYS)],
};
static JWT_KEYS: Shape = Shape {
    fields: fields_of::<JwtKeysEntry>,
    nested: &[],
};
static MTLS: Shape = Shape {
    fields: fields_of::<MtlsEntry>,
    nested: &[],
};
static RULE: Shape = Shape {
    fields: fields_of::<RuleEntry>,
    nested: &[("when", &CONDITION), ("approval", &APPROVAL)],
};
static APPROVAL: Shape = Shape {
    fields: fields_of::<ApprovalEntry>,
    nested: &[("groups", &GROUP)],
};
static GROUP: Shape = Shape {
    fields: fields_of::<GroupEntry>,
    nested: &[],
};
static CONDITION: Shape = Shape {
    fields: fields_of::<ConditionEntry>,
    nested: &[],
};
static PACING: Shape = Shape {
    fields: fields_of::<PacingEntry>,
    nested: &[],
};

fn walk(node: &Node, shape: &Shape, out: &mut Vec<PolicyIssue>) {
    match node {
        Node::Seq(items) => items.iter().for_each(|item| walk(item, shape, out)),
        Node::Map(entries) => {
            let fields = (shape.fields)();
            for (key, value) in entries {
                let name = key.value.as_str();
                if !fields.contains(&name) {
                    out.push(PolicyIssue {
                        line: key.referenced.line(),
                        column: key.referenced.column(),
                        message: format!(
                            "unknown key `{name}`{}; expected one of: {}",
                            crate::words::did_you_mean(name, fields.iter().copied()),
                            fields.join(", ")
                        ),
                    });
                } else if let Some((_, inner)) = shape.nested.iter().find(|(n, _)| *n == name) {
                    walk(value, inner, out);
                }
            }
        }
        Node::Leaf => {}
    }
}

/// A YAML document reduced to its mappings' keys (with positions) and its sequences.
enum Node {
    Map(Vec<(Spanned<String>, Node)>),
    Seq(Vec<Node>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

/// The field names a derived `Deserialize` struct asks for: a deserializer that only
/// records the list passed to `deserialize_struct`.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe: not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_come_from_the_derives() {
        assert_eq!(
            fields_of::<PolicyFile>(),
            &[
                "version",
                "callers",
                "rules",
                "pacing",
                "jwt_issuers",
                "tenant_budgets",
                "approver_groups",
                "approvals"
            ]
        );
        assert_eq!(
            fields_of::<ApprovalEntry>(),
            &["groups", "deny", "ttl", "execute_within"]
        );
        assert!(fields_of::<ConditionEntry>().contains(&"one_of"));
    }

    fn issues(text: &str) -> Vec<String> {
        let err = serde_saphyr::from_str::<PolicyFile>(text).unwrap_err();
        parse_issues(text, &err)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn unknown_keys_in_jwt_sections_are_reported_with_their_position() {
        let text = "version: 1\njwt_issuers:\n  - issuer: https://i.example\n    audience: [x]\n    keys: { jwks: https://i.example/k }\ncallers:\n  - name: a\n    jwt: { issuer: https://i.example, subjet: s }\n";
        let got = issues(text);
        for (want_at, key) in [("4:5:", "audience"), ("5:13:", "jwks"), ("8:39:", "subjet")] {
            assert!(
                got.iter()
                    .any(|i| i.starts_with(want_at) && i.contains(&format!("`{key}`"))),
                "{key} at {want_at}: {got:#?}"
            );
        }
    }

    #[test]
    fn every_unknown_key_is_reported_once_with_its_position() {
        let text = "version: 1\ncallers:\n  - name: a\n    api_key_sha25: x\n    mtls: { uri_sam: y }\nrules:\n  - name: r\n    calers: [a]\n    callers: [a]\n    operations: []\n    when:\n      - { param: exchangeServer, prefx: x }\nrulez: []\n";
        let got = issues(text);
        assert_eq!(got.len(), 5, "{got:#?}");
        for (want_at, key) in [
            ("4:5:", "api_key_sha25"),
            ("5:13:", "uri_sam"),
            ("8:5:", "calers"),
            ("12:34:", "prefx"),
            ("13:1:", "rulez"),
        ] {
            assert!(
                got.iter()
                    .any(|i| i.starts_with(want_at) && i.contains(&format!("`{key}`"))),
                "{want_at} {key}: {got:#?}"
            );
        }
        // The position is printed once, by the issue, not again inside the message.
        assert!(got.iter().all(|i| !i.contains("line ")), "{got:#?}");
    }

    #[test]
    fn other_errors_are_kept_without_a_second_position() {
        let got = issues("version: one\ncallers: []\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("1:10: "), "{got:?}");
        assert!(!got[0].contains("line 1"), "{got:?}");
        // Broken YAML: the parser's own error, once.
        let got = issues("version: 1\ncallers: [\n");
        assert_eq!(got.len(), 1, "{got:?}");
    }
}
