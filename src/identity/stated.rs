//! The person and the reason behind a request. A caller states the person it acts for
//! (`X-Graphgate-Initiator`: a UPN or an object id) and why (`X-Graphgate-Reason`: text, at
//! most 1,024 characters, e.g. a ticket); the simplified API also takes them as `initiator`
//! and `reason` body fields (admission takes them out of the body and hands over their text).
//! A delegated user token states its user itself (by object id, and by UPN when the token
//! has `upn`), and a stated initiator that is not one of its ids is refused. What a request
//! says ([`Statement`], text) is checked into what it states ([`Stated`]); both are recorded
//! in the audit.

use http::HeaderMap;
use http::header::HeaderName;

use super::jwt::TokenUser;
use crate::operation::schema::screen::{is_address, is_readable_text};
pub use crate::operation::simple::{INITIATOR_FIELD, MAX_REASON_CHARS, REASON_FIELD};
use crate::policy::{Missing, Person};

/// The header naming the person a request is made for.
pub const INITIATOR_HEADER: HeaderName = HeaderName::from_static("x-graphgate-initiator");
/// The header saying why.
pub const REASON_HEADER: HeaderName = HeaderName::from_static("x-graphgate-reason");

/// Where an initiator came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `X-Graphgate-Initiator`.
    Header,
    /// The simplified API's `initiator` field.
    Body,
    /// The user of a delegated token.
    Token,
}

impl Source {
    /// The label recorded in the audit (`initiator_source`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Header => "header",
            Source::Body => "body",
            Source::Token => "token",
        }
    }
}

/// What a request states about its person and reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stated {
    /// The person (by a UPN, an object id in lower case, or both), and where it came from.
    pub initiator: Option<(Person, Source)>,
    /// Why.
    pub reason: Option<String>,
}

impl Stated {
    /// The initiator as recorded (the UPN, else the object id), if stated.
    pub fn initiator(&self) -> Option<&str> {
        self.initiator.as_ref().map(|(who, _)| who.primary())
    }

    /// The person, if stated.
    pub fn person(&self) -> Option<&Person> {
        self.initiator.as_ref().map(|(who, _)| who)
    }
}

/// A person or reason that cannot be taken as stated, or a rule's requirement not met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Not a UPN or an object id.
    #[error("{0} must be a user principal name (user@domain) or an object id (GUID)")]
    BadInitiator(&'static str),
    /// Empty, too long, or with control characters.
    #[error(
        "{0} must be visible text of 1 to 1024 characters without control, format or invisible characters (no CR, LF, tab, NUL, line separators, bidirectional controls or marks, zero-width or tag characters)"
    )]
    BadReason(&'static str),
    /// A header sent more than once.
    #[error("{0} is sent more than once")]
    Repeated(&'static str),
    /// An initiator other than the delegated token's user.
    #[error("{0} names someone other than the signed-in user of the delegated token")]
    NotTheTokenUser(&'static str),
    /// The same thing stated differently in a header and the body.
    #[error("the {0} is stated twice, differently (header and body)")]
    Conflict(&'static str),
    /// The allowing rule requires what the request does not state.
    #[error("policy rule '{rule}' requires {}: send {}", .missing.names().join(" and "), sent_as(*.missing))]
    Missing {
        /// The rule.
        rule: String,
        /// What is missing.
        missing: Missing,
    },
}

fn sent_as(missing: Missing) -> String {
    let mut parts = Vec::new();
    if missing.initiator {
        parts.push("X-Graphgate-Initiator (or the 'initiator' field of the simplified API)");
    }
    if missing.reason {
        parts.push("X-Graphgate-Reason (or the 'reason' field)");
    }
    parts.join(" and ")
}

impl ContextError {
    /// The bounded label for `graphgate_context_refusals_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ContextError::BadInitiator(_) => "bad_initiator",
            ContextError::BadReason(_) => "bad_reason",
            ContextError::Repeated(_) => "repeated",
            ContextError::NotTheTokenUser(_) => "not_the_token_user",
            ContextError::Conflict(_) => "conflict",
            ContextError::Missing { .. } => "missing",
        }
    }
}

const HEADER_INITIATOR: &str = "X-Graphgate-Initiator";
const HEADER_REASON: &str = "X-Graphgate-Reason";
/// How errors name the simplified API's `initiator` field.
pub const BODY_INITIATOR: &str = "the 'initiator' field";
/// How errors name the simplified API's `reason` field.
pub const BODY_REASON: &str = "the 'reason' field";

/// What the headers (and a delegated token) state.
pub fn from_headers(headers: &HeaderMap, user: Option<&TokenUser>) -> Result<Stated, ContextError> {
    let initiator = one_header(headers, &INITIATOR_HEADER, HEADER_INITIATOR)?
        .map(|text| initiator(text, HEADER_INITIATOR))
        .transpose()?;
    let reason = one_header(headers, &REASON_HEADER, HEADER_REASON)?
        .map(|text| reason(text, HEADER_REASON))
        .transpose()?;
    let mut stated = Stated {
        initiator: initiator.map(|who| (Person::stated(&who), Source::Header)),
        reason,
    };
    if let Some(user) = user {
        if stated.initiator().is_some_and(|who| !user.is(who)) {
            return Err(ContextError::NotTheTokenUser(HEADER_INITIATOR));
        }
        stated.initiator = Some((user.person(), Source::Token));
    }
    Ok(stated)
}

/// The value of a header sent at most once, as UTF-8 text (a header may carry UTF-8 in
/// its bytes; `HeaderValue::to_str` would refuse it).
fn one_header<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    shown: &'static str,
) -> Result<Option<&'h str>, ContextError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ContextError::Repeated(shown));
    }
    let bad = || match shown {
        HEADER_INITIATOR => ContextError::BadInitiator(shown),
        _ => ContextError::BadReason(shown),
    };
    std::str::from_utf8(value.as_bytes())
        .map(Some)
        .map_err(|_| bad())
}

