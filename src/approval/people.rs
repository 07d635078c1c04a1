//! Who a requester or a reviewer is, and who counts. An identity is the policy caller and,
//! where known, the person behind it: the user of a delegated token (by object id and UPN),
//! the person a caller states (`X-Graphgate-Initiator`), and a token's issuer and subject.
//! Two identities sharing any of these are one person: the same person behind two callers
//! (an API key stating `alice@contoso.com`, a JWT whose user is alice) counts once, and a
//! caller counts once whoever it says it acts for (a service that states people could
//! otherwise approve as many of them as it liked). Whom they may review and how reviews
//! count is `review`'s.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One identity: the caller and what names the person behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The policy caller.
    pub caller: String,
    /// The person, as recorded (a UPN, else an object id), when known.
    pub person: Option<String>,
    /// Every name of this identity (`caller:`, `person:`, `subject:` prefixed, person ids in
    /// lower case): two identities sharing one are the same person.
    pub keys: BTreeSet<String>,
}

/// What names an identity, as the request shows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Names<'a> {
    /// The token's issuer and subject (JWT callers).
    pub subject: Option<(&'a str, &'a str)>,
    /// Every id of the person the request is made for (stated, or a delegated token's user):
    /// UPNs and object ids.
    pub person_ids: &'a [&'a str],
    /// The id recorded for that person.
    pub person: Option<&'a str>,
}

impl Identity {
    /// The identity of `caller` with `names`.
    pub fn of(caller: &str, names: Names<'_>) -> Identity {
        let mut keys = BTreeSet::new();
        keys.insert(format!("caller:{caller}"));
        if let Some((issuer, subject)) = names.subject {
            keys.insert(format!("subject:{issuer}\n{subject}"));
        }
        for id in names.person_ids {
            keys.insert(format!("person:{}", id.to_ascii_lowercase()));
        }
        Identity {
            caller: caller.to_owned(),
            person: names.person.map(str::to_owned),
            keys,
        }
    }

    /// Whether `other` is the same person.
    pub fn same_person(&self, other: &Identity) -> bool {
        !self.keys.is_disjoint(&other.keys)
    }

    /// Whether this identity is the person `id` (a UPN or object id, any case).
    pub fn is_person(&self, id: &str) -> bool {
        self.keys
            .contains(&format!("person:{}", id.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(caller: &str, person: Option<&str>) -> Identity {
        let ids: Vec<&str> = person.into_iter().collect();
        Identity::of(
            caller,
            Names {
                subject: None,
                person_ids: &ids,
                person,
            },
        )
    }

    #[test]
    fn one_person_behind_two_callers_is_one_person_and_a_caller_is_one_whoever_it_names() {
        let key = id("alice-key", Some("Alice@Contoso.com"));
        let token = id("alice-jwt", Some("alice@contoso.com"));
        assert!(key.same_person(&token), "the same person by UPN");
        assert!(!key.same_person(&id("bob-key", None)));
        let console_for_carol = id("console", Some("carol@contoso.com"));
        let console_for_dave = id("console", Some("dave@contoso.com"));
        assert!(
            console_for_carol.same_person(&console_for_dave),
            "one caller counts once, whoever it says it acts for"
        );
        assert!(key.is_person("ALICE@contoso.com"));
    }
}
