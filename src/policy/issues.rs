//! The problems found while compiling a policy file, each at its line and column, collected
//! so that all of them are reported at once.

use serde_saphyr::Spanned;

use super::PolicyIssue;

/// Collects issues while validating.
#[derive(Default)]
pub(super) struct Issues(pub(super) Vec<PolicyIssue>);

impl Issues {
    /// Records `message` about the value at `at`.
    pub(super) fn at<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.0.push(PolicyIssue {
            line: at.referenced.line(),
            column: at.referenced.column(),
            message: message.into(),
        });
    }
}