/// A stated initiator: a UPN as written, or an object id in lower case.
fn initiator(text: &str, shown: &'static str) -> Result<String, ContextError> {
    if is_address(text) || crate::operation::route::is_guid(text) {
        Ok(Person::stated(text).primary().to_owned())
    } else {
        Err(ContextError::BadInitiator(shown))
    }
}

/// A stated reason: readable text of at most [`MAX_REASON_CHARS`] characters (see
/// [`is_readable_text`]: no control, format or other invisible characters, something visible).
fn reason(text: &str, shown: &'static str) -> Result<String, ContextError> {
    is_readable_text(text, MAX_REASON_CHARS)
        .then(|| text.to_owned())
        .ok_or(ContextError::BadReason(shown))
}

/// What a request says about its person and reason, as text, before it is checked: the
/// values of `X-Graphgate-Initiator` and `X-Graphgate-Reason`, or a simplified-API body's
/// `initiator` and `reason` fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statement<'a> {
    /// The person.
    pub initiator: Option<&'a str>,
    /// Why.
    pub reason: Option<&'a str>,
}

impl Stated {
    /// Adds what a simplified-API body says to what the headers (and a delegated token)
    /// state. Stating the same thing twice is fine; stating it differently is refused.
    pub fn add_body(
        &mut self,
        said: Statement<'_>,
        user: Option<&TokenUser>,
    ) -> Result<(), ContextError> {
        if let Some(who) = said.initiator {
            let who = initiator(who, BODY_INITIATOR)?;
            if user.is_some_and(|u| !u.is(&who)) {
                return Err(ContextError::NotTheTokenUser(BODY_INITIATOR));
            }
            // The same person named by the other id (a token's user by object id) is no
            // conflict.
            match self.person() {
                Some(stated) if !stated.is(&who) => {
                    return Err(ContextError::Conflict("initiator"));
                }
                Some(_) => {}
                None => self.initiator = Some((Person::stated(&who), Source::Body)),
            }
        }
        if let Some(why) = said.reason {
            let why = reason(why, BODY_REASON)?;
            match &self.reason {
                Some(stated) if *stated != why => return Err(ContextError::Conflict("reason")),
                Some(_) => {}
                None => self.reason = Some(why),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&HeaderName, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append((*name).clone(), HeaderValue::from_bytes(value).unwrap());
        }
        h
    }

    const OID: &str = "6c1f2f1e-1a2b-4c3d-8e9f-00112233aabb";

    #[test]
    fn headers_state_a_upn_or_an_object_id_and_a_bounded_reason() {
        let h = headers(&[
            (&INITIATOR_HEADER, b"alice@contoso.com"),
            (
                &REASON_HEADER,
                "Ticket CHG-1234: Raum f\u{fc}r Vorstand".as_bytes(),
            ),
        ]);
        let s = from_headers(&h, None).unwrap();
        assert_eq!(
            s.initiator,
            Some((Person::stated("alice@contoso.com"), Source::Header))
        );
        assert!(s.reason.unwrap().starts_with("Ticket CHG-1234"));
        let by_oid = from_headers(
            &headers(&[(&INITIATOR_HEADER, OID.to_uppercase().as_bytes())]),
            None,
        )
        .unwrap();
        assert_eq!(by_oid.initiator(), Some(OID));
        assert_eq!(
            from_headers(&HeaderMap::new(), None).unwrap(),
            Stated::default()
        );
    }

    #[test]
    fn bad_statements_are_refused_without_echoing_them() {
        let long = "x".repeat(10 * 1024);
        let cases: [(&HeaderName, &[u8], &str); 8] = [
            (&INITIATOR_HEADER, b"alice", "bad_initiator"),
            (&INITIATOR_HEADER, long.as_bytes(), "bad_initiator"),
            (
                &INITIATOR_HEADER,
                b"alice@contoso.com\tbob@contoso.com",
                "bad_initiator",
            ),
            (&REASON_HEADER, "a\u{2028}b".as_bytes(), "bad_reason"),
            (&REASON_HEADER, "\u{85}".as_bytes(), "bad_reason"),
            (&REASON_HEADER, b"tab\there", "bad_reason"),
            (&REASON_HEADER, b"   ", "bad_reason"),
            (&REASON_HEADER, &[0xff, 0xfe], "bad_reason"),
        ];
        for (name, value, label) in cases {
            let err = from_headers(&headers(&[(name, value)]), None).unwrap_err();
            assert_eq!(err.label(), label, "{value:?}");
            assert!(!err.to_string().contains("alice"), "{err}");
        }
        let reason = "r".repeat(MAX_REASON_CHARS);
        assert!(from_headers(&headers(&[(&REASON_HEADER, reason.as_bytes())]), None).is_ok());
        let over = "\u{e9}".repeat(MAX_REASON_CHARS + 1);
        assert!(from_headers(&headers(&[(&REASON_HEADER, over.as_bytes())]), None).is_err());
        let twice = headers(&[(&REASON_HEADER, b"a"), (&REASON_HEADER, b"b")]);
        assert_eq!(
            from_headers(&twice, None).unwrap_err(),
            ContextError::Repeated("X-Graphgate-Reason")
        );
    }

    #[test]
    fn a_delegated_token_states_its_user_and_refuses_anyone_else() {
        let user = TokenUser {
            oid: OID.into(),
            upn: Some("alice@contoso.com".into()),
        };
        let s = from_headers(&HeaderMap::new(), Some(&user)).unwrap();
        assert_eq!(
            s.initiator,
            Some((
                Person {
                    upn: Some("alice@contoso.com".into()),
                    oid: Some(OID.into())
                },
                Source::Token
            ))
        );
        for same in ["ALICE@contoso.com".as_bytes(), OID.as_bytes()] {
            let s = from_headers(&headers(&[(&INITIATOR_HEADER, same)]), Some(&user)).unwrap();
            assert_eq!(s.initiator(), Some("alice@contoso.com"));
        }
        let other = headers(&[(&INITIATOR_HEADER, b"mallory@contoso.com")]);
        assert_eq!(
            from_headers(&other, Some(&user)).unwrap_err().label(),
            "not_the_token_user"
        );
        // The body naming the user by the other id is the same person, not a conflict.
        let mut stated = from_headers(&HeaderMap::new(), Some(&user)).unwrap();
        let upper = OID.to_uppercase();
        let said = Statement {
            initiator: Some(&upper),
            reason: None,
        };
        stated.add_body(said, Some(&user)).unwrap();
        assert_eq!(stated.initiator(), Some("alice@contoso.com"));
    }

    #[test]
    fn a_body_states_them_as_text_checked_like_the_headers() {
        let said = Statement {
            initiator: Some("alice@contoso.com"),
            reason: Some("CHG-1"),
        };
        let mut stated = Stated::default();
        stated.add_body(said, None).unwrap();
        assert_eq!(
            stated.initiator,
            Some((Person::stated("alice@contoso.com"), Source::Body))
        );
        assert_eq!(stated.reason.as_deref(), Some("CHG-1"));
        let crlf = Statement {
            reason: Some("a\r\nX-Injected: 1"),
            ..Statement::default()
        };
        assert!(matches!(
            Stated::default().add_body(crlf, None),
            Err(ContextError::BadReason(BODY_REASON))
        ));
        let mut header_said = Stated {
            initiator: Some((Person::stated("bob@contoso.com"), Source::Header)),
            reason: None,
        };
        assert_eq!(
            header_said.add_body(said, None).unwrap_err(),
            ContextError::Conflict("initiator")
        );
        let mut same = Stated {
            initiator: Some((Person::stated("ALICE@contoso.com"), Source::Header)),
            reason: Some("CHG-1".into()),
        };
        same.add_body(said, None).unwrap();
        assert_eq!(
            same.initiator().map(str::to_owned),
            Some("ALICE@contoso.com".into())
        );
    }
}
